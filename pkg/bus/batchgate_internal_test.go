package bus

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func TestPartialGateBoundsPartialBatchesOnly(t *testing.T) {
	g := newPartialGate(1)
	if ok, _ := g.enter(false, false); !ok {
		t.Fatal("the first partial batch was refused")
	}
	ok, ended := g.enter(false, false)
	if ok || ended == nil {
		t.Fatal("a second partial batch ran beside the first with a bound of 1")
	}
	if ok, _ := g.enter(true, false); !ok {
		t.Fatal("a full batch was refused")
	}
	if ok, _ := g.enter(false, true); !ok {
		t.Fatal("a forced partial batch was refused")
	}
	g.leave()
	select {
	case <-ended:
	default:
		t.Fatal("a handler ended and the waiting batch was not told")
	}
	g.leave()
	if ok, _ := g.enter(false, false); ok {
		t.Fatal("a partial batch ran while one was still counted")
	}
	g.leave()
	if ok, _ := g.enter(false, false); !ok {
		t.Fatal("no handler running, and a partial batch was refused")
	}
}

// waitTurnAsync runs c.waitTurn with msgs and hands back what it returns.
func waitTurnAsync(c *Consumer, queue chan jetstream.Msg, msgs []jetstream.Msg) <-chan []jetstream.Msg {
	out := make(chan []jetstream.Msg, 1)
	go func() { out <- c.waitTurn(queue, msgs) }()
	return out
}

func TestWaitTurnGathersUntilAHandlerEnds(t *testing.T) {
	c := &Consumer{cfg: ConsumerConfig{BatchSize: 10}, partial: newPartialGate(1)}
	c.partial.enter(false, false) // a handler with a partial batch runs
	queue := make(chan jetstream.Msg, 10)
	got := waitTurnAsync(c, queue, make([]jetstream.Msg, 1))
	queue <- nil
	queue <- nil
	select {
	case msgs := <-got:
		t.Fatalf("a partial batch of %d went to a handler while the bound was reached", len(msgs))
	case <-time.After(20 * time.Millisecond):
	}
	c.partial.leave()
	select {
	case msgs := <-got:
		if len(msgs) != 3 {
			t.Fatalf("the batch holds %d messages, want the first and the 2 that arrived while it waited", len(msgs))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler ended and the waiting batch did not go")
	}
}

func TestWaitTurnGoesOnceTheBatchIsFull(t *testing.T) {
	c := &Consumer{cfg: ConsumerConfig{BatchSize: 4}, partial: newPartialGate(1)}
	c.partial.enter(false, false)
	defer c.partial.leave()
	queue := make(chan jetstream.Msg, 10)
	got := waitTurnAsync(c, queue, make([]jetstream.Msg, 1))
	for range 5 {
		queue <- nil
	}
	select {
	case msgs := <-got:
		if len(msgs) != 4 {
			t.Fatalf("the batch holds %d messages, want a full batch of 4", len(msgs))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a full batch waited for its turn")
	}
	if len(queue) != 2 {
		t.Fatalf("%d messages left in the queue, want 2", len(queue))
	}
}

func TestWaitTurnWaitsNoLongerThanTheBound(t *testing.T) {
	c := &Consumer{cfg: ConsumerConfig{BatchSize: 4}, partial: newPartialGate(1)}
	c.partial.enter(false, false) // a handler that never ends
	start := time.Now()
	msgs := c.waitTurn(make(chan jetstream.Msg), make([]jetstream.Msg, 1))
	if waited := time.Since(start); len(msgs) != 1 || waited < partialWaitMax || waited > 10*partialWaitMax {
		t.Fatalf("got %d messages after %s, want 1 after about %s", len(msgs), waited, partialWaitMax)
	}
}

func TestWaitTurnGoesWhenTheQueueCloses(t *testing.T) {
	c := &Consumer{cfg: ConsumerConfig{BatchSize: 4}, partial: newPartialGate(1)}
	c.partial.enter(false, false)
	queue := make(chan jetstream.Msg, 1)
	queue <- nil
	close(queue)
	select {
	case msgs := <-waitTurnAsync(c, queue, make([]jetstream.Msg, 1)):
		if len(msgs) != 2 {
			t.Fatalf("got %d messages, want the 2 there were", len(msgs))
		}
	case <-time.After(partialWaitMax / 2):
		t.Fatal("shutting down, a partial batch still waited for its turn")
	}
}
