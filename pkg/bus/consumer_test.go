package bus_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/test/testkit"
)

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
	testkit.Eventually(t, 10*time.Second, "all events handled", func() bool { return rec.len() == n })
	testkit.Eventually(t, 10*time.Second, "all acked", func() bool { return settled(t, b.js, "acker") })

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
	testkit.Eventually(t, 10*time.Second, "ack of the in-flight message", func() bool { return settled(t, b.js, "graceful") })
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
	testkit.Eventually(t, 10*time.Second, "redelivery after restart", func() bool { return again.len() == 1 })
	got, _ := again.snapshot()
	if got[0].Event.EventId != "evt_stuck" || got[0].Delivered != 2 {
		t.Fatalf("redelivery = %+v", got[0])
	}
}
