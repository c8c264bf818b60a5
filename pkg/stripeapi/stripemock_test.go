package stripeapi_test

import (
	"context"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/stripeapi"
	"github.com/launchready/launchready/test/testkit/stripemock"
)

// TestRequestShapesAgainstStripeMock sends every request the client makes
// to stripe-mock, which validates each against Stripe's OpenAPI
// specification and refuses a parameter Stripe would refuse.
func TestRequestShapesAgainstStripeMock(t *testing.T) {
	base := stripemock.Start(t)
	ctx := context.Background()
	c, err := stripeapi.New(stripeapi.Config{Key: config.Secret(testKey()), Base: base, Rate: 100, Livemode: "test"})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	n := 0
	err = c.ListEvents(ctx, stripeapi.EventQuery{Since: now.Add(-72 * time.Hour), Until: now,
		Types: []string{"customer.subscription.updated", "invoice.payment_failed"}}, func(evs []stripeapi.Event) error {
		n += len(evs)
		return nil
	})
	if err != nil || n == 0 {
		t.Fatalf("list events with a window and types: %d events, %v", n, err)
	}
	for _, kind := range stripeapi.Kinds() {
		for _, q := range []stripeapi.ObjectQuery{{}, {Since: now.Add(-24 * time.Hour)}} {
			if kind != stripeapi.Refunds && kind != stripeapi.Disputes {
				q.Customer = "cus_LRmock1"
			}
			n := 0
			err := c.ListObjects(ctx, kind, q, func(objs []stripeapi.Object) error {
				for _, o := range objs {
					if o.ID == "" || o.Object == "" {
						t.Errorf("%s: an object without id or type", kind)
					}
				}
				n += len(objs)
				return nil
			})
			if err != nil || n == 0 {
				t.Fatalf("list %s %+v: %d objects, %v", kind, q, n, err)
			}
		}
	}
	if o, err := c.GetSubscription(ctx, "sub_LRmock1"); err != nil || o.Object != "subscription" {
		t.Fatalf("get subscription: %+v %v", o, err)
	}
	if o, err := c.GetCharge(ctx, "ch_LRmock1"); err != nil || o.Object != "charge" {
		t.Fatalf("get charge: %+v %v", o, err)
	}
}
