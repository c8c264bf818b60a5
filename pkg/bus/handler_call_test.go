package bus_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/test/testkit"
)

// timeoutConfig has test-sized timings: InProgress every 100ms (AckWait/3)
// while a handler runs, so only a settled delivery comes back, and a retry
// 200-400ms after it is settled.
func timeoutConfig(durable string) bus.ConsumerConfig {
	cfg := quiet(durable)
	cfg.AckWait = 300 * time.Millisecond
	cfg.HandlerTimeout = 700 * time.Millisecond
	cfg.BackoffBase, cfg.BackoffMax = 400*time.Millisecond, 400*time.Millisecond
	return cfg
}

func TestHandlerTimeoutRetriesAHandlerThatHonoursItsContext(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reg := prometheus.NewRegistry()
	var logs lockedBuffer
	cfg := timeoutConfig("timely")
	type call struct {
		delivered   uint64
		start       time.Time
		deadline    time.Time
		hasDeadline bool
		err         error
	}
	calls := make(chan call, 4)
	b.run(t, cfg, func(ctx context.Context, d *bus.Delivery) error {
		c := call{delivered: d.Delivered, start: time.Now()}
		c.deadline, c.hasDeadline = ctx.Deadline()
		if d.Delivered == 1 {
			<-ctx.Done() // a query that hangs until its context ends
			c.err = ctx.Err()
		}
		calls <- c
		return c.err
	}, bus.ConsumerOptions{Registry: reg, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	b.publish(t, event("evt_hung", "invoice.paid", "cus_h"))

	first, second := receive(t, calls), receive(t, calls)
	if left := first.deadline.Sub(first.start); !first.hasDeadline || left > cfg.HandlerTimeout || left < cfg.HandlerTimeout-500*time.Millisecond {
		t.Fatalf("handler context: deadline %v (set %v), %s after the call began; want about %s", first.deadline, first.hasDeadline, left, cfg.HandlerTimeout)
	}
	if !errors.Is(first.err, context.DeadlineExceeded) {
		t.Fatalf("the hung handler ended with %v, want its deadline", first.err)
	}
	if second.delivered != 2 {
		t.Fatalf("retry has Delivered=%d, want 2", second.delivered)
	}
	// The timeout, then the usual backoff (at least half of 400ms).
	if gap := second.start.Sub(first.start); gap < cfg.HandlerTimeout+200*time.Millisecond {
		t.Fatalf("retried %s after the first call; want the timeout and a backoff", gap)
	}
	testkit.Eventually(t, 10*time.Second, "ack of the retry", func() bool { return settled(t, b.js, "timely") })
	if n := streamMsgs(t, b.js, bus.StreamDLQ); n != 0 {
		t.Fatalf("%d dead letters for a delivery that succeeded on retry", n)
	}
	wantTimeoutMetrics(t, reg, 1, 0, map[string]float64{"nak": 1, "ack": 1})
	if !strings.Contains(logs.String(), `"msg":"event failed; will retry"`) || !strings.Contains(logs.String(), "handler timed out after 700ms") {
		t.Errorf("the timeout is not logged as a retry:\n%s", logs.String())
	}
}

func TestHandlerTimeoutSettlesAHandlerThatIgnoresItsContext(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reg := prometheus.NewRegistry()
	var logs lockedBuffer
	cfg := timeoutConfig("stubborn")
	cfg.Concurrency, cfg.MaxDeliver = 2, 2
	release := make(chan struct{})
	var releaseOnce sync.Once
	var calls, returned atomic.Int32
	b.run(t, cfg, func(ctx context.Context, d *bus.Delivery) error {
		calls.Add(1)
		<-release // blocks whatever its context says
		returned.Add(1)
		return nil
	}, bus.ConsumerOptions{Registry: reg, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	// Registered after b.run, so it runs first: the consumer's stop then
	// finds the handlers returned.
	t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) })
	b.publish(t, event("evt_stubborn", "invoice.paid", "cus_s"))

	// First delivery: timed out and retried; second, on the other worker:
	// timed out past MaxDeliver and dead-lettered. Both handlers still block.
	var dls []bus.DeadLetter
	testkit.Eventually(t, 15*time.Second, "dead letter while the handlers still block", func() bool {
		var err error
		dls, err = bus.ListDeadLetters(testCtx(t), b.js, "stubborn", 10)
		return err == nil && len(dls) == 1
	})
	testkit.Eventually(t, 10*time.Second, "message terminated", func() bool { return settled(t, b.js, "stubborn") })
	if c, r := calls.Load(), returned.Load(); c != 2 || r != 0 {
		t.Fatalf("handler calls %d, returned %d; want 2 calls, both still running", c, r)
	}
	if dls[0].Delivered != 2 || !strings.Contains(dls[0].Error, "handler timed out after 700ms") {
		t.Fatalf("dead letter = %+v", dls[0])
	}
	wantTimeoutMetrics(t, reg, 2, 2, map[string]float64{"nak": 1, "dead_letter": 1})

	// The handlers' goroutines run until they return; their workers wait
	// for them, and what they answer (success, here) is dropped.
	releaseOnce.Do(func() { close(release) })
	testkit.Eventually(t, 10*time.Second, "overdue handlers returned", func() bool {
		return returned.Load() == 2 && metricValue(t, reg, "lr_consumer_overdue_handlers") == 0
	})
	if n := strings.Count(logs.String(), "overdue handler returned; its answer is dropped"); n != 2 {
		t.Errorf("%d log lines for returning overdue handlers, want 2", n)
	}
	if c := calls.Load(); c != 2 || !settled(t, b.js, "stubborn") {
		t.Fatalf("after the handlers returned: %d calls, settled %v; want nothing more", c, settled(t, b.js, "stubborn"))
	}
}

// wantTimeoutMetrics compares the timeout counter, the overdue gauge and
// the delivery outcomes with what the test expects.
func wantTimeoutMetrics(t *testing.T, reg *prometheus.Registry, timeouts, overdue float64, outcomes map[string]float64) {
	t.Helper()
	if got := metricValue(t, reg, "lr_consumer_handler_timeouts_total"); got != timeouts {
		t.Errorf("lr_consumer_handler_timeouts_total = %v, want %v", got, timeouts)
	}
	if got := metricValue(t, reg, "lr_consumer_overdue_handlers"); got != overdue {
		t.Errorf("lr_consumer_overdue_handlers = %v, want %v", got, overdue)
	}
	for outcome, want := range outcomes {
		if got := deliveries(t, reg, outcome); got != want {
			t.Errorf("lr_consumer_deliveries_total{outcome=%q} = %v, want %v", outcome, got, want)
		}
	}
}

func receive[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(15 * time.Second):
		t.Fatal("nothing received")
		panic("unreachable")
	}
}

// lockedBuffer collects log output written from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
