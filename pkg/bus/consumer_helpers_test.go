package bus_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/logging"
)

// run starts a consumer and returns a stop function that cancels it and
// waits for Run to return; the test's cleanup calls it too.
func (b *bundle) run(t *testing.T, cfg bus.ConsumerConfig, h bus.Handler, opts bus.ConsumerOptions) (stop func()) {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = logging.Discard()
	}
	return b.runConsumer(t, bus.NewConsumer(b.js, cfg, h, opts))
}

// runConsumer runs c until the returned stop function or the test's
// cleanup stops it.
func (b *bundle) runConsumer(t *testing.T, c *bus.Consumer) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: %v", err)
				}
			case <-time.After(40 * time.Second):
				t.Errorf("Run did not return after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// quiet is a consumer config with test-sized timings.
func quiet(durable string) bus.ConsumerConfig {
	return bus.ConsumerConfig{
		Durable:     durable,
		Concurrency: 4,
		MaxDeliver:  3,
		AckWait:     5 * time.Second,
		BackoffBase: 10 * time.Millisecond,
		BackoffMax:  50 * time.Millisecond,
	}
}

func consumerInfo(t *testing.T, js jetstream.JetStream, durable string) *jetstream.ConsumerInfo {
	t.Helper()
	c, err := js.Consumer(testCtx(t), bus.StreamEvents, durable)
	if err != nil {
		t.Fatalf("consumer %s: %v", durable, err)
	}
	return c.CachedInfo()
}

// settled reports whether durable exists and has nothing pending or unacked.
func settled(t *testing.T, js jetstream.JetStream, durable string) bool {
	c, err := js.Consumer(testCtx(t), bus.StreamEvents, durable)
	if err != nil {
		return false // Run creates it asynchronously
	}
	info := c.CachedInfo()
	return info.NumPending == 0 && info.NumAckPending == 0
}

// recorder collects deliveries seen by a handler.
type recorder struct {
	mu  sync.Mutex
	got []bus.Delivery
	at  []time.Time
}

func (r *recorder) add(d *bus.Delivery) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, *d)
	r.at = append(r.at, time.Now())
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

func (r *recorder) snapshot() ([]bus.Delivery, []time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bus.Delivery(nil), r.got...), append([]time.Time(nil), r.at...)
}
