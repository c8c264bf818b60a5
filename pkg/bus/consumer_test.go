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

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
)

func TestConsumerConfigFromEnv(t *testing.T) {
	e := config.New(config.Map(nil))
	c := bus.ConsumerConfigFromEnv(e, "billing-state")
	if e.Err() != nil {
		t.Fatal(e.Err())
	}
	want := bus.ConsumerConfig{Stream: bus.StreamEvents, Durable: "billing-state", Concurrency: 8, MaxDeliver: 10,
		AckWait: 30 * time.Second, BackoffBase: 500 * time.Millisecond, BackoffMax: 5 * time.Minute}
	if fmt.Sprint(c) != fmt.Sprint(want) {
		t.Fatalf("defaults = %+v, want %+v", c, want)
	}
	e = config.New(config.Map(map[string]string{"CONSUMER_CONCURRENCY": "0", "CONSUMER_BACKOFF_MAX": "1ms", "CONSUMER_BATCH_SIZE": "-1"}))
	bus.ConsumerConfigFromEnv(e, "crm.sync")
	if err := e.Err(); err == nil || !strings.Contains(err.Error(), "CONSUMER_CONCURRENCY") || !strings.Contains(err.Error(), "CONSUMER_BATCH_SIZE") ||
		!strings.Contains(err.Error(), "durable") || !strings.Contains(err.Error(), "BACKOFF") {
		t.Fatalf("bad settings: err = %v", err)
	}
}

