package links

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/stripeapi"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit/stripemock"
)

// The charge read is stripe-go's, through pkg/stripeapi, against
// stripe-mock: the request shape Stripe's own mock accepts, and an answer
// of the shape the API returns, read into a link.
func TestChargeReadAgainstStripeMock(t *testing.T) {
	base := stripemock.Start(t)
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	api, err := stripeapi.New(stripeapi.Config{Key: config.Secret("sk_test_" + hex.EncodeToString(b)), Base: base})
	if err != nil {
		t.Fatal(err)
	}
	obj, err := api.GetCharge(context.Background(), "ch_LRsupport1")
	if err != nil {
		t.Fatal(err)
	}
	c, err := ChargeCustomerFromAPI(obj.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if c.Ref != "ch_LRsupport1" || c.Source != "stripe_api" {
		t.Fatalf("link from stripe-mock: %+v", c)
	}
}

func TestChargeCustomerFromAPIShapes(t *testing.T) {
	cases := map[string]struct {
		raw            string
		id, email, nam string
	}{
		"customer id":    {`{"id":"ch_1","object":"charge","customer":"cus_1","billing_details":{"email":"a@example.com","name":"A"}}`, "cus_1", "a@example.com", "A"},
		"expanded":       {`{"id":"ch_1","object":"charge","customer":{"id":"cus_2","email":"b@example.com","name":"B"},"billing_details":{"email":"card@example.com"}}`, "cus_2", "b@example.com", "B"},
		"guest":          {`{"id":"ch_1","object":"charge","customer":null,"billing_details":{"email":"guest@example.com"}}`, "", "guest@example.com", ""},
		"receipt e-mail": {`{"id":"ch_1","object":"charge","customer":null,"receipt_email":"r@example.com","billing_details":{}}`, "", "r@example.com", ""},
	}
	for name, c := range cases {
		got, err := ChargeCustomerFromAPI([]byte(c.raw))
		if err != nil || got.CustomerID != c.id || got.Email != c.email || got.Name != c.nam {
			t.Errorf("%s: %+v %v", name, got, err)
		}
	}
	if _, err := ChargeCustomerFromAPI([]byte(`{"object":"charge"}`)); err == nil {
		t.Error("a charge without an id was read")
	}
}

func TestLearnedAndNeeds(t *testing.T) {
	charge := &billingv1.BillingEvent{EventId: "evt_1", Type: "charge.succeeded", ObjectType: "charge", ChargeId: "ch_1", PaymentIntentId: "pi_1",
		CustomerId: "cus_1", Email: "a@example.com"}
	if got := Learned(charge); len(got) != 2 || got[0].Ref != "ch_1" || got[1].Ref != "pi_1" || got[0].CustomerID != "cus_1" {
		t.Fatalf("learned %+v", got)
	}
	dispute := &billingv1.BillingEvent{EventId: "evt_2", Type: "charge.dispute.created", ObjectType: "dispute", DisputeId: "dp_1", ChargeId: "ch_1"}
	if Learned(dispute) != nil || !Needs(dispute) {
		t.Fatal("a dispute teaches nothing and needs its customer")
	}
	dispute.CustomerId = "cus_1"
	if Needs(dispute) {
		t.Fatal("a dispute naming its customer needs nothing")
	}
}
