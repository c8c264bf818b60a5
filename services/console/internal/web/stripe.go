package web

import (
	"context"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/stripeapi"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// stripeView is Stripe's own view of the subscription the canonical status
// derives from, fetched live with the server's key.
type stripeView struct {
	stripeapi.Subscription
	// Differs is set when Stripe's status is not the one billing-state
	// derived from (a missed or pending webhook).
	Differs bool
}

// readStripe fetches the customer's subscription from Stripe; the second
// result is why it could not.
func (s *Server) readStripe(ctx context.Context, st *billingv1.CustomerStatus) (*stripeView, string) {
	sub := st.GetSubscriptionId()
	if sub == "" {
		return nil, "No subscription to fetch: the status derives from a one-time purchase, or from nothing."
	}
	live, err := s.opts.Stripe.Subscription(ctx, sub)
	if stripeapi.IsNotFound(err) {
		return nil, "Stripe has no subscription " + sub + "."
	}
	if err != nil {
		s.opts.Log.WarnContext(ctx, "read subscription from Stripe", "subscription_id", sub, "error", err.Error())
		return nil, "Stripe did not answer; the error is in the console's log."
	}
	// A subscription's status maps to the canonical one by the same function
	// billing-state uses; a difference is a webhook missed or still on its way.
	return &stripeView{Subscription: live, Differs: canonical.SubscriptionStatus(live.Status) != st.GetStatus()}, ""
}
