package bus

import (
	"context"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// finishAttempt settles a message, records its outcome and ends its span.
func (c *Consumer) finishAttempt(handlerCtx context.Context, a *attempt) {
	defer a.span.End()
	d, span := a.delivery, a.span
	ctx := d.Context()
	eventID := a.event.GetEventId()
	if eventID == "" {
		eventID = d.Header.Get(jetstream.MsgIDHeader)
	}
	outcome, delay := c.settle(ctx, handlerCtx, a.msg, d, eventID, a.eventType, a.handlerErr)
	c.progress.moved(time.Now())
	c.metrics.outcome(outcome, a.handlerTook)
	if outcome == outcomeAck && d.duplicate {
		c.metrics.duplicate()
	}
	span.SetAttributes(attrOutcome.String(outcome))

	attrs := []any{"event_id", eventID, "customer_id", a.event.GetCustomerId(), "subject", d.Subject,
		"delivery", d.Delivered, "outcome", outcome}
	switch {
	case a.handlerErr == nil && outcome == outcomeAck:
		c.log.DebugContext(ctx, "event handled", attrs...)
	case outcome == outcomeNak:
		text := redactError(a.handlerErr)
		span.SetStatus(codes.Error, text)
		c.log.WarnContext(ctx, "event failed; will retry", append(attrs, "error", text, "retry_in", delay.String())...)
	default:
		text := redactError(a.handlerErr)
		span.SetStatus(codes.Error, text)
		c.log.ErrorContext(ctx, "event dead-lettered", append(attrs, "error", text)...)
	}
}

// settle turns the handler's answer into ack, nak or dead letter. It
// returns the outcome and, for a nak, the delay asked for.
func (c *Consumer) settle(ctx, handlerCtx context.Context, msg jetstream.Msg, d *Delivery, eventID, eventType string, handlerErr error) (string, time.Duration) {
	switch {
	case handlerErr == nil && c.ackAfter != nil:
		c.ackAfter(func() { c.ack(ctx, msg) })
		return outcomeAck, 0
	case handlerErr == nil:
		c.ack(ctx, msg)
		return outcomeAck, 0
	case IsPermanent(handlerErr):
		return c.deadLetter(ctx, msg, d, eventID, eventType, handlerErr)
	case handlerCtx.Err() != nil:
		// Cancelled by shutdown, not failed: let another instance take it now.
		_ = msg.Nak()
		return outcomeNak, 0
	case d.Delivered >= uint64(c.cfg.MaxDeliver): // #nosec G115 -- MaxDeliver is validated to be at least 1
		return c.deadLetter(ctx, msg, d, eventID, eventType, handlerErr)
	}
	delay := c.retryDelay(handlerErr, d.Delivered)
	_ = msg.NakWithDelay(delay)
	return outcomeNak, delay
}

func (c *Consumer) ack(ctx context.Context, msg jetstream.Msg) {
	if !c.doubleAck {
		if err := msg.Ack(); err != nil {
			c.log.WarnContext(ctx, "ack not sent; the message will be redelivered", "error", err.Error())
		}
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := msg.DoubleAck(actx); err != nil {
		c.log.WarnContext(ctx, "ack not confirmed; the message may be redelivered", "error", err.Error())
	}
}

// deadLetter stores the message in BILLING_DLQ and only then terminates it.
// If the DLQ publish fails the message is nak'd instead, so it is never
// lost; the Nats-Msg-Id <durable>:<seq> makes a repeat after a crash
// between the two steps a no-op.
func (c *Consumer) deadLetter(ctx context.Context, msg jetstream.Msg, d *Delivery, eventID, eventType string, handlerErr error) (string, time.Duration) {
	h := nats.Header{}
	for _, k := range traceHeaders {
		if v := d.Header.Values(k); len(v) > 0 {
			h[k] = v
		}
	}
	seq := strconv.FormatUint(d.StreamSeq, 10)
	h.Set(jetstream.MsgIDHeader, c.cfg.Durable+":"+seq)
	h.Set(HeaderConsumer, c.cfg.Durable)
	h.Set(HeaderError, redactError(handlerErr))
	h.Set(HeaderDeliveryCount, strconv.FormatUint(d.Delivered, 10))
	h.Set(HeaderOriginalSubject, d.Subject)
	h.Set(HeaderOriginalSeq, seq)
	h.Set(HeaderEventID, eventID)
	h.Set(HeaderEventType, eventType)
	h.Set(HeaderFailedAt, time.Now().UTC().Format(time.RFC3339Nano))

	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	// Run checked the durable before it started.
	dlq := &nats.Msg{Subject: DLQSubject(c.cfg.Durable), Data: msg.Data(), Header: h}
	if _, err := c.js.PublishMsg(pctx, dlq); err != nil {
		delay := backoff(c.cfg.BackoffBase, c.cfg.BackoffMax, d.Delivered)
		c.log.ErrorContext(ctx, "dead letter not stored; keeping the message", "event_id", eventID,
			"delivery", d.Delivered, "error", Redact(err.Error()))
		_ = msg.NakWithDelay(delay)
		return outcomeNak, delay
	}
	if c.deadLettered != nil {
		c.deadLettered(ctx, d)
	}
	trace.SpanFromContext(ctx).AddEvent("dead-lettered", trace.WithAttributes(
		attribute.String("messaging.destination.name", dlq.Subject)))
	if err := msg.TermWithReason("dead-lettered"); err != nil {
		// Redelivery will find the dead letter already stored (same msg id).
		c.log.WarnContext(ctx, "term not sent after dead letter", "event_id", eventID, "error", err.Error())
	}
	return outcomeDeadLetter, 0
}
