package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/test/testkit"
)

// deafJS hands the runner, for its first durables, a consumer whose pulls
// never get an answer: as a pull request sent to a node that lost its
// leadership and never replies. Everything else is the real JetStream.
type deafJS struct {
	jetstream.JetStream
	deafFor int32
	made    atomic.Int32
}

func (d *deafJS) CreateOrUpdateConsumer(ctx context.Context, stream string, cfg jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	cons, err := d.JetStream.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, err
	}
	if d.made.Add(1) <= d.deafFor {
		return deafConsumer{cons}, nil
	}
	return cons, nil
}

type deafConsumer struct{ jetstream.Consumer }

func (deafConsumer) Fetch(int, ...jetstream.FetchOpt) (jetstream.MessageBatch, error) {
	b := &emptyBatch{ch: make(chan jetstream.Msg)}
	go func() {
		time.Sleep(200 * time.Millisecond)
		close(b.ch)
	}()
	return b, nil
}

type emptyBatch struct{ ch chan jetstream.Msg }

func (b *emptyBatch) Messages() <-chan jetstream.Msg { return b.ch }
func (b *emptyBatch) Error() error                   { return nil }

// TestStalledPullIsNoticedAndRestarted: pulls that get no answer while the
// durable holds messages make the consumer report a stall, with the reason
// in its log, and pull again from a fresh consumer until messages flow;
// then the stall clears.
func TestStalledPullIsNoticedAndRestarted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const durable = "deaf"
	js := &deafJS{JetStream: b.js, deafFor: 2}
	var logs lockedBuffer
	var handled atomic.Int32
	c := bus.NewConsumer(js, quiet(durable), func(context.Context, *bus.Delivery) error {
		handled.Add(1)
		return nil
	}, bus.ConsumerOptions{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), StallAfter: time.Second})
	stop := b.runConsumer(t, c)
	defer stop()

	testkit.Eventually(t, 10*time.Second, "the durable", func() bool { return js.made.Load() >= 1 })
	if err := c.Stalled(); err != nil {
		t.Fatalf("stalled before anything was pending: %v", err)
	}
	const n = 20
	for i := range n {
		b.publish(t, event(fmt.Sprintf("evt_deaf_%d", i), "invoice.paid", "cus_1"))
	}
	var seen error
	testkit.Eventually(t, 10*time.Second, "a stall reported", func() bool {
		seen = c.Stalled()
		return seen != nil || handled.Load() > 0
	})
	if seen == nil {
		t.Fatalf("messages flowed through a deaf pull, or no stall was reported")
	}
	if !strings.Contains(seen.Error(), "while 20 wait") {
		t.Fatalf("stall reason = %q, want the pending count", seen)
	}
	testkit.Eventually(t, 20*time.Second, "every event handled", func() bool { return handled.Load() == n })
	if js.made.Load() != 3 {
		t.Fatalf("durable set up %d times, want 3 (two deaf, then a good one)", js.made.Load())
	}
	testkit.Eventually(t, 10*time.Second, "the stall cleared", func() bool { return c.Stalled() == nil })
	out := logs.String()
	for _, want := range []string{"consumer made no progress while messages are pending", `"pending":20`, "consumer moving again"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

// TestIdleConsumerIsNotStalled: nothing pending, nothing taken, for longer
// than StallAfter, is not a stall.
func TestIdleConsumerIsNotStalled(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var handled atomic.Int32
	c := bus.NewConsumer(b.js, quiet("idle"), func(context.Context, *bus.Delivery) error {
		handled.Add(1)
		return nil
	}, bus.ConsumerOptions{StallAfter: 300 * time.Millisecond})
	stop := b.runConsumer(t, c)
	defer stop()
	b.publish(t, event("evt_idle_1", "invoice.paid", "cus_1"))
	testkit.Eventually(t, 10*time.Second, "the event handled", func() bool { return handled.Load() == 1 })
	deadline := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(deadline) {
		if err := c.Stalled(); err != nil {
			t.Fatalf("an idle consumer reports a stall: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
