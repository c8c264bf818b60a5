package canonical

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit"
)

func fixture(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testkit.FixturesDir(t), rel))
	if err != nil {
		t.Fatalf("read fixture: %v", err)
	}
	return b
}

func TestSubscriptionFromEventReadsRawOnlyFields(t *testing.T) {
	raw := fixture(t, "mozilla-fxa/subscription_updated.json")
	ev := &billingv1.BillingEvent{
		EventId: "evt_1GAkaaJNcmPzuWtROjnqHuK4", Type: updated, Created: timestamppb.New(t0),
		CustomerId: "cus_GXgcekfH0gjUCx", SubscriptionId: "sub_1", Status: "active", RawJson: raw,
	}
	s, err := SubscriptionFromEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	if s.Created.IsZero() || s.Created.Equal(t0) {
		t.Errorf("Created should be the subscription's own created, got %v", s.Created)
	}
	if !s.Previous.IsZero() {
		t.Errorf("previous_attributes of this fixture name no tracked field, got %+v", s.Previous)
	}
	if s.Currency != "usd" {
		t.Errorf("currency should come from the plan when the subscription has none, got %q", s.Currency)
	}
	if s.LastEventCreated != t0 || s.LastEventID != ev.EventId || s.Deleted {
		t.Errorf("event fields not carried: %+v", s)
	}
}

func TestSubscriptionFromEventPreviousAttributes(t *testing.T) {
	raw := []byte(`{"id":"evt_x","type":"customer.subscription.updated","created":1740830400,
		"data":{"object":{"id":"sub_1","object":"subscription","created":1740000000,"status":"active",
			"items":{"data":[{"price":{"id":"price_new"},"current_period_end":1742000000}]}},
		"previous_attributes":{"status":"trialing","cancel_at_period_end":true,
			"items":{"data":[{"price":{"id":"price_old"}}]}}}}`)
	ev := &billingv1.BillingEvent{EventId: "evt_x", Type: updated, SubscriptionId: "sub_1", Status: "active", RawJson: raw}
	s, err := SubscriptionFromEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	p := s.Previous
	if p.Status == nil || *p.Status != "trialing" || p.CancelAtPeriodEnd == nil || *p.CancelAtPeriodEnd != true || p.PriceID == nil || *p.PriceID != "price_old" {
		t.Fatalf("previous = %+v", p)
	}
	if !s.Created.Equal(time.Unix(1740000000, 0)) {
		t.Errorf("Created = %v", s.Created)
	}
}

func TestSubscriptionFromEventOldPlanShapeAndNormalisedPreviousStatus(t *testing.T) {
	raw := []byte(`{"data":{"object":{"id":"sub_1","status":"past_due"},"previous_attributes":{"plan":{"id":"plan_old"}}}}`)
	ev := &billingv1.BillingEvent{EventId: "evt_y", Type: updated, ObjectId: "sub_1", PreviousStatus: "active", RawJson: raw}
	s, err := SubscriptionFromEvent(ev)
	if err != nil {
		t.Fatal(err)
	}
	if s.ID != "sub_1" || s.Status != "past_due" {
		t.Errorf("id/status from object: %+v", s)
	}
	if s.Previous.PriceID == nil || *s.Previous.PriceID != "plan_old" || s.Previous.Status == nil || *s.Previous.Status != "active" {
		t.Errorf("previous = %+v", s.Previous)
	}
}

func TestSubscriptionFromEventRejects(t *testing.T) {
	if _, err := SubscriptionFromEvent(&billingv1.BillingEvent{Type: "invoice.paid"}); err == nil {
		t.Error("invoice event accepted")
	}
	if _, err := SubscriptionFromEvent(&billingv1.BillingEvent{Type: updated}); err == nil {
		t.Error("event without subscription id accepted")
	}
	if _, err := SubscriptionFromEvent(&billingv1.BillingEvent{Type: updated, SubscriptionId: "sub_1", RawJson: []byte("{")}); err == nil {
		t.Error("bad raw json accepted")
	}
	s, err := SubscriptionFromEvent(&billingv1.BillingEvent{Type: deleted, SubscriptionId: "sub_1", Status: "canceled"})
	if err != nil || !s.Deleted {
		t.Errorf("deleted event: %+v, %v", s, err)
	}
}

func TestObjectOf(t *testing.T) {
	for _, c := range []struct{ typ, obj, want string }{
		{"charge.dispute.created", "dispute", "dispute"},
		{"invoice_payment.paid", "invoice_payment", "invoice_payment"}, // the object names itself
		{"customer.subscription.updated", "", "subscription"},
		{"checkout.session.completed", "", "checkout.session"},
		{"charge.dispute.closed", "", "dispute"},
		{"charge.refund.updated", "", "refund"},
		{"refund.created", "", "refund"},
		{"charge.succeeded", "", "charge"},
		{"invoice.paid", "", "invoice"},
		{"payment_intent.succeeded", "", "payment_intent"},
		{"customer.deleted", "", "customer"},
		{"customer.tax_id.created", "", ""},
		{"plan.created", "", ""},
	} {
		ev := &billingv1.BillingEvent{Type: c.typ, ObjectType: c.obj}
		if got := ObjectOf(ev); got != c.want {
			t.Errorf("ObjectOf(%s, %q) = %q, want %q", c.typ, c.obj, got, c.want)
		}
	}
}
