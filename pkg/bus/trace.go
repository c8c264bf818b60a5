package bus

import (
	"context"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/pkg/telemetry"
)

const tracerName = "github.com/launchready/launchready/pkg/bus"

// Messaging semantic-convention keys (OpenTelemetry messaging spans).
const (
	attrMessagingSystem        = attribute.Key("messaging.system")
	attrMessagingDestination   = attribute.Key("messaging.destination.name")
	attrMessagingOperationType = attribute.Key("messaging.operation.type")
	attrMessagingMessageID     = attribute.Key("messaging.message.id")
	attrMessagingConsumerGroup = attribute.Key("messaging.consumer.group.name")
	attrMessagingDeliveryCount = attribute.Key("messaging.nats.delivery_count")
	attrMessagingStreamSeq     = attribute.Key("messaging.nats.stream_sequence")
	attrOutcome                = attribute.Key("lr.outcome")
)

func tracerFrom(tp trace.TracerProvider) trace.Tracer {
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	return tp.Tracer(tracerName)
}

// startProcessSpan starts the consumer span of one delivery, as a child of
// the producer's span carried in the message headers.
func (c *Consumer) startProcessSpan(handlerCtx context.Context, d *Delivery) (context.Context, trace.Span) {
	ctx := otel.GetTextMapPropagator().Extract(handlerCtx, headerCarrier(d.Header))
	return c.tracer.Start(ctx, "process "+d.Subject,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(
			attrMessagingSystem.String("nats"),
			attrMessagingOperationType.String("process"),
			attrMessagingDestination.String(d.Subject),
			attrMessagingConsumerGroup.String(c.cfg.Durable),
			attrMessagingDeliveryCount.Int64(int64(d.Delivered)), // #nosec G115 -- delivery counts are bounded by CONSUMER_MAX_DELIVER
			attrMessagingStreamSeq.Int64(int64(d.StreamSeq)),     // #nosec G115 -- stream sequences stay far below 2^63
		))
}

// eventAttrs are the ids that make a span findable from a Stripe event.
func eventAttrs(ev *billingv1.BillingEvent) []attribute.KeyValue {
	if ev == nil {
		return nil
	}
	attrs := make([]attribute.KeyValue, 0, 3)
	attrs = append(attrs, telemetry.AttrEventID.String(ev.GetEventId()), telemetry.AttrEventType.String(ev.GetType()))
	if c := ev.GetCustomerId(); c != "" {
		attrs = append(attrs, telemetry.AttrCustomerID.String(c))
	}
	if src := SourceName(ev.GetSource()); src != "" {
		attrs = append(attrs, telemetry.AttrEventSource.String(src))
	}
	return attrs
}

// HeaderSource names, on a message of BILLING_EVENTS, where an event that
// did not come from a webhook came from: "api" for an event a backfill read
// from GET /v1/events, "snapshot" for an object it read from a list.
// Webhook deliveries carry no such header.
const HeaderSource = "Launchready-Source"

// SourceName is the header value of a source: "" for a webhook.
func SourceName(s billingv1.EventSource) string {
	switch s {
	case billingv1.EventSource_EVENT_SOURCE_API:
		return "api"
	case billingv1.EventSource_EVENT_SOURCE_SNAPSHOT:
		return "snapshot"
	}
	return ""
}

// headerCarrier adapts nats.Header to the propagator. It does not
// canonicalise keys (unlike http.Header), so the wire names stay the W3C
// lowercase "traceparent" and "tracestate".
type headerCarrier nats.Header

func (c headerCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (c headerCarrier) Set(key, value string) { c[key] = []string{value} }

func (c headerCarrier) Keys() []string {
	keys := make([]string, 0, len(c))
	for k := range c {
		keys = append(keys, k)
	}
	return keys
}
