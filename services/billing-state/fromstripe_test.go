package billingstate

import (
	"encoding/json"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/launchready/launchready/pkg/config"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit/journey"
	"github.com/launchready/launchready/test/testkit/stripefake"
)

// ReconcileCustomer with from_stripe applies the customer's subscriptions
// as Stripe has them now, audited with the token's name; without a key it
// is refused as a precondition.
func TestReconcileFromStripe(t *testing.T) {
	key := "sk_test_" + randomToken(t)
	fake := stripefake.New(key)
	t.Cleanup(fake.Close)
	h := start(t, func(c *Config) {
		c.StripeAPIKey, c.StripeAPIBase, c.StripeAPIRate = config.Secret(key), fake.URL(), 100
	})
	admin, read := h.as(h.adminToken), h.as(h.readToken)
	jb := journey.New(t, "cus_FromStripe1", time.Now().Add(-time.Hour).Truncate(time.Second))
	created := jb.Subscription("customer.subscription.created", 0, "sub_FromStripe1", "active", false, nil)
	h.publish(created)
	h.eventually(10*time.Second, "the subscription applied", func() bool {
		st := h.statusOf(jb.CustomerID)
		return st != nil && st.GetStatus() == billingv1.BillingStatus_BILLING_STATUS_ACTIVE
	})

	// Stripe has it unpaid; no event came.
	var env struct {
		Data struct {
			Object map[string]any `json:"object"`
		} `json:"data"`
	}
	if err := json.Unmarshal(created.GetRawJson(), &env); err != nil {
		t.Fatal(err)
	}
	env.Data.Object["status"] = "unpaid"
	obj, _ := json.Marshal(env.Data.Object)
	if err := fake.PutObject(obj); err != nil {
		t.Fatal(err)
	}

	if _, err := h.client.ReconcileCustomer(read, &billingv1.ReconcileCustomerRequest{CustomerId: jb.CustomerID, FromStripe: true}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("read token: %v", err)
	}
	st, err := h.client.ReconcileCustomer(admin, &billingv1.ReconcileCustomerRequest{CustomerId: jb.CustomerID, FromStripe: true})
	if err != nil || st.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_UNPAID {
		t.Fatalf("reconcile from stripe: %v %v", st.GetStatus(), err)
	}
	resp, err := h.client.ListCustomerEvents(read, &billingv1.ListCustomerEventsRequest{CustomerId: jb.CustomerID, PageSize: 5})
	if err != nil {
		t.Fatal(err)
	}
	var repair *billingv1.CustomerEvent
	for _, e := range resp.GetEvents() {
		if e.GetAction() == "repair" {
			repair = e
		}
	}
	if repair == nil || repair.GetActor() != "ops" || repair.GetBefore().GetStatus() != billingv1.BillingStatus_BILLING_STATUS_ACTIVE ||
		repair.GetAfter().GetStatus() != billingv1.BillingStatus_BILLING_STATUS_UNPAID {
		t.Fatalf("no repair row by ops from active to unpaid in %v", resp.GetEvents())
	}
}

func TestReconcileFromStripeNeedsAKey(t *testing.T) {
	h := start(t)
	jb := journey.New(t, "cus_NoKey1", time.Now().Add(-time.Hour).Truncate(time.Second))
	h.publish(jb.Subscription("customer.subscription.created", 0, "sub_NoKey1", "active", false, nil))
	h.eventually(10*time.Second, "the subscription applied", func() bool { return h.statusOf(jb.CustomerID) != nil })
	_, err := h.client.ReconcileCustomer(h.as(h.adminToken), &billingv1.ReconcileCustomerRequest{CustomerId: jb.CustomerID, FromStripe: true})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("from_stripe without a key: %v", err)
	}
	if _, err := h.client.CheckDrift(h.as(h.adminToken), &billingv1.CheckDriftRequest{}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("CheckDrift without a key: %v", err)
	}
}
