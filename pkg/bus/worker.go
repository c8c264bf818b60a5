package bus

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"
)

// worker handles queued messages until its queue is closed: it takes the
// first one that comes and, for a batch handler, whatever else is already
// waiting, up to BatchSize. Nothing waits for a batch to fill, so a quiet
// stream is not held back. Each message's slot is released once its
// handler call is over.
func (c *Consumer) worker(handlerCtx context.Context, queue <-chan jetstream.Msg, slots <-chan struct{}) {
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
		c.handleBatch(handlerCtx, msgs)
		for range msgs {
			<-slots
		}
	}
}

// handleBatch runs the handler over msgs and settles each one.
func (c *Consumer) handleBatch(handlerCtx context.Context, msgs []jetstream.Msg) {
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
		c.callHandler(handlerCtx, forHandler)
	}
	for _, a := range attempts {
		c.finishAttempt(handlerCtx, a)
	}
}
