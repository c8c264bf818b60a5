package bus

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// worker handles queued messages until its queue is closed: it takes the
// first one that comes and, for a batch handler, whatever else is already
// waiting, up to BatchSize. Nothing waits for a batch to fill while fewer
// than PartialBatches handlers run, so a quiet stream is not held back;
// past that, a partial batch waits for its turn (see partialGate). Each
// message's slot is released once its handler call is over. running holds
// the call in progress (see Run).
func (c *Consumer) worker(handlerCtx context.Context, queue <-chan jetstream.Msg, slots <-chan struct{}, running *atomic.Pointer[handlerCall], shared bool) {
	msgs := make([]jetstream.Msg, 0, c.cfg.BatchSize)
	for {
		// With one queue for all workers, one worker at a time gathers a
		// partial batch, so that what arrives while it waits for its turn
		// goes into one batch rather than spread over every waiting worker.
		gather := c.partial != nil && shared
		if gather {
			c.partial.gather.Lock()
		}
		msg, ok := <-queue
		if ok {
			msgs = c.takeWaiting(queue, append(msgs[:0], msg))
			if c.partial != nil {
				msgs = c.waitTurn(queue, msgs)
			}
		}
		if gather {
			c.partial.gather.Unlock()
		}
		if !ok {
			return
		}
		c.handleBatch(handlerCtx, msgs, running)
		if c.partial != nil {
			c.partial.leave()
		}
		for range msgs {
			<-slots
		}
	}
}

// takeWaiting adds to msgs what is waiting in queue, up to BatchSize.
func (c *Consumer) takeWaiting(queue <-chan jetstream.Msg, msgs []jetstream.Msg) []jetstream.Msg {
	for len(msgs) < c.cfg.BatchSize {
		select {
		case m, ok := <-queue:
			if !ok {
				return msgs
			}
			msgs = append(msgs, m)
		default:
			return msgs
		}
	}
	return msgs
}

// waitTurn returns once msgs may go to the handler (partialGate), with
// what arrived meanwhile. The handler call counts in the gate until the
// worker leaves it. A batch waits while handlers keep ending, and goes
// anyway once none has ended for partialWaitMax (slow handlers), or after
// a third of AckWait, before its messages could be redelivered.
func (c *Consumer) waitTurn(queue <-chan jetstream.Msg, msgs []jetstream.Msg) []jetstream.Msg {
	var idle, limit *time.Timer
	closed, late := false, false
	for {
		ok, ended := c.partial.enter(len(msgs) >= c.cfg.BatchSize, closed || late)
		if ok {
			if idle != nil {
				idle.Stop()
				limit.Stop()
			}
			return msgs
		}
		if idle == nil {
			idle = time.NewTimer(partialWaitMax)
			limit = time.NewTimer(max(c.cfg.AckWait/3, partialWaitMax))
		}
		select {
		case m, open := <-queue:
			if !open {
				closed = true
				continue
			}
			msgs = c.takeWaiting(queue, append(msgs, m))
		case <-ended:
			idle.Reset(partialWaitMax)
		case <-idle.C:
			late = true
		case <-limit.C:
			late = true
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
