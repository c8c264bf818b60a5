package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/test/testkit"
)

func TestConsumerHandsAcksToAckAfter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var (
		mu   sync.Mutex
		held []func()
	)
	var calls atomic.Int32
	b.run(t, quiet("held"), func(_ context.Context, d *bus.Delivery) error {
		calls.Add(1)
		if d.Event.EventId == "evt_held_fail" {
			return bus.Permanent(errors.New("malformed"))
		}
		return nil
	}, bus.ConsumerOptions{AckAfter: func(ack func()) {
		mu.Lock()
		defer mu.Unlock()
		held = append(held, ack)
	}})
	const n = 5
	for i := range n {
		b.publish(t, event(fmt.Sprintf("evt_held_%d", i), "invoice.paid", "cus_1"))
	}
	b.publish(t, event("evt_held_fail", "invoice.paid", "cus_1"))
	heldLen := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(held)
	}
	testkit.Eventually(t, 10*time.Second, "every success handed over", func() bool { return heldLen() == n && calls.Load() == n+1 })
	// Handled but not acked: JetStream still counts them as pending; the
	// dead letter is settled at once.
	testkit.Eventually(t, 5*time.Second, "dead letter settled", func() bool { return streamMsgs(t, b.js, bus.StreamDLQ) == 1 })
	if info := consumerInfo(t, b.js, "held"); info.NumAckPending != n {
		t.Fatalf("NumAckPending = %d before the acks are released, want %d", info.NumAckPending, n)
	}
	mu.Lock()
	for _, ack := range held {
		ack()
	}
	mu.Unlock()
	testkit.Eventually(t, 10*time.Second, "released acks settle", func() bool { return settled(t, b.js, "held") })
	if c := calls.Load(); c != n+1 {
		t.Fatalf("handler ran %d times, want %d (no redelivery)", c, n+1)
	}
}

func TestConsumerRetriesWithBackoffThenSucceeds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var rec recorder
	cfg := quiet("retrier")
	cfg.MaxDeliver = 5
	cfg.BackoffBase = 40 * time.Millisecond
	cfg.BackoffMax = time.Second
	b.run(t, cfg, func(_ context.Context, d *bus.Delivery) error {
		rec.add(d)
		if d.Delivered < 3 {
			return errors.New("postgres: connection refused")
		}
		return nil
	}, bus.ConsumerOptions{})
	b.publish(t, event("evt_retry", "customer.subscription.updated", "cus_1"))

	testkit.Eventually(t, 10*time.Second, "third delivery", func() bool { return rec.len() == 3 })
	testkit.Eventually(t, 10*time.Second, "ack", func() bool { return settled(t, b.js, "retrier") })
	got, at := rec.snapshot()
	for i, d := range got {
		if d.Delivered != uint64(i+1) {
			t.Fatalf("delivery %d has Delivered=%d", i, d.Delivered)
		}
	}
	// Backoff after the n-th failure is in [b/2, b], b = base*2^(n-1).
	if gap := at[1].Sub(at[0]); gap < 20*time.Millisecond {
		t.Fatalf("first retry after %s, want >= 20ms", gap)
	}
	if gap := at[2].Sub(at[1]); gap < 40*time.Millisecond {
		t.Fatalf("second retry after %s, want >= 40ms", gap)
	}
	if n := streamMsgs(t, b.js, bus.StreamDLQ); n != 0 {
		t.Fatalf("%d dead letters for a message that succeeded", n)
	}
}

func TestConsumerPermanentDeadLettersAtOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var calls atomic.Int32
	b.run(t, quiet("strict"), func(_ context.Context, d *bus.Delivery) error {
		calls.Add(1)
		return bus.Permanent(fmt.Errorf("vendor said 401 for key sk_live_%s", strings.Repeat("a", 24)))
	}, bus.ConsumerOptions{})

	tp := sdktrace.NewTracerProvider()
	defer tp.Shutdown(context.Background())
	ctx, span := tp.Tracer("test").Start(testCtx(t), "webhook")
	before := time.Now()
	res, err := bus.NewPublisher(b.js, tp).PublishEvent(ctx, event("evt_poison", "charge.refunded", "cus_7"))
	span.End()
	if err != nil {
		t.Fatal(err)
	}

	var dls []bus.DeadLetter
	testkit.Eventually(t, 10*time.Second, "dead letter", func() bool {
		dls, err = bus.ListDeadLetters(testCtx(t), b.js, "strict", 10)
		return err == nil && len(dls) == 1
	})
	testkit.Eventually(t, 10*time.Second, "term", func() bool { return settled(t, b.js, "strict") })
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler called %d times for a permanent failure", n)
	}
	dl := dls[0]
	if dl.Consumer != "strict" || dl.EventID != "evt_poison" || dl.EventType != "charge.refunded" ||
		dl.Subject != "billing.events.charge.refunded" || dl.Delivered != 1 {
		t.Fatalf("dead letter = %+v", dl)
	}
	if strings.Contains(dl.Error, "aaaa") || !strings.Contains(dl.Error, "vendor said 401") {
		t.Fatalf("dead letter error not redacted: %q", dl.Error)
	}
	if dl.FailedAt.Before(before.Add(-time.Second)) || time.Since(dl.FailedAt) > time.Minute {
		t.Fatalf("failed at %s", dl.FailedAt)
	}
	h := dl.Header
	for k, want := range map[string]string{
		"Nats-Msg-Id":         "strict:" + strconv.FormatUint(res.Seq, 10),
		"Lr-Original-Subject": "billing.events.charge.refunded",
		"Lr-Delivery-Count":   "1",
		"Lr-Consumer":         "strict",
		"Lr-Event-Id":         "evt_poison",
		"Lr-Event-Type":       "charge.refunded",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if _, err := time.Parse(time.RFC3339Nano, h.Get("Lr-Failed-At")); err != nil {
		t.Errorf("Lr-Failed-At: %v", err)
	}
	if tpHdr := h.Get("traceparent"); !strings.Contains(tpHdr, span.SpanContext().TraceID().String()) {
		t.Errorf("traceparent %q does not carry the producer's trace", tpHdr)
	}
	if len(dl.Data) == 0 {
		t.Error("dead letter lost the payload")
	}
}

