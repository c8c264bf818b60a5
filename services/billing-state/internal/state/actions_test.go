package state_test

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/protobuf/proto"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/test/testkit/journey"
)

// The webhook a staff action causes is recorded on the action, matched by
// metadata[launchready_action_id]; an event without it links nothing, and
// a redelivery links nothing twice.
func TestStaffActionLinksItsWebhook(t *testing.T) {
	b := setup(t)
	pool := b.store.Pool()
	if _, err := pool.Exec(b.ctx, `INSERT INTO billing.admin_actions (action_id, kind, customer_id, actor_email, reason, request, state)
		VALUES ('act_Link1', 'cancel_subscription', 'cus_Link1', 'ana@example.com', 'asked to stop', '{}', 'succeeded')`); err != nil {
		t.Fatal(err)
	}
	jb := journey.New(t, "cus_Link1", base)
	plain := jb.Subscription("customer.subscription.created", 0, "sub_Link1", "active", false, nil)
	b.apply(t, plain)
	tagged := jb.Subscription("customer.subscription.updated", 60, "sub_Link1", "active", true, nil)
	tagged.RawJson = []byte(`{"id":"` + tagged.GetEventId() + `","data":{"object":{"id":"sub_Link1","object":"subscription",` +
		`"metadata":{"launchready_action_id":"act_Link1","user_id":"u1"}}}}`)
	b.apply(t, tagged)
	b.apply(t, proto.Clone(tagged).(*billingv1.BillingEvent))
	var events []string
	if err := pool.QueryRow(b.ctx, `SELECT event_ids FROM billing.admin_actions WHERE action_id = 'act_Link1'`).Scan(&events); err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0] != tagged.GetEventId() {
		t.Fatalf("action linked to %v, want only %s", events, tagged.GetEventId())
	}
	if st := b.status(t, "cus_Link1"); !st.GetCancelAtPeriodEnd() {
		t.Fatalf("the tagged event was not applied as usual: %v", st)
	}
}

// The webhook's span links to the span that made the action, named by
// metadata[launchready_traceparent].
func TestStaffActionsWebhookLinksToTheActionsTrace(t *testing.T) {
	b := setup(t)
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	t.Cleanup(func() { _ = tp.Shutdown(context.Background()) })

	const actionTrace, actionSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	jb := journey.New(t, "cus_Trace1", base)
	b.apply(t, jb.Subscription("customer.subscription.created", 0, "sub_Trace1", "active", false, nil))
	tagged := jb.Subscription("customer.subscription.updated", 60, "sub_Trace1", "active", true, nil)
	tagged.RawJson = []byte(`{"id":"` + tagged.GetEventId() + `","data":{"object":{"id":"sub_Trace1","object":"subscription",` +
		`"metadata":{"launchready_action_id":"act_Trace1","launchready_traceparent":"00-` + actionTrace + `-` + actionSpan + `-01"}}}}`)

	ctx, span := tp.Tracer("test").Start(b.ctx, "webhook")
	if _, err := b.store.ApplyEvent(ctx, tagged, state.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}
	span.End()
	if _, err := b.store.ApplyEvent(b.ctx, jb.Subscription("customer.subscription.updated", 120, "sub_Trace1", "active", false, nil), state.ApplyOptions{}); err != nil {
		t.Fatal(err)
	}

	ended := sr.Ended()
	if len(ended) != 1 {
		t.Fatalf("%d spans", len(ended))
	}
	links := ended[0].Links()
	if len(links) != 1 || links[0].SpanContext.TraceID().String() != actionTrace || links[0].SpanContext.SpanID().String() != actionSpan {
		t.Fatalf("links %+v, want one to %s/%s", links, actionTrace, actionSpan)
	}
	if ended[0].SpanContext().TraceID().String() == actionTrace {
		t.Fatal("the webhook joined the action's trace instead of linking to it")
	}
}
