// Package stripeapi reads subscriptions and charges from the Stripe API for
// billing-state, when STRIPE_API_KEY is set: to settle same-second ties and
// to find the customer of a charge that a dispute or refund names. Calls are
// rate-limited so a burst of such events cannot exhaust the account's API
// quota, which the business's own backend shares.
package stripeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
	"golang.org/x/time/rate"

	"github.com/launchready/launchready/services/billing-state/internal/state"
)

// Client implements state.Fetcher.
type Client struct {
	api     *client.API
	limiter *rate.Limiter
}

var _ state.Fetcher = (*Client)(nil)

// New returns a client for key. base overrides the API URL (stripe-mock,
// tests); perSecond caps the request rate (<= 0 means 10).
func New(key, base string, perSecond float64) *Client {
	if perSecond <= 0 {
		perSecond = 10
	}
	cfg := &stripe.BackendConfig{
		HTTPClient:        &http.Client{Timeout: 10 * time.Second},
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		MaxNetworkRetries: stripe.Int64(2),
	}
	if base != "" {
		cfg.URL = stripe.String(base)
	}
	api := &client.API{}
	api.Init(key, &stripe.Backends{
		API:     stripe.GetBackendWithConfig(stripe.APIBackend, cfg),
		Connect: stripe.GetBackendWithConfig(stripe.ConnectBackend, cfg),
		Uploads: stripe.GetBackendWithConfig(stripe.UploadsBackend, cfg),
	})
	return &Client{api: api, limiter: rate.NewLimiter(rate.Limit(perSecond), 1)}
}

// Subscription reads a subscription as Stripe has it now. The period end
// and price are read from the raw body: from API version basil on the
// period lives on the items, which stripe-go v76 does not decode.
func (c *Client) Subscription(ctx context.Context, id string) (state.FetchedSubscription, error) {
	if err := c.limiter.Wait(ctx); err != nil {
		return state.FetchedSubscription{}, fmt.Errorf("get subscription %s: %w", id, err)
	}
	p := &stripe.SubscriptionParams{}
	p.Context = ctx
	s, err := c.api.Subscriptions.Get(id, p)
	if err != nil {
		return state.FetchedSubscription{}, fmt.Errorf("get subscription %s: %w", id, describe(err))
	}
	out := state.FetchedSubscription{Status: string(s.Status), CancelAtPeriodEnd: s.CancelAtPeriodEnd}
	if s.TrialEnd > 0 {
		out.TrialEnd = time.Unix(s.TrialEnd, 0).UTC()
	}
	var raw struct {
		CurrentPeriodEnd int64 `json:"current_period_end"`
		Items            struct {
			Data []struct {
				CurrentPeriodEnd int64 `json:"current_period_end"`
				Price            struct {
					ID string `json:"id"`
				} `json:"price"`
			} `json:"data"`
		} `json:"items"`
	}
	if s.LastResponse != nil {
		_ = json.Unmarshal(s.LastResponse.RawJSON, &raw)
	}
	end := raw.CurrentPeriodEnd
	for _, it := range raw.Items.Data {
		end = max(end, it.CurrentPeriodEnd)
	}
	if end > 0 {
		out.CurrentPeriodEnd = time.Unix(end, 0).UTC()
	}
	if len(raw.Items.Data) > 0 {
		out.PriceID = raw.Items.Data[0].Price.ID
	}
	return out, nil
}

// Charge reads who paid a charge and for which invoice.
func (c *Client) Charge(ctx context.Context, id string) (state.FetchedCharge, error) {
	if err := c.limiter.Wait(ctx); err != nil {
		return state.FetchedCharge{}, fmt.Errorf("get charge %s: %w", id, err)
	}
	p := &stripe.ChargeParams{}
	p.Context = ctx
	ch, err := c.api.Charges.Get(id, p)
	if err != nil {
		return state.FetchedCharge{}, fmt.Errorf("get charge %s: %w", id, describe(err))
	}
	var out state.FetchedCharge
	if ch.Customer != nil {
		out.CustomerID = ch.Customer.ID
	}
	if ch.PaymentIntent != nil {
		out.PaymentIntentID = ch.PaymentIntent.ID
	}
	if ch.Invoice != nil {
		out.InvoiceID = ch.Invoice.ID
	}
	return out, nil
}

// describe keeps what is useful from a Stripe error (type, code, status)
// and drops the message, which can echo request details.
func describe(err error) error {
	var se *stripe.Error
	if errors.As(err, &se) {
		return fmt.Errorf("stripe %s error (http %d, code %q, request %s)", se.Type, se.HTTPStatusCode, se.Code, se.RequestID)
	}
	return errors.New("stripe request failed")
}
