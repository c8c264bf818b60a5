package bus

import (
	"context"

	"github.com/nats-io/nats.go"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Delivery is one message handed to a Handler.
type Delivery struct {
	Event *billingv1.BillingEvent
	// Subject is billing.events.<type>, or billing.replay.<durable>.<type>
	// for a replayed dead letter.
	Subject string
	// Delivered counts deliveries of this message to this consumer, from 1.
	Delivered uint64
	// StreamSeq is the message's sequence in BILLING_EVENTS.
	StreamSeq uint64
	// Replay is true for a dead letter put back by an operator.
	Replay bool
	Header nats.Header

	ctx       context.Context
	duplicate bool
}

// Context carries the delivery's consumer span and, while a handler runs,
// its deadline. A BatchHandler uses it for the work it does on this
// delivery, so that each event keeps its own trace.
func (d *Delivery) Context() context.Context {
	if d.ctx == nil {
		return context.Background()
	}
	return d.ctx
}

// MarkDuplicate tells the runner the handler found the event already
// processed (its processed_events row exists). The delivery is still acked;
// the runner counts it in lr_consumer_duplicates_total so every consumer
// reports duplicates the same way.
func (d *Delivery) MarkDuplicate() { d.duplicate = true }

// Handler processes one delivery. nil acks it (also for events the handler
// ignores); Permanent(err) dead-letters it at once; RetryAfter(err, d) asks
// for another attempt after d; any other error retries with exponential
// backoff until MaxDeliver, then dead-letters. ctx carries the consumer
// span and the HandlerTimeout deadline; it is also cancelled if the handler
// outlives the shutdown grace. An answer given after the deadline is not
// used: the delivery has already been settled as a timeout.
type Handler func(ctx context.Context, d *Delivery) error

// BatchHandler processes several deliveries in one call, so that their
// work can share a database transaction. It returns one error per
// delivery, each with a Handler's meaning; a delivery's span is in
// d.Context(). HandlerTimeout bounds the whole call. A panic dead-letters
// nothing at once: the runner calls the handler again with each delivery
// alone, to find the one that panics.
type BatchHandler func(ctx context.Context, ds []*Delivery) []error