func TestConsumerDecodeFailureDeadLetters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var calls atomic.Int32
	b.run(t, quiet("decoder"), func(context.Context, *bus.Delivery) error {
		calls.Add(1)
		return nil
	}, bus.ConsumerOptions{})
	// Not a BillingEvent: field 1 as a varint where a string belongs.
	if _, err := b.pub.Publish(testCtx(t), "billing.events.garbage.type", "evt_garbage", []byte{0x08, 0x01}, nil); err != nil {
		t.Fatal(err)
	}
	var dls []bus.DeadLetter
	testkit.Eventually(t, 10*time.Second, "dead letter", func() bool {
		var err error
		dls, err = bus.ListDeadLetters(testCtx(t), b.js, "decoder", 10)
		return err == nil && len(dls) == 1
	})
	if calls.Load() != 0 {
		t.Fatal("handler called with an undecodable payload")
	}
	if dls[0].EventID != "evt_garbage" || dls[0].EventType != "garbage.type" || !strings.Contains(dls[0].Error, "decode") {
		t.Fatalf("dead letter = %+v", dls[0])
	}
}

func TestConsumerDeadLettersAfterMaxDeliver(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var rec recorder
	cfg := quiet("doomed")
	cfg.MaxDeliver = 4
	told := make(chan *bus.Delivery, 4)
	b.run(t, cfg, func(_ context.Context, d *bus.Delivery) error {
		rec.add(d)
		return fmt.Errorf("attempt %d: hubspot 500", d.Delivered)
	}, bus.ConsumerOptions{DeadLettered: func(_ context.Context, d *bus.Delivery) { told <- d }})
	b.publish(t, event("evt_doomed", "customer.updated", "cus_2"))

	var dls []bus.DeadLetter
	testkit.Eventually(t, 10*time.Second, "dead letter", func() bool {
		var err error
		dls, err = bus.ListDeadLetters(testCtx(t), b.js, "", 10)
		return err == nil && len(dls) == 1
	})
	testkit.Eventually(t, 10*time.Second, "term", func() bool { return settled(t, b.js, "doomed") })
	if n := rec.len(); n != 4 {
		t.Fatalf("handler ran %d times, want MaxDeliver=4", n)
	}
	if dls[0].Delivered != 4 || dls[0].Error != "attempt 4: hubspot 500" {
		t.Fatalf("dead letter = %+v", dls[0])
	}
	// DeadLettered hears of it once, with the event, after it is stored.
	select {
	case d := <-told:
		if d.Event.GetEventId() != "evt_doomed" || d.Event.GetCustomerId() != "cus_2" || d.Delivered != 4 {
			t.Fatalf("DeadLettered told of %v (delivery %d)", d.Event, d.Delivered)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("DeadLettered not called")
	}
	if len(told) != 0 {
		t.Fatal("DeadLettered called more than once")
	}
}

func TestConsumerHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var rec recorder
	const wait = 300 * time.Millisecond
	b.run(t, quiet("patient"), func(_ context.Context, d *bus.Delivery) error {
		rec.add(d)
		if d.Delivered == 1 {
			return bus.RetryAfter(errors.New("429 Too Many Requests"), wait)
		}
		return nil
	}, bus.ConsumerOptions{})
	b.publish(t, event("evt_429", "invoice.payment_failed", "cus_3"))
	testkit.Eventually(t, 10*time.Second, "second delivery", func() bool { return rec.len() == 2 })
	_, at := rec.snapshot()
	if gap := at[1].Sub(at[0]); gap < wait {
		t.Fatalf("redelivered after %s, want >= %s", gap, wait)
	}
	testkit.Eventually(t, 10*time.Second, "ack", func() bool { return settled(t, b.js, "patient") })
}

func TestDeadLetterWaitsForTheDLQ(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	// Without the DLQ stream a dead letter cannot be stored; the message
	// must stay in BILLING_EVENTS and be tried again, not be dropped.
	if err := b.js.DeleteStream(ctx, bus.StreamDLQ); err != nil {
		t.Fatal(err)
	}
	var rec recorder
	b.run(t, quiet("careful"), func(_ context.Context, d *bus.Delivery) error {
		rec.add(d)
		return bus.Permanent(errors.New("poison"))
	}, bus.ConsumerOptions{})
	b.publish(t, event("evt_no_dlq", "invoice.paid", "cus_d"))
	testkit.Eventually(t, 20*time.Second, "a second attempt", func() bool { return rec.len() >= 2 })
	if info := consumerInfo(t, b.js, "careful"); info.NumAckPending != 1 {
		t.Fatalf("message not kept while the DLQ is missing: %+v", info)
	}

	if err := bus.EnsureStreams(ctx, b.js, bus.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	var dls []bus.DeadLetter
	testkit.Eventually(t, 20*time.Second, "dead letter once the DLQ is back", func() bool {
		var err error
		dls, err = bus.ListDeadLetters(testCtx(t), b.js, "careful", 10)
		return err == nil && len(dls) == 1
	})
	testkit.Eventually(t, 10*time.Second, "term", func() bool { return settled(t, b.js, "careful") })
	if dls[0].EventID != "evt_no_dlq" || dls[0].Delivered < 2 {
		t.Fatalf("dead letter = %+v", dls[0])
	}
}
