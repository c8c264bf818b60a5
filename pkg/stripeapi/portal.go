package stripeapi

import (
	"context"
	"fmt"
	"net/http"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/form"
)

// CreatePortalSession opens a Stripe Customer Portal session for customer
// that leads back to returnURL, and returns the portal's URL. The URL is
// for the customer alone and expires soon. stripe-go gives the POST an
// Idempotency-Key, so its own retries open one session.
func (c *Client) CreatePortalSession(ctx context.Context, customer, returnURL string) (string, error) {
	op := "create portal session for " + customer
	v := &form.Values{}
	v.Add("customer", customer)
	v.Add("return_url", returnURL)
	var sess stripe.BillingPortalSession
	if err := c.call(ctx, op, http.MethodPost, "/v1/billing_portal/sessions", v, &stripe.Params{Context: ctx}, &sess); err != nil {
		return "", err
	}
	if sess.URL == "" {
		return "", fmt.Errorf("%s: no url in the answer", op)
	}
	return sess.URL, nil
}
