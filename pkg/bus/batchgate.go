package bus

import (
	"sync"
	"time"
)

// partialGate bounds how many handlers run at once with a batch that is
// not full (ConsumerConfig.PartialBatches). A worker holding less than a
// full batch waits while the bound is reached, and takes whatever arrives
// meanwhile, until a handler ends, its batch fills or partialWaitMax has
// passed. A trickle of events thus goes to a few handlers in growing
// batches, each paying its transaction once, instead of to every idle
// handler one event at a time; a backlog fills every batch and uses every
// handler.
type partialGate struct {
	limit int
	// gather is held by the worker gathering a batch from a queue that
	// all workers share.
	gather sync.Mutex

	mu      sync.Mutex
	running int
	// ended is closed, and replaced, whenever a handler ends.
	ended chan struct{}
}

// partialWaitMax bounds a partial batch's wait for a turn while no handler
// ends, so that handlers that take long (a slow vendor) hold back what
// queues behind them for no more than this.
const partialWaitMax = time.Second

func newPartialGate(limit int) *partialGate {
	return &partialGate{limit: limit, ended: make(chan struct{})}
}

// enter counts a handler in when its batch is full, the bound is not
// reached, or force is set; otherwise it returns a channel closed when a
// handler ends.
func (g *partialGate) enter(full, force bool) (bool, <-chan struct{}) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if full || force || g.running < g.limit {
		g.running++
		return true, nil
	}
	return false, g.ended
}

// leave counts a handler out.
func (g *partialGate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.running--
	close(g.ended)
	g.ended = make(chan struct{})
}
