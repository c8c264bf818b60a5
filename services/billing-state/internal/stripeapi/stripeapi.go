// Package stripeapi reads subscriptions and charges from the Stripe API for
// billing-state, when STRIPE_API_KEY is set: to settle same-second ties and
// to find the customer of a charge that a dispute or refund names. It is
// state.Fetcher over pkg/stripeapi, whose rate budget the drift check
// shares, so a burst of such events cannot exhaust the account's API
// quota, which the business's own backend shares.
package stripeapi

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/stripeapi"
	"github.com/launchready/launchready/services/billing-state/internal/state"
)

// Client implements state.Fetcher.
type Client struct {
	api *stripeapi.Client
}

var _ state.Fetcher = (*Client)(nil)

// New returns a client for key with a budget of its own. base overrides
// the API URL (stripe-mock, tests); perSecond caps the request rate.
func New(key, base string, perSecond float64) *Client {
	api, err := stripeapi.New(stripeapi.Config{Key: config.Secret(key), Base: base, Rate: max(int(perSecond), 1)})
	if err != nil {
		// Only an empty key fails without a mode to check; such a client
		// answers every call with that error.
		return &Client{}
	}
	return &Client{api: api}
}

// NewFrom returns a fetcher on api, sharing its rate budget.
func NewFrom(api *stripeapi.Client) *Client { return &Client{api: api} }

// Subscription reads a subscription as Stripe has it now
// (stripeapi.Client.Subscription).
func (c *Client) Subscription(ctx context.Context, id string) (state.FetchedSubscription, error) {
	if c.api == nil {
		return state.FetchedSubscription{}, stripeapi.ErrNoKey
	}
	sub, err := c.api.Subscription(ctx, id)
	if err != nil {
		return state.FetchedSubscription{}, err
	}
	return state.FetchedSubscription{Status: sub.Status, CancelAtPeriodEnd: sub.CancelAtPeriodEnd, PriceID: sub.PriceID,
		CurrentPeriodEnd: sub.CurrentPeriodEnd, TrialEnd: sub.TrialEnd}, nil
}

// Charge reads who paid a charge and for which invoice.
func (c *Client) Charge(ctx context.Context, id string) (state.FetchedCharge, error) {
	if c.api == nil {
		return state.FetchedCharge{}, stripeapi.ErrNoKey
	}
	o, err := c.api.GetCharge(ctx, id)
	if err != nil {
		return state.FetchedCharge{}, err
	}
	var body struct {
		Customer      ref `json:"customer"`
		PaymentIntent ref `json:"payment_intent"`
		Invoice       ref `json:"invoice"`
	}
	if err := json.Unmarshal(o.Raw, &body); err != nil {
		return state.FetchedCharge{}, fmt.Errorf("get charge %s: unreadable answer", id)
	}
	return state.FetchedCharge{CustomerID: string(body.Customer), PaymentIntentID: string(body.PaymentIntent), InvoiceID: string(body.Invoice)}, nil
}

// ref is an id that Stripe sends as a string, or as an expanded object.
type ref string

func (r *ref) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*r = ref(s)
		return nil
	}
	var o struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(b, &o) == nil {
		*r = ref(o.ID)
	}
	return nil
}
