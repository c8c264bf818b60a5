package bus

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// callHandler runs the handler over group, keeping their messages alive
// while it works, and stores each answer in its attempt. A panic is a bug,
// which does not get better by retrying: the delivery that causes it is
// dead-lettered so that it is visible. In a batch the culprit is found by
// calling the handler again with each delivery alone.
func (c *Consumer) callHandler(handlerCtx context.Context, group []*attempt) {
	msgs := make([]jetstream.Msg, len(group))
	ds := make([]*Delivery, len(group))
	for i, a := range group {
		msgs[i], ds[i] = a.msg, a.delivery
	}
	alive := startKeepAlive(msgs, c.cfg.AckWait/3)
	defer alive.stop()
	ctx := handlerCtx
	if len(group) == 1 {
		ctx = group[0].delivery.Context()
	}
	start := time.Now()
	errs, panicErr := c.invokeHandler(ctx, ds)
	took := time.Since(start)
	if panicErr != nil && len(group) > 1 {
		for _, a := range group {
			a.delivery.duplicate = false
			c.callHandler(handlerCtx, []*attempt{a})
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
