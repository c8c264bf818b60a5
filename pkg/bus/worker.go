package bus

import (
	"context"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
)

// worker handles queued messages until its queue is closed: it takes the
// first one that comes and, for a batch handler, whatever else is already
// waiting, up to BatchSize. Nothing waits for a batch to fill, so a quiet
// stream is not held back. Each message's slot is released once its
// handler call is over. running holds the call in progress (see Run).
func (c *Consumer) worker(handlerCtx context.Context, queue <-chan jetstream.Msg, slots <-chan struct{}, running *atomic.Pointer[handlerCall]) {
	msgs := make([]jetstream.Msg, 0, c.cfg.BatchSize)
	for msg := range queue {
		msgs = append(msgs[:0], msg)
	fill:
		for len(msgs) < c.cfg.BatchSize {
			select {
			case m, ok := <-queue:
				if !ok {
					break fill
				}
				msgs = append(msgs, m)
			default:
				break fill
			}
		}
		c.handleBatch(handlerCtx, msgs, running)
		for range msgs {
			<-slots
		}
	}
}

// handleBatch runs the handler over msgs and settles each one.
func (c *Consumer) handleBatch(handlerCtx context.Context, msgs []jetstream.Msg, running *atomic.Pointer[handlerCall]) {
	attempts := make([]*attempt, 0, len(msgs))
	var forHandler []*attempt
	for _, msg := range msgs {
		a := c.beginAttempt(handlerCtx, msg)
		if a == nil {
			continue
		}
		attempts = append(attempts, a)
		if a.forHandler {
			forHandler = append(forHandler, a)
		}
	}
	if len(forHandler) > 0 {
		c.callHandler(handlerCtx, forHandler, running)
	}
	for _, a := range attempts {
		if !a.settled {
			c.finishAttempt(handlerCtx, a)
		}
	}
}
