package bus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// attempt is one delivery of a message, from its arrival to its
// settlement (ack, retry or dead letter).
type attempt struct {
	msg      jetstream.Msg
	delivery *Delivery
	event    *billingv1.BillingEvent
	// spanCtx carries the consumer span; each handler call derives the
	// delivery's context from it with its own deadline.
	spanCtx   context.Context
	span      trace.Span
	eventType string
	// forHandler: decoded and within MaxDeliver, so the handler gets it.
	forHandler bool
	// handlerErr is the handler's answer, or why it never got one.
	handlerErr  error
	handlerTook time.Duration
	// settled: already acked, retried or dead-lettered, because its handler
	// outlived its context (see callHandler).
	settled bool
}

// beginAttempt starts a message's span and decodes it. It returns nil for
// a message that is not a JetStream delivery, which it terminates.
func (c *Consumer) beginAttempt(handlerCtx context.Context, msg jetstream.Msg) *attempt {
	meta, err := msg.Metadata()
	if err != nil {
		// Not a JetStream delivery: nothing to redeliver, nothing to record.
		c.log.Error("message without JetStream metadata; terminating it", "subject", msg.Subject(), "error", err.Error())
		_ = msg.Term()
		c.metrics.outcome(outcomeTerm, 0)
		return nil
	}
	subject := msg.Subject()
	eventType, replay := eventTypeFromSubject(subject)
	d := &Delivery{
		Subject:   subject,
		Delivered: meta.NumDelivered,
		StreamSeq: meta.Sequence.Stream,
		Replay:    replay,
		Header:    msg.Headers(),
	}
	if d.Delivered > 1 {
		c.metrics.redelivery()
	} else {
		c.metrics.waited(meta.Timestamp, time.Now())
	}

	spanCtx, span := c.startProcessSpan(handlerCtx, d)
	d.ctx = spanCtx
	a := &attempt{msg: msg, delivery: d, spanCtx: spanCtx, span: span, eventType: eventType, event: &billingv1.BillingEvent{}}
	switch err := proto.Unmarshal(msg.Data(), a.event); {
	case err != nil:
		a.handlerErr = Permanent(fmt.Errorf("decode BillingEvent: %w", err))
	case a.event.GetEventId() == "":
		a.handlerErr = Permanent(errors.New("decode BillingEvent: no event id"))
	default:
		d.Event = a.event
		a.eventType = a.event.GetType()
		span.SetAttributes(eventAttrs(a.event)...)
		if d.Delivered > uint64(c.cfg.MaxDeliver) { // #nosec G115 -- MaxDeliver is validated to be at least 1
			// Earlier deliveries ended with no outcome (a crash, an
			// unreachable server): do not risk another crash loop.
			a.handlerErr = fmt.Errorf("delivered %d times without an outcome, past max %d", d.Delivered, c.cfg.MaxDeliver)
			break
		}
		a.forHandler = true
	}
	return a
}
