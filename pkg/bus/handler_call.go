package bus

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// errHandlerTimeout is the failure recorded for the deliveries of a handler
// call that outlived HandlerTimeout: a transient one, retried after the
// usual backoff and dead-lettered past MaxDeliver.
var errHandlerTimeout = errors.New("handler timed out")

// overdueGrace is how long a handler whose context has ended may take to
// return before the runner settles its deliveries without it. A handler
// that honours its context returns well within it, and its own answer is
// then what gets recorded and logged.
const overdueGrace = time.Second

// handlerCall is one call of the handler. The worker that made it and
// whoever settles it without the handler (its keepalive timer once it is
// overdue, or Run at shutdown) race to settle it; claimed decides which
// one does.
type handlerCall struct {
	group []*attempt
	start time.Time
	alive *keepAliveTimer
	// claimed is set by the first to settle the call.
	claimed atomic.Bool
	// settlingWithout counts those settling the call without its handler,
	// so that the worker, when its handler returns, can wait for them.
	settlingWithout sync.WaitGroup
}

func (hc *handlerCall) claim() bool { return hc.claimed.CompareAndSwap(false, true) }

// callHandler runs the handler over group, keeping their messages alive
// while it works, and stores each answer in its attempt. running holds the
// call while the handler runs, for Run to find at shutdown.
//
// The call gets HandlerTimeout: its context, and each delivery's, carries
// the deadline. A handler that has not returned overdueGrace after the
// deadline has its deliveries settled without it (see Run), and its
// keepalive stops then; until then the keepalive goes on, so that
// JetStream does not hand the messages to another replica meanwhile. An
// answer that comes after the deadline is dropped: the deliveries count as
// timed out.
//
// A panic is a bug, which does not get better by retrying: the delivery
// that causes it is dead-lettered so that it is visible. In a batch the
// culprit is found by calling the handler again with each delivery alone.
func (c *Consumer) callHandler(handlerCtx context.Context, group []*attempt, running *atomic.Pointer[handlerCall]) {
	msgs := make([]jetstream.Msg, len(group))
	ds := make([]*Delivery, len(group))
	for i, a := range group {
		msgs[i], ds[i] = a.msg, a.delivery
	}
	start := time.Now()
	deadline := start.Add(c.cfg.HandlerTimeout)
	callCtx, cancel := withCallDeadline(handlerCtx, group, deadline)
	defer cancel()
	hc := &handlerCall{group: group, start: start, alive: &keepAliveTimer{}}
	hc.alive.start(msgs, c.cfg.AckWait/3, deadline.Add(overdueGrace), func() { c.settleOverdue(handlerCtx, hc) })
	running.Store(hc)

	errs, panicErr := c.invokeHandler(callCtx, ds)
	took := time.Since(start)
	running.Store(nil)
	won := hc.claim()
	hc.alive.stop()
	if !won {
		hc.settlingWithout.Wait()
		c.metrics.overdueReturned()
		c.log.WarnContext(callCtx, "overdue handler returned; its answer is dropped", "deliveries", len(group), "took", took.String())
		return
	}
	switch {
	case took >= c.cfg.HandlerTimeout && handlerCtx.Err() == nil:
		c.recordTimeout(group, took)
		return
	case panicErr != nil && len(group) > 1:
		for _, a := range group {
			a.delivery.duplicate = false
			c.callHandler(handlerCtx, []*attempt{a}, running)
		}
		return
	}
	for i, a := range group {
		a.handlerTook = took
		if panicErr != nil {
			a.handlerErr = panicErr
			continue
		}
		a.handlerErr = errs[i]
	}
}

// withCallDeadline gives the call, and each delivery's context, the
// deadline. A lone delivery's context is the call's context; a batch's call
// context derives from handlerCtx, and each delivery keeps its own span.
func withCallDeadline(handlerCtx context.Context, group []*attempt, deadline time.Time) (context.Context, context.CancelFunc) {
	if len(group) == 1 {
		ctx, cancel := context.WithDeadline(group[0].spanCtx, deadline)
		group[0].delivery.ctx = ctx
		return ctx, cancel
	}
	ctx, cancel := context.WithDeadline(handlerCtx, deadline)
	cancels := make([]context.CancelFunc, len(group))
	for i, a := range group {
		a.delivery.ctx, cancels[i] = context.WithDeadline(a.spanCtx, deadline)
	}
	return ctx, func() {
		for _, c := range cancels {
			c()
		}
		cancel()
	}
}

// settleOverdue settles the deliveries of a call whose handler has not
// returned: as timed out once it is past its deadline, or as interrupted
// (a plain nak, so another replica takes them now) when Run is shutting
// down. The handler keeps running; its worker waits for it. It does
// nothing if the handler returned first.
func (c *Consumer) settleOverdue(handlerCtx context.Context, hc *handlerCall) {
	// Counted before the claim, so that a worker that loses it waits.
	hc.settlingWithout.Add(1)
	defer hc.settlingWithout.Done()
	if !hc.claim() {
		return
	}
	hc.alive.stop()
	took := time.Since(hc.start)
	if err := handlerCtx.Err(); err != nil {
		for _, a := range hc.group {
			a.handlerErr, a.handlerTook = fmt.Errorf("handler interrupted by shutdown: %w", err), took
		}
	} else {
		c.recordTimeout(hc.group, took)
	}
	c.metrics.overdueStarted()
	c.log.ErrorContext(hc.group[0].delivery.Context(), "handler still running past its deadline; settling its deliveries without it, and its worker waits for it",
		"deliveries", len(hc.group), "handler_timeout", c.cfg.HandlerTimeout.String(), "running_for", took.String())
	for _, a := range hc.group {
		c.finishAttempt(handlerCtx, a)
		a.settled = true
	}
}

// recordTimeout marks every delivery of a call that outlived
// HandlerTimeout as a transient failure.
func (c *Consumer) recordTimeout(group []*attempt, took time.Duration) {
	err := fmt.Errorf("%w after %s", errHandlerTimeout, c.cfg.HandlerTimeout)
	for _, a := range group {
		a.handlerErr, a.handlerTook = err, took
	}
	c.metrics.timedOut(len(group))
}

// invokeHandler calls the handler and turns a panic, or an answer of the
// wrong length, into a permanent error.
func (c *Consumer) invokeHandler(ctx context.Context, ds []*Delivery) (errs []error, panicErr error) {
	defer func() {
		if r := recover(); r != nil {
			c.log.ErrorContext(ctx, "handler panic", "panic", Redact(fmt.Sprint(r)), "stack", string(debug.Stack()))
			panicErr = Permanent(fmt.Errorf("handler panic: %v", r))
		}
	}()
	errs = c.handler(ctx, ds)
	if len(errs) != len(ds) {
		return nil, Permanent(fmt.Errorf("handler answered %d results for %d deliveries", len(errs), len(ds)))
	}
	return errs, nil
}
