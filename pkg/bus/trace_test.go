package bus_test

import (
	"context"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/test/testkit"
)

func TestTraceContextFlowsFromProducerToConsumer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	defer tp.Shutdown(context.Background())

	handlerSpan := make(chan trace.SpanContext, 1)
	b.run(t, quiet("traced"), func(ctx context.Context, d *bus.Delivery) error {
		handlerSpan <- trace.SpanContextFromContext(ctx)
		return nil
	}, bus.ConsumerOptions{TracerProvider: tp})

	pub := bus.NewPublisher(b.js, tp)
	if _, err := pub.PublishEvent(testCtx(t), event("evt_traced", "invoice.paid", "cus_8")); err != nil {
		t.Fatal(err)
	}
	hs := <-handlerSpan
	testkit.Eventually(t, 10*time.Second, "consumer span ended", func() bool { return len(sr.Ended()) == 2 })

	var producer, consumer sdktrace.ReadOnlySpan
	for _, s := range sr.Ended() {
		switch s.SpanKind() {
		case trace.SpanKindProducer:
			producer = s
		case trace.SpanKindConsumer:
			consumer = s
		}
	}
	if producer == nil || consumer == nil {
		t.Fatalf("spans = %v", sr.Ended())
	}
	if producer.Name() != "publish billing.events.invoice.paid" || consumer.Name() != "process billing.events.invoice.paid" {
		t.Fatalf("span names %q, %q", producer.Name(), consumer.Name())
	}
	if consumer.SpanContext().TraceID() != producer.SpanContext().TraceID() {
		t.Fatal("producer and consumer spans are in different traces")
	}
	if consumer.Parent().SpanID() != producer.SpanContext().SpanID() {
		t.Fatal("consumer span is not a child of the producer span")
	}
	if hs.SpanID() != consumer.SpanContext().SpanID() {
		t.Fatal("handler context does not carry the consumer span")
	}
	wantAttrs := func(s sdktrace.ReadOnlySpan, want map[string]string) {
		t.Helper()
		got := map[string]string{}
		for _, kv := range s.Attributes() {
			got[string(kv.Key)] = kv.Value.String()
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: attribute %s = %q, want %q", s.Name(), k, got[k], v)
			}
		}
	}
	common := map[string]string{
		"messaging.system":           "nats",
		"messaging.destination.name": "billing.events.invoice.paid",
		"stripe.event_id":            "evt_traced",
		"stripe.event_type":          "invoice.paid",
		"stripe.customer_id":         "cus_8",
	}
	wantAttrs(producer, common)
	common["messaging.consumer.group.name"] = "traced"
	common["messaging.nats.delivery_count"] = "1"
	common["lr.outcome"] = "ack"
	wantAttrs(consumer, common)
}
