package state_test

import (
	"testing"

	"google.golang.org/protobuf/proto"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
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