func TestConsumerAcksOnSuccess(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var rec recorder
	b.run(t, quiet("acker"), func(_ context.Context, d *bus.Delivery) error {
		rec.add(d)
		return nil
	}, bus.ConsumerOptions{})
	const n = 50
	for i := range n {
		b.publish(t, event(fmt.Sprintf("evt_ack_%d", i), "invoice.paid", "cus_1"))
	}
	eventually(t, 10*time.Second, "all events handled", func() bool { return rec.len() == n })
	eventually(t, 10*time.Second, "all acked", func() bool { return settled(t, b.js, "acker") })

	got, _ := rec.snapshot()
	seen := map[string]bool{}
	for _, d := range got {
		if d.Delivered != 1 || d.Replay || d.Event.Type != "invoice.paid" || d.Subject != "billing.events.invoice.paid" || d.StreamSeq == 0 {
			t.Fatalf("delivery = %+v", d)
		}
		seen[d.Event.EventId] = true
	}
	if len(seen) != n {
		t.Fatalf("saw %d distinct events, want %d", len(seen), n)
	}
	info := consumerInfo(t, b.js, "acker")
	if info.Config.AckPolicy != jetstream.AckExplicitPolicy || info.Config.MaxAckPending < 4 ||
		len(info.Config.FilterSubjects) != 2 || info.Config.FilterSubjects[1] != "billing.replay.acker.>" {
		t.Fatalf("consumer config = %+v", info.Config)
	}
	if n := streamMsgs(t, b.js, bus.StreamDLQ); n != 0 {
		t.Fatalf("%d dead letters", n)
	}
}

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
	eventually(t, 10*time.Second, "every success handed over", func() bool { return heldLen() == n && calls.Load() == n+1 })
	// Handled but not acked: JetStream still counts them as pending; the
	// dead letter is settled at once.
	eventually(t, 5*time.Second, "dead letter settled", func() bool { return streamMsgs(t, b.js, bus.StreamDLQ) == 1 })
	if info := consumerInfo(t, b.js, "held"); info.NumAckPending != n {
		t.Fatalf("NumAckPending = %d before the acks are released, want %d", info.NumAckPending, n)
	}
	mu.Lock()
	for _, ack := range held {
		ack()
	}
	mu.Unlock()
	eventually(t, 10*time.Second, "released acks settle", func() bool { return settled(t, b.js, "held") })
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

	eventually(t, 10*time.Second, "third delivery", func() bool { return rec.len() == 3 })
	eventually(t, 10*time.Second, "ack", func() bool { return settled(t, b.js, "retrier") })
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
	eventually(t, 10*time.Second, "dead letter", func() bool {
		dls, err = bus.ListDeadLetters(testCtx(t), b.js, "strict", 10)
		return err == nil && len(dls) == 1
	})
	eventually(t, 10*time.Second, "term", func() bool { return settled(t, b.js, "strict") })
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
	eventually(t, 10*time.Second, "dead letter", func() bool {
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
	b.run(t, cfg, func(_ context.Context, d *bus.Delivery) error {
		rec.add(d)
		return fmt.Errorf("attempt %d: hubspot 500", d.Delivered)
	}, bus.ConsumerOptions{})
	b.publish(t, event("evt_doomed", "customer.updated", "cus_2"))

	var dls []bus.DeadLetter
	eventually(t, 10*time.Second, "dead letter", func() bool {
		var err error
		dls, err = bus.ListDeadLetters(testCtx(t), b.js, "", 10)
		return err == nil && len(dls) == 1
	})
	eventually(t, 10*time.Second, "term", func() bool { return settled(t, b.js, "doomed") })
	if n := rec.len(); n != 4 {
		t.Fatalf("handler ran %d times, want MaxDeliver=4", n)
	}
	if dls[0].Delivered != 4 || dls[0].Error != "attempt 4: hubspot 500" {
		t.Fatalf("dead letter = %+v", dls[0])
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
	eventually(t, 10*time.Second, "second delivery", func() bool { return rec.len() == 2 })
	_, at := rec.snapshot()
	if gap := at[1].Sub(at[0]); gap < wait {
		t.Fatalf("redelivered after %s, want >= %s", gap, wait)
	}
	eventually(t, 10*time.Second, "ack", func() bool { return settled(t, b.js, "patient") })
}

func TestReplayGoesOnlyToItsConsumer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var failing atomic.Bool
	failing.Store(true)
	var recA, recB recorder
	b.run(t, quiet("svc-a"), func(_ context.Context, d *bus.Delivery) error {
		recA.add(d)
		if failing.Load() {
			return bus.Permanent(errors.New("unknown plan"))
		}
		return nil
	}, bus.ConsumerOptions{})
	b.run(t, quiet("svc-b"), func(_ context.Context, d *bus.Delivery) error {
		recB.add(d)
		return nil
	}, bus.ConsumerOptions{})
	b.publish(t, event("evt_replay", "checkout.session.completed", "cus_4"))

	var dls []bus.DeadLetter
	eventually(t, 10*time.Second, "dead letter from svc-a", func() bool {
		var err error
		dls, err = bus.ListDeadLetters(testCtx(t), b.js, "svc-a", 10)
		return err == nil && len(dls) == 1
	})
	eventually(t, 10*time.Second, "svc-b handled the event", func() bool { return recB.len() == 1 && settled(t, b.js, "svc-b") })
	if others, _ := bus.ListDeadLetters(testCtx(t), b.js, "svc-b", 10); len(others) != 0 {
		t.Fatalf("svc-b has %d dead letters", len(others))
	}

	failing.Store(false) // the fix is deployed
	dl, err := bus.ReplayDeadLetter(testCtx(t), b.js, dls[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	if dl.EventID != "evt_replay" || dl.Consumer != "svc-a" {
		t.Fatalf("replayed = %+v", dl)
	}
	eventually(t, 10*time.Second, "replay handled by svc-a", func() bool { return recA.len() == 2 && settled(t, b.js, "svc-a") })
	got, _ := recA.snapshot()
	r := got[1]
	if !r.Replay || r.Subject != "billing.replay.svc-a.checkout.session.completed" || r.Event.EventId != "evt_replay" || r.Delivered != 1 {
		t.Fatalf("replayed delivery = %+v", r)
	}
	if r.Header.Get("Lr-Replay-Of") != strconv.FormatUint(dls[0].Seq, 10) {
		t.Fatalf("replay header = %v", r.Header)
	}

	// svc-b's filter excludes the replay: nothing new was ever pending for it.
	info := consumerInfo(t, b.js, "svc-b")
	if info.NumPending != 0 || info.Delivered.Consumer != 1 || recB.len() != 1 {
		t.Fatalf("svc-b saw the replay: pending %d delivered %d handled %d", info.NumPending, info.Delivered.Consumer, recB.len())
	}
	if left, _ := bus.ListDeadLetters(testCtx(t), b.js, "", 10); len(left) != 0 {
		t.Fatalf("%d dead letters left after replay", len(left))
	}
	if _, err := bus.ReplayDeadLetter(testCtx(t), b.js, dls[0].Seq); !errors.Is(err, bus.ErrDeadLetterNotFound) {
		t.Fatalf("second replay: err = %v, want ErrDeadLetterNotFound", err)
	}
}

func TestListDeadLettersFiltersAndLimits(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for i, c := range []string{"x", "y", "x", "x"} {
		hdr := nats.Header{"Lr-Consumer": {c}, "Lr-Event-Id": {fmt.Sprintf("evt_%d", i)}, "Lr-Delivery-Count": {"2"}}
		if _, err := b.pub.Publish(testCtx(t), bus.DLQSubject(c), "", []byte("p"), hdr); err != nil {
			t.Fatal(err)
		}
	}
	all, err := bus.ListDeadLetters(testCtx(t), b.js, "", 0)
	if err != nil || len(all) != 4 {
		t.Fatalf("all = %d, %v", len(all), err)
	}
	xs, err := bus.ListDeadLetters(testCtx(t), b.js, "x", 2)
	if err != nil || len(xs) != 2 || xs[0].EventID != "evt_0" || xs[1].EventID != "evt_2" || xs[0].Delivered != 2 {
		t.Fatalf("x limited to 2 = %+v, %v", xs, err)
	}
	if _, err := bus.ListDeadLetters(testCtx(t), b.js, "a.b", 1); err == nil {
		t.Fatal("a dotted consumer name was accepted")
	}
}

func TestConsumerKeepsSlowHandlerAlive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := quiet("slow")
	cfg.AckWait = 300 * time.Millisecond
	var calls atomic.Int32
	done := make(chan struct{})
	b.run(t, cfg, func(ctx context.Context, d *bus.Delivery) error {
		if calls.Add(1) == 1 {
			// Work for four ack windows; without InProgress the server
			// would redeliver to another worker meanwhile.
			time.Sleep(4 * cfg.AckWait)
			close(done)
		}
		return nil
	}, bus.ConsumerOptions{})
	b.publish(t, event("evt_slow", "invoice.finalized", "cus_5"))
	<-done
	eventually(t, 10*time.Second, "ack", func() bool { return settled(t, b.js, "slow") })
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times; the message was redelivered while in progress", n)
	}
}

func TestRunFinishesHandlersInFlight(t *testing.T) {
	t.Parallel()
	b := setup(t)
	started := make(chan struct{})
	release := make(chan struct{})
	var finished atomic.Bool
	var ctxErr atomic.Value
	stop := b.run(t, quiet("graceful"), func(ctx context.Context, d *bus.Delivery) error {
		close(started)
		<-release
		ctxErr.Store(fmt.Sprint(ctx.Err()))
		finished.Store(true)
		return nil
	}, bus.ConsumerOptions{})
	b.publish(t, event("evt_graceful", "invoice.paid", "cus_6"))
	<-started

	stopped := make(chan struct{})
	go func() {
		stop()
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("Run returned while a handler was still working")
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	<-stopped
	if !finished.Load() {
		t.Fatal("Run returned before the handler finished")
	}
	if got := ctxErr.Load(); got != "<nil>" {
		t.Fatalf("handler context was cancelled by shutdown: %v", got)
	}
	eventually(t, 10*time.Second, "ack of the in-flight message", func() bool { return settled(t, b.js, "graceful") })
}

func TestRunCancelsHandlersPastDrainTimeout(t *testing.T) {
	t.Parallel()
	b := setup(t)
	started := make(chan struct{}, 1)
	var seen recorder
	stop := b.run(t, quiet("impatient"), func(ctx context.Context, d *bus.Delivery) error {
		seen.add(d)
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	}, bus.ConsumerOptions{DrainTimeout: 100 * time.Millisecond})
	b.publish(t, event("evt_stuck", "invoice.paid", "cus_6"))
	<-started
	begin := time.Now()
	stop()
	if took := time.Since(begin); took > 5*time.Second {
		t.Fatalf("Run took %s to return past a 100ms drain timeout", took)
	}
	// The interrupted message went back to the stream, not to the DLQ.
	if n := streamMsgs(t, b.js, bus.StreamDLQ); n != 0 {
		t.Fatalf("%d dead letters after a shutdown", n)
	}
	var again recorder
	b.run(t, quiet("impatient"), func(_ context.Context, d *bus.Delivery) error {
		again.add(d)
		return nil
	}, bus.ConsumerOptions{})
	eventually(t, 10*time.Second, "redelivery after restart", func() bool { return again.len() == 1 })
	got, _ := again.snapshot()
	if got[0].Event.EventId != "evt_stuck" || got[0].Delivered != 2 {
		t.Fatalf("redelivery = %+v", got[0])
	}
}

func TestTraceContextFlowsFromProducerToConsumer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer tp.Shutdown(context.Background())

	handlerSpan := make(chan trace.SpanContext, 1)
	b.run(t, quiet("traced"), func(ctx context.Context, d *bus.Delivery) error {
		handlerSpan <- trace.SpanContextFromContext(ctx)
		return nil
	}, bus.ConsumerOptions{TracerProvider: tp})

	pub := bus.NewPublisher(b.js, tp)
	if _, err := pub.PublishEvent(testCtx(t), event("evt_traced", "invoice.paid", "cus_8")); err != nil {
		t.Fatal(err)
	}
	hs := <-handlerSpan
	eventually(t, 10*time.Second, "consumer span ended", func() bool { return len(sr.Ended()) == 2 })

	var producer, consumer sdktrace.ReadOnlySpan
	for _, s := range sr.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindProducer:
			producer = s
		case trace.SpanKindConsumer:
			consumer = s
		}
	}
	if producer == nil || consumer == nil {
		t.Fatalf("spans = %v", sr.Ended())
	}
	if producer.Name() != "publish billing.events.invoice.paid" || consumer.Name() != "process billing.events.invoice.paid" {
		t.Fatalf("span names %q, %q", producer.Name(), consumer.Name())
	}
	if consumer.SpanContext().TraceID() != producer.SpanContext().TraceID() {
		t.Fatal("producer and consumer spans are in different traces")
	}
	if consumer.Parent().SpanID() != producer.SpanContext().SpanID() {
		t.Fatal("consumer span is not a child of the producer span")
	}
	if hs.SpanID() != consumer.SpanContext().SpanID() {
		t.Fatal("handler context does not carry the consumer span")
	}
	wantAttrs := func(s sdktrace.ReadOnlySpan, want map[string]string) {
		t.Helper()
		got := map[string]string{}
		for _, kv := range s.Attributes() {
			got[string(kv.Key)] = kv.Value.String()
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: attribute %s = %q, want %q", s.Name(), k, got[k], v)
			}
		}
	}
	common := map[string]string{
		"messaging.system":           "nats",
		"messaging.destination.name": "billing.events.invoice.paid",
		"stripe.event_id":            "evt_traced",
		"stripe.event_type":          "invoice.paid",
		"stripe.customer_id":         "cus_8",
	}
	wantAttrs(producer, common)
	common["messaging.consumer.group.name"] = "traced"
	common["messaging.nats.delivery_count"] = "1"
	common["lr.outcome"] = "ack"
	wantAttrs(consumer, common)
}

func TestConsumerMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reg := prometheus.NewRegistry()
	b.run(t, quiet("metered"), func(_ context.Context, d *bus.Delivery) error {
		switch {
		case strings.HasSuffix(d.Event.EventId, "bad"):
			return bus.Permanent(errors.New("bad"))
		case strings.HasSuffix(d.Event.EventId, "flaky") && d.Delivered == 1:
			return errors.New("flaky")
		case strings.HasSuffix(d.Event.EventId, "seen"):
			d.MarkDuplicate()
		}
		return nil
	}, bus.ConsumerOptions{Registry: reg})
	pub := bus.NewPublisher(b.js, nil, bus.WithPublisherRegistry(reg))
	for _, id := range []string{"evt_ok", "evt_bad", "evt_flaky", "evt_ok", "evt_seen"} {
		if _, err := pub.PublishEvent(testCtx(t), event(id, "invoice.paid", "cus_m")); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 10*time.Second, "all settled", func() bool {
		return settled(t, b.js, "metered") && streamMsgs(t, b.js, bus.StreamDLQ) == 1
	})
	eventually(t, 10*time.Second, "counters", func() bool {
		return deliveries(t, reg, "ack") == 3
	})
	for name, want := range map[string]float64{
		"nak":         1,
		"dead_letter": 1,
	} {
		if got := deliveries(t, reg, name); got != want {
			t.Errorf("deliveries{outcome=%s} = %v, want %v", name, got, want)
		}
	}
	err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP lr_consumer_dead_letters_total Messages moved to BILLING_DLQ.
