package bus_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/test/testkit"
)

// clusterBundle is a three-node cluster with the streams at R3, and a
// client connection to each node.
type clusterBundle struct {
	c   *natstest.Cluster
	ncs []*nats.Conn
	jss []jetstream.JetStream
}

func setupCluster(t *testing.T) *clusterBundle {
	t.Helper()
	c := natstest.StartCluster(t, 3)
	b := &clusterBundle{c: c}
	for i := range c.Len() {
		nc, js, err := bus.Connect(testCtx(t), bus.ConnConfig{URL: c.URLs(i)}, fmt.Sprintf("bus-cluster-%d", i), logging.Discard())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		b.ncs, b.jss = append(b.ncs, nc), append(b.jss, js)
	}
	// A request the forming cluster drops would hold one attempt until the
	// whole deadline: each attempt gets its own, shorter one.
	deadline := time.Now().Add(120 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := bus.EnsureStreams(ctx, b.jss[0], bus.StreamConfig{Replicas: 3, Storage: jetstream.FileStorage})
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("streams at R3: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return b
}

// clusterPublisher publishes n events, one every interval, retrying each
// until the stream stores it, as a webhook sender whose retries Stripe
// makes would. It returns when all are stored.
func clusterPublisher(t *testing.T, js jetstream.JetStream, prefix string, n int, interval time.Duration) <-chan struct{} {
	t.Helper()
	pub := bus.NewPublisher(js, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			ev := event(fmt.Sprintf("%s_%d", prefix, i), "invoice.paid", fmt.Sprintf("cus_%d", i%7))
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := pub.PublishEvent(ctx, ev)
				cancel()
				if err == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(interval)
		}
	}()
	return done
}

// handledSet records which event ids a consumer applied.
type handledSet struct {
	mu   sync.Mutex
	seen map[string]int
}

func (h *handledSet) add(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.seen == nil {
		h.seen = map[string]int{}
	}
	h.seen[id]++
}

func (h *handledSet) distinct() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.seen)
}

// drained reports whether durable has nothing pending and nothing
// unacknowledged, asking through js.
func drained(js jetstream.JetStream, durable string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	c, err := js.Consumer(ctx, bus.StreamEvents, durable)
	if err != nil {
		return false
	}
	info := c.CachedInfo()
	return info.NumPending == 0 && info.NumAckPending == 0
}

// TestConsumersKeepMovingThroughNodeLosses runs two replicas of one
// durable, on two different nodes, under a steady publish, and takes down
// first the consumer's leader and then the stream's leader. Every event
// must be handled and the durable drained, with no help from outside.
func TestConsumersKeepMovingThroughNodeLosses(t *testing.T) {
	b := setupCluster(t)
	const durable = "mover"
	cfg := quiet(durable)
	cfg.AckWait = 3 * time.Second
	var handled handledSet
	h := func(_ context.Context, d *bus.Delivery) error {
		handled.add(d.Event.EventId)
		return nil
	}
	// The replicas connect to nodes 1 and 2; the publisher to node 0.
	var stops []func()
	replicas := make([]*bus.Consumer, 2)
	for i := range replicas {
		replicas[i] = bus.NewConsumer(b.jss[i+1], cfg, h, bus.ConsumerOptions{Logger: logging.Discard()})
		stops = append(stops, (&bundle{js: b.jss[i+1]}).runConsumer(t, replicas[i]))
	}
	defer func() {
		for _, s := range stops {
			s()
		}
	}()
	const n = 600
	published := clusterPublisher(t, b.jss[0], "evt_move", n, 5*time.Millisecond)

	testkit.Eventually(t, 20*time.Second, "the first events handled", func() bool { return handled.distinct() > 50 })
	lost := b.c.ConsumerLeader(bus.StreamEvents, durable, 10*time.Second)
	t.Logf("shutting down node %d, the consumer's leader", lost)
	b.c.Shutdown(lost)
	before := handled.distinct()
	testkit.Eventually(t, 30*time.Second, "progress after the consumer leader's loss", func() bool { return handled.distinct() > before+50 })
	b.c.Restart(lost)

	lost = b.c.StreamLeader(bus.StreamEvents, 10*time.Second)
	t.Logf("shutting down node %d, the stream's leader", lost)
	b.c.Shutdown(lost)
	before = handled.distinct()
	testkit.Eventually(t, 30*time.Second, "progress after the stream leader's loss", func() bool { return handled.distinct() > before+50 })
	b.c.Restart(lost)

	select {
	case <-published:
	case <-time.After(90 * time.Second):
		t.Fatal("publisher did not get every event stored")
	}
	testkit.Eventually(t, 60*time.Second, "every event handled", func() bool { return handled.distinct() == n })
	var observer jetstream.JetStream
	for i, js := range b.jss {
		if b.c.Server(i) != nil {
			observer = js
		}
	}
	testkit.Eventually(t, 30*time.Second, "the durable drained", func() bool { return drained(observer, durable) })
	for i, r := range replicas {
		if err := r.Stalled(); err != nil {
			t.Errorf("replica %d reports a stall after draining: %v", i, err)
		}
	}
}

// TestConsumerStepDownsKeepMessagesFlowing makes the consumer's leader step
// down over and over while events flow; the runner must follow every
// election without a restart.
func TestConsumerStepDownsKeepMessagesFlowing(t *testing.T) {
	b := setupCluster(t)
	const durable = "stepper"
	cfg := quiet(durable)
	cfg.AckWait = 3 * time.Second
	var handled handledSet
	var stepdowns atomic.Int32
	replica := bus.NewConsumer(b.jss[1], cfg, func(_ context.Context, d *bus.Delivery) error {
		handled.add(d.Event.EventId)
		return nil
	}, bus.ConsumerOptions{Logger: logging.Discard()})
	stop := (&bundle{js: b.jss[1]}).runConsumer(t, replica)
	defer stop()
	const n = 400
	published := clusterPublisher(t, b.jss[0], "evt_step", n, 5*time.Millisecond)
	testkit.Eventually(t, 20*time.Second, "the first events handled", func() bool { return handled.distinct() > 20 })
	subject := fmt.Sprintf("$JS.API.CONSUMER.LEADER.STEPDOWN.%s.%s", bus.StreamEvents, durable)
	for range 5 {
		before := handled.distinct()
		if before == n {
			break
		}
		if _, err := b.ncs[0].Request(subject, nil, 5*time.Second); err != nil && !errors.Is(err, nats.ErrTimeout) {
			t.Fatalf("step down: %v", err)
		}
		stepdowns.Add(1)
		testkit.Eventually(t, 20*time.Second, "progress after a step down", func() bool {
			return handled.distinct() > before || handled.distinct() == n
		})
	}
	<-published
	testkit.Eventually(t, 60*time.Second, "every event handled", func() bool { return handled.distinct() == n })
	testkit.Eventually(t, 30*time.Second, "the durable drained", func() bool { return drained(b.jss[0], durable) })
	if stepdowns.Load() == 0 {
		t.Fatal("no step down happened")
	}
}
