package bus

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// recordingMsg records what the runner sends for one message. Calling any
// other jetstream.Msg method panics (the embedded interface is nil), so the
// test also shows what the runner does not do.
type recordingMsg struct {
	jetstream.Msg
	mu         sync.Mutex
	inProgress int
	naks       []time.Duration // NakWithDelay's delays; -1 for a plain Nak
}

func (m *recordingMsg) InProgress() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.inProgress++
	return nil
}

func (m *recordingMsg) NakWithDelay(d time.Duration) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.naks = append(m.naks, d)
	return nil
}

func (m *recordingMsg) Nak() error { return m.NakWithDelay(-1) }

func (m *recordingMsg) counts() (inProgress int, naks []time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inProgress, append([]time.Duration(nil), m.naks...)
}

// stuckCall calls a handler that ignores its context, through
// callHandler as a worker would, on a message that records what it gets.
type stuckCall struct {
	consumer *Consumer
	msg      *recordingMsg
	attempt  *attempt
	running  []atomic.Pointer[handlerCall] // one worker's slot
	started  chan struct{}                 // the handler is running
	release  chan struct{}
	returned chan struct{} // callHandler returned
}

func startStuckCall(t *testing.T, cfg ConsumerConfig, handlerCtx context.Context) *stuckCall {
	t.Helper()
	sc := &stuckCall{msg: &recordingMsg{}, running: make([]atomic.Pointer[handlerCall], 1), started: make(chan struct{}), release: make(chan struct{}), returned: make(chan struct{})}
	c := newConsumer(nil, cfg, func(context.Context, []*Delivery) []error {
		close(sc.started)
		<-sc.release
		return []error{nil}
	}, ConsumerOptions{})
	sc.consumer = c
	ev := &billingv1.BillingEvent{EventId: "evt_stuck", Type: "invoice.paid"}
	d := &Delivery{Event: ev, Subject: EventSubject(ev.Type), Delivered: 1, StreamSeq: 1, Header: nats.Header{}}
	spanCtx, span := c.startProcessSpan(handlerCtx, d)
	sc.attempt = &attempt{msg: sc.msg, delivery: d, event: ev, spanCtx: spanCtx, span: span, eventType: ev.Type, forHandler: true}
	go func() {
		defer close(sc.returned)
		c.callHandler(handlerCtx, []*attempt{sc.attempt}, &sc.running[0])
	}()
	<-sc.started
	// Whatever happens, the handler's goroutine ends with the test.
	t.Cleanup(func() {
		select {
		case <-sc.release:
		default:
			close(sc.release)
		}
		<-sc.returned
	})
	return sc
}

// waitNak polls until the message has been nak'd once.
func (sc *stuckCall) waitNak(t *testing.T) (inProgress int, nak time.Duration) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, naks := sc.msg.counts()
		if len(naks) > 0 {
			return n, naks[0]
		}
		if time.Now().After(deadline) {
			t.Fatal("the stuck handler's message was never settled")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// assertQuietWhileStuck checks, over several keepalive periods, that
// nothing more is sent for the message while the handler still runs and
// its worker still waits for it; then it lets the handler return.
func (sc *stuckCall) assertQuietWhileStuck(t *testing.T, period time.Duration, inProgress int) {
	t.Helper()
	quiet := time.NewTimer(4 * period)
	select {
	case <-sc.returned:
		t.Fatal("callHandler returned while its handler was still running")
	case <-quiet.C:
	}
	if n, naks := sc.msg.counts(); n != inProgress || len(naks) != 1 {
		t.Fatalf("after settling: InProgress %d -> %d, naks %v; want no InProgress and one nak", inProgress, n, naks)
	}
	close(sc.release)
	select {
	case <-sc.returned:
	case <-time.After(10 * time.Second):
		t.Fatal("callHandler did not return once its handler did")
	}
	if !sc.attempt.settled {
		t.Fatal("the attempt is not marked settled: the worker would settle it again")
	}
	if n, naks := sc.msg.counts(); n != inProgress || len(naks) != 1 {
		t.Fatalf("after the handler returned: InProgress %d, naks %v; its answer must be dropped", n, naks)
	}
}

func TestTimeoutStopsKeepaliveOfAHandlerThatIgnoresItsContext(t *testing.T) {
	t.Parallel()
	cfg := ConsumerConfig{Durable: "unit", AckWait: 150 * time.Millisecond, HandlerTimeout: 400 * time.Millisecond,
		MaxDeliver: 5, BackoffBase: time.Second, BackoffMax: time.Second}
	started := time.Now()
	sc := startStuckCall(t, cfg, context.Background())

	inProgress, delay := sc.waitNak(t)
	if took := time.Since(started); took < cfg.HandlerTimeout {
		t.Fatalf("settled %s after the call began, before its %s deadline", took, cfg.HandlerTimeout)
	}
	// The message was kept alive up to its settlement (every 50ms for at
	// least the 400ms deadline plus the grace), then retried with the usual
	// backoff after its first delivery: [base/2, base].
	if inProgress < 2 {
		t.Fatalf("%d InProgress before the timeout; the keepalive did not run", inProgress)
	}
	if delay < cfg.BackoffBase/2 || delay > cfg.BackoffBase {
		t.Fatalf("nak delay %s, want the backoff within [%s, %s]", delay, cfg.BackoffBase/2, cfg.BackoffBase)
	}
	if err := sc.attempt.handlerErr; err == nil || err.Error() != "handler timed out after 400ms" {
		t.Fatalf("recorded failure: %v", err)
	}
	sc.assertQuietWhileStuck(t, cfg.AckWait/3, inProgress)
}

func TestShutdownSettlesAHandlerThatIgnoresCancellation(t *testing.T) {
	t.Parallel()
	cfg := ConsumerConfig{Durable: "unit", AckWait: 150 * time.Millisecond, HandlerTimeout: time.Hour,
		MaxDeliver: 5, BackoffBase: time.Second, BackoffMax: time.Second}
	handlerCtx, hardStop := context.WithCancel(context.Background())
	sc := startStuckCall(t, cfg, handlerCtx)
	// Run's shutdown: the worker is busy with the stuck call.
	sc.consumer.drain = 10 * time.Millisecond
	var workers sync.WaitGroup
	workers.Go(func() { <-sc.returned })
	waited := make(chan struct{})
	go func() {
		defer close(waited)
		sc.consumer.waitHandlers(handlerCtx, &workers, hardStop, sc.running)
	}()
	t.Cleanup(func() { <-waited })

	inProgress, delay := sc.waitNak(t)
	if delay != -1 {
		t.Fatalf("interrupted by shutdown: NakWithDelay(%s), want a plain Nak so another replica takes it now", delay)
	}
	sc.assertQuietWhileStuck(t, cfg.AckWait/3, inProgress)
}
