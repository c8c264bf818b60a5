package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/launchready/launchready/pkg/bus"
)

// scriptedJS answers the first publishes from a script, then lets them
// through to the real JetStream; it records every Nats-Msg-Id it saw.
type scriptedJS struct {
	jetstream.JetStream
	mu     sync.Mutex
	script []error
	ids    []string
}

func (s *scriptedJS) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	s.mu.Lock()
	s.ids = append(s.ids, m.Header.Get(jetstream.MsgIDHeader))
	var next error
	if len(s.script) > 0 {
		next, s.script = s.script[0], s.script[1:]
	}
	s.mu.Unlock()
	if next != nil {
		if errors.Is(next, context.DeadlineExceeded) {
			// A publish nobody answers: it waits out the attempt.
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return nil, next
	}
	return s.JetStream.PublishMsg(ctx, m, opts...)
}

func inProcess() error {
	return fmt.Errorf("nats: %w", &jetstream.APIError{Code: 409, ErrorCode: 10158, Description: "duplicate message id is in process"})
}

// TestPublishWaitsOutADuplicateInProcess: JetStream's 10158 says an earlier
// publish of the same id is still being stored. The publisher waits for
// its outcome, sending the same id again, instead of failing.
func TestPublishWaitsOutADuplicateInProcess(t *testing.T) {
	t.Parallel()
	b := setup(t)
	js := &scriptedJS{JetStream: b.js, script: []error{inProcess(), inProcess(), inProcess()}}
	reg := prometheus.NewRegistry()
	pub := bus.NewPublisher(js, nil, bus.WithPublisherRegistry(reg))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	res, err := pub.PublishEvent(ctx, event("evt_inproc", "invoice.paid", "cus_1"))
	if err != nil {
		t.Fatalf("publish through 10158: %v", err)
	}
	if res.Duplicate || res.Seq != 1 {
		t.Fatalf("result = %+v, want stored at seq 1", res)
	}
	if len(js.ids) != 4 {
		t.Fatalf("%d attempts, want 4", len(js.ids))
	}
	for _, id := range js.ids {
		if id != "evt_inproc" {
			t.Fatalf("an attempt carried Nats-Msg-Id %q", id)
		}
	}
	if got := testutil.ToFloat64(counter(t, reg, "lr_publish_retries_total", "in_process")); got != 3 {
		t.Fatalf("in_process retries = %v, want 3", got)
	}
}

// TestPublishRetriesAnAttemptWithoutAnswer: an attempt that gets no answer
// (a leader that died with the request) is sent again; the answer to the
// repeat is what the caller gets.
func TestPublishRetriesAnAttemptWithoutAnswer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.publish(t, event("evt_lost_ack", "invoice.paid", "cus_1"))
	js := &scriptedJS{JetStream: b.js, script: []error{context.DeadlineExceeded, jetstream.ErrNoStreamResponse}}
	pub := bus.NewPublisher(js, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	res, err := pub.PublishEvent(ctx, event("evt_lost_ack", "invoice.paid", "cus_1"))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if !res.Duplicate || res.Seq != 1 {
		t.Fatalf("result = %+v, want the stored message (duplicate of seq 1)", res)
	}
	if took := time.Since(start); took >= 4*time.Second {
		t.Fatalf("took %s: the attempt without an answer waited out the caller's deadline", took)
	}
}

// TestPublishGivesUpAtTheCallersDeadline: while nothing can store the
// event the publisher keeps trying until the caller's deadline, no longer,
// and then says why.
func TestPublishGivesUpAtTheCallersDeadline(t *testing.T) {
	t.Parallel()
	b := setup(t)
	script := make([]error, 1000)
	for i := range script {
		script[i] = inProcess()
	}
	js := &scriptedJS{JetStream: b.js, script: script}
	pub := bus.NewPublisher(js, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 600*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := pub.PublishEvent(ctx, event("evt_forever", "invoice.paid", "cus_1"))
	took := time.Since(start)
	if !errors.Is(err, bus.ErrUnavailable) || !strings.Contains(err.Error(), "in process") {
		t.Fatalf("err = %v, want ErrUnavailable naming the last answer", err)
	}
	if took < 550*time.Millisecond || took > 3*time.Second {
		t.Fatalf("gave up after %s, want at the 600ms deadline", took)
	}
	if len(js.ids) < 3 {
		t.Fatalf("only %d attempts in 600ms", len(js.ids))
	}
}

// TestPublishDoesNotRetryARefusal: a refusal no retry fixes is returned
// after one attempt.
func TestPublishDoesNotRetryARefusal(t *testing.T) {
	t.Parallel()
	b := setup(t)
	refusal := fmt.Errorf("nats: %w", &jetstream.APIError{Code: 400, ErrorCode: 10054, Description: "message size exceeds maximum allowed"})
	js := &scriptedJS{JetStream: b.js, script: []error{refusal}}
	_, err := bus.NewPublisher(js, nil).PublishEvent(testCtx(t), event("evt_big", "invoice.paid", "cus_1"))
	if err == nil || !strings.Contains(err.Error(), "10054") {
		t.Fatalf("err = %v, want the refusal", err)
	}
	if len(js.ids) != 1 {
		t.Fatalf("%d attempts, want 1", len(js.ids))
	}
}

// TestPublishesLiveThroughTheStreamLeadersLoss publishes steadily from two
// clients while the stream's leader node is shut down. With the caller's
// 5 s deadline (ingress's PUBLISH_TIMEOUT) every publish is stored; the
// slowest acks are logged, not asserted, since this box's timing is shared.
func TestPublishesLiveThroughTheStreamLeadersLoss(t *testing.T) {
	b := setupCluster(t)
	leader := b.c.StreamLeader(bus.StreamEvents, 10*time.Second)
	// Clients on the two other nodes, so the loss is an election for them,
	// not a reconnect.
	var clients []jetstream.JetStream
	for i := range b.c.Len() {
		if i != leader {
			clients = append(clients, b.jss[i])
		}
	}
	var (
		failures atomic.Int32
		mu       sync.Mutex
		took     []time.Duration
		firstErr error
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for ci, js := range clients {
		pub := bus.NewPublisher(js, nil)
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				start := time.Now()
				_, err := pub.PublishEvent(ctx, event(fmt.Sprintf("evt_elect_%d_%d", ci, i), "invoice.paid", "cus_1"))
				cancel()
				mu.Lock()
				took = append(took, time.Since(start))
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
				if err != nil {
					failures.Add(1)
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	lossAt := time.Now()
	b.c.Shutdown(leader)
	newLeader := b.c.StreamLeader(bus.StreamEvents, 30*time.Second)
	t.Logf("stream leader node %d lost; node %d elected after %s", leader, newLeader, time.Since(lossAt).Round(time.Millisecond))
	time.Sleep(2 * time.Second)
	close(stop)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d publishes failed through the election; first: %v", n, firstErr)
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("%d publishes; ack p50 %s, p99 %s, max %s", len(took), took[len(took)/2], took[len(took)*99/100], took[len(took)-1])
}

// counter finds the counter name{label...} in reg.
func counter(t *testing.T, reg *prometheus.Registry, name, labelValue string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == labelValue {
					return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name}, func() float64 { return m.GetCounter().GetValue() })
				}
			}
		}
	}
	t.Fatalf("no %s{%s}", name, labelValue)
	return nil
}
