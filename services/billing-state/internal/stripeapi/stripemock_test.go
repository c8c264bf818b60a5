package stripeapi_test

import (
	"context"
	"strings"
	"testing"

	"github.com/launchready/launchready/services/billing-state/internal/stripeapi"
	"github.com/launchready/launchready/test/testkit/stripemock"
)

// TestAgainstStripeMock reads through stripe-go from stripe-mock, Stripe's
// own mock of its API (the shapes of its OpenAPI fixtures, the ids echoed
// from the path): what STRIPE_API_BASE points billing-state at offline.
func TestAgainstStripeMock(t *testing.T) {
	base := stripemock.Start(t)
	ctx := context.Background()
	c := stripeapi.New(testKey(), base, 100)

	s, err := c.Subscription(ctx, "sub_LRmock1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Status == "" || !strings.HasPrefix(s.PriceID, "price_") || s.CurrentPeriodEnd.IsZero() {
		t.Fatalf("subscription from stripe-mock: %+v; want a status, a price and a period end", s)
	}
	if _, err := c.Charge(ctx, "ch_LRmock1"); err != nil {
		t.Fatal(err)
	}

	// A key that is not a test key is refused by the API; the error keeps
	// the status and type, not the message (which echoes the header).
	bad := stripeapi.New("not_a_key", base, 100)
	_, err = bad.Subscription(ctx, "sub_LRmock1")
	if err == nil || !strings.Contains(err.Error(), "http 401") || strings.Contains(err.Error(), "not_a_key") {
		t.Fatalf("bad key: %v; want an http 401 without the key", err)
	}
}