# TYPE lr_consumer_dead_letters_total counter
lr_consumer_dead_letters_total{consumer="metered"} 1
# HELP lr_consumer_duplicates_total Deliveries acked because the consumer had already processed the event id.
# TYPE lr_consumer_duplicates_total counter
lr_consumer_duplicates_total{consumer="metered"} 1
# HELP lr_consumer_redeliveries_total Deliveries of a message that had been delivered before.
# TYPE lr_consumer_redeliveries_total counter
lr_consumer_redeliveries_total{consumer="metered"} 1
# HELP lr_consumer_pending Messages waiting for this consumer: not yet delivered plus delivered and unacked.
# TYPE lr_consumer_pending gauge
lr_consumer_pending{consumer="metered"} 0
# HELP lr_dlq_depth Dead letters of this consumer waiting in BILLING_DLQ.
# TYPE lr_dlq_depth gauge
lr_dlq_depth{consumer="metered"} 1
# HELP lr_publish_total Publishes by outcome: ok, duplicate (already stored) or error.
# TYPE lr_publish_total counter
lr_publish_total{outcome="duplicate"} 1
lr_publish_total{outcome="ok"} 4
`), "lr_consumer_dead_letters_total", "lr_consumer_duplicates_total", "lr_consumer_redeliveries_total", "lr_consumer_pending", "lr_dlq_depth", "lr_publish_total")
	if err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "lr_consumer_processing_seconds", "lr_publish_seconds"); n != 2 {
		t.Fatalf("histograms collected: %d", n)
	}
	// One wait per stored message: the redelivery is not a second wait.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var waits uint64 = 99
	for _, mf := range mfs {
		if mf.GetName() == "lr_consumer_wait_seconds" {
			waits = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	if waits != 4 {
		t.Fatalf("lr_consumer_wait_seconds observed %d waits, want 4 (the stored messages)", waits)
	}
}

// deliveries reads lr_consumer_deliveries_total for one outcome.
func deliveries(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "lr_consumer_deliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestConsumerSurvivesServerRestart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var rec recorder
	b.run(t, quiet("steadfast"), func(_ context.Context, d *bus.Delivery) error {
		rec.add(d)
		return nil
	}, bus.ConsumerOptions{})
	b.publish(t, event("evt_before_outage", "invoice.paid", "cus_r"))
	eventually(t, 10*time.Second, "first event", func() bool { return rec.len() == 1 })

	b.srv.Shutdown()
	b.srv.Restart()
	eventually(t, 20*time.Second, "publish after restart", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := b.pub.PublishEvent(ctx, event("evt_after_outage", "invoice.paid", "cus_r"))
		return err == nil
	})
	eventually(t, 20*time.Second, "event after restart", func() bool { return rec.len() == 2 })
	got, _ := rec.snapshot()
	if got[1].Event.EventId != "evt_after_outage" {
		t.Fatalf("after restart got %+v", got[1])
	}
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
	eventually(t, 20*time.Second, "a second attempt", func() bool { return rec.len() >= 2 })
	if info := consumerInfo(t, b.js, "careful"); info.NumAckPending != 1 {
		t.Fatalf("message not kept while the DLQ is missing: %+v", info)
	}

	if err := bus.EnsureStreams(ctx, b.js, bus.StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	var dls []bus.DeadLetter
	eventually(t, 20*time.Second, "dead letter once the DLQ is back", func() bool {
		var err error
		dls, err = bus.ListDeadLetters(testCtx(t), b.js, "careful", 10)
		return err == nil && len(dls) == 1
	})
	eventually(t, 10*time.Second, "term", func() bool { return settled(t, b.js, "careful") })
	if dls[0].EventID != "evt_no_dlq" || dls[0].Delivered < 2 {
		t.Fatalf("dead letter = %+v", dls[0])
	}
}
