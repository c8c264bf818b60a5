package syncer_test

import (
	"context"
	"testing"
	"time"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/crm-sync/internal/crm"
	"github.com/launchready/launchready/test/testkit/journey"
)

// A smoke test's customer reaches the CRM as a contact marked
// launchready_test, with no MRR and no deal, even when later events of it
// carry no mark; a real customer with the same events gets its deal, its
// MRR and no mark.
func TestSmokeCustomerIsAMarkedContactWithoutDeals(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	at := time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)

	smoke := journey.New(t, journey.ID("cus_lrsmoke"), at)
	plain := journey.New(t, journey.ID("cus"), at)
	smokeSub, plainSub := journey.ID("sub"), journey.ID("sub")
	for _, ev := range []*billingv1.BillingEvent{
		smoke.SmokeInvoice(0, journey.ID("in"), "run_crm"),
		smoke.Subscription("customer.subscription.created", 1, smokeSub, "active", false, nil),
		plain.Customer("customer.created", 0),
		plain.Subscription("customer.subscription.created", 1, plainSub, "active", false, nil),
	} {
		if _, err := b.sy.SyncEvent(ctx, ev, 1); err != nil {
			t.Fatalf("%s %s: %v", ev.GetCustomerId(), ev.GetType(), err)
		}
	}

	c, ok := b.fake.Find("contacts", "stripe_customer_id", smoke.CustomerID)
	if !ok {
		t.Fatal("no contact for the smoke customer: the smoke run's CRM channel would never confirm")
	}
	if c.Properties["launchready_test"] != "true" {
		t.Errorf("smoke contact launchready_test = %q, want true", c.Properties["launchready_test"])
	}
	if c.Properties["mrr"] != crm.Money(0, "usd") {
		t.Errorf("smoke contact mrr = %q, want %s", c.Properties["mrr"], crm.Money(0, "usd"))
	}
	if d, ok := b.fake.Find("deals", "stripe_subscription_id", smokeSub); ok {
		t.Errorf("smoke customer has a deal: %+v", d)
	}

	c, ok = b.fake.Find("contacts", "stripe_customer_id", plain.CustomerID)
	if !ok {
		t.Fatal("no contact for the real customer")
	}
	if v, marked := c.Properties["launchready_test"]; marked {
		t.Errorf("real contact carries launchready_test = %q", v)
	}
	if c.Properties["mrr"] != crm.Money(1500, "usd") {
		t.Errorf("real contact mrr = %q, want %s", c.Properties["mrr"], crm.Money(1500, "usd"))
	}
	if _, ok := b.fake.Find("deals", "stripe_subscription_id", plainSub); !ok {
		t.Error("real customer has no deal")
	}
}
