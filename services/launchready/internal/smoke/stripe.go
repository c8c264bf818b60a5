package smoke

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/launchready/launchready/pkg/stripeevent"
)

// The test cards Stripe documents: one that attaches and then fails every
// charge, and one that pays.
const (
	cardChargeFails = "pm_card_chargeCustomerFail"
	cardPays        = "pm_card_visa"
)

// failViaStripe makes a real failed payment in Stripe's test mode: a smoke
// customer with pm_card_chargeCustomerFail as its default payment method
// and a subscription whose first invoice cannot be charged. Stripe then
// sends invoice.payment_failed to the endpoint itself, so its delivery is
// part of the proof. The event id is Stripe's: the channels' records are
// found by the smoke customer instead. Resolving pays the invoice with a
// card that works and cancels the subscription.
func failViaStripe(ctx context.Context, cfg Config, runID string) (*Payment, error) {
	key := cfg.StripeKey.Reveal()
	if !strings.HasPrefix(key, "sk_test_") && !strings.HasPrefix(key, "rk_test_") {
		return nil, errors.New("--via stripe needs a test-mode STRIPE_API_KEY (sk_test_... or rk_test_...): test-mode events reach only test-mode endpoints, and a live charge is never made")
	}
	api := &stripeClient{base: cfg.StripeBase, key: key, http: cfg.HTTP}
	marker := "metadata[" + stripeevent.SmokeMetadataKey + "]"
	var cus struct {
		ID string `json:"id"`
	}
	if err := api.post(ctx, "/v1/customers", url.Values{"email": {cfg.CustomerEmail}, "name": {"Launch Ready smoke test"},
		"description": {"[TEST] launchready smoke " + runID}, marker: {runID}}, &cus); err != nil {
		return nil, err
	}
	var pm struct {
		ID string `json:"id"`
	}
	if err := api.post(ctx, "/v1/payment_methods/"+cardChargeFails+"/attach", url.Values{"customer": {cus.ID}}, &pm); err != nil {
		return nil, err
	}
	if err := api.post(ctx, "/v1/customers/"+cus.ID, url.Values{"invoice_settings[default_payment_method]": {pm.ID}}, nil); err != nil {
		return nil, err
	}
	var prod struct {
		ID string `json:"id"`
	}
	if err := api.post(ctx, "/v1/products", url.Values{"name": {"Launch Ready smoke test"}, marker: {runID}}, &prod); err != nil {
		return nil, err
	}
	var sub struct {
		ID            string          `json:"id"`
		LatestInvoice json.RawMessage `json:"latest_invoice"`
	}
	sent := time.Now()
	if err := api.post(ctx, "/v1/subscriptions", url.Values{
		"customer":                                  {cus.ID},
		"items[0][price_data][currency]":            {"usd"},
		"items[0][price_data][product]":             {prod.ID},
		"items[0][price_data][unit_amount]":         {"100"},
		"items[0][price_data][recurring][interval]": {"month"},
		"payment_behavior":                          {"allow_incomplete"},
		"description":                               {"[TEST] launchready smoke " + runID},
		marker:                                      {runID},
		"expand[]":                                  {"latest_invoice"},
	}, &sub); err != nil {
		return nil, err
	}
	var inv struct {
		ID string `json:"id"`
	}
	if len(sub.LatestInvoice) > 0 && sub.LatestInvoice[0] == '{' {
		_ = json.Unmarshal(sub.LatestInvoice, &inv)
	} else {
		_ = json.Unmarshal(sub.LatestInvoice, &inv.ID)
	}
	p := &Payment{RunID: runID, CustomerID: cus.ID, InvoiceID: inv.ID, SentAt: sent}
	p.resolve = func(ctx context.Context) error {
		if inv.ID == "" {
			return errors.New("the subscription named no invoice to pay")
		}
		if err := api.post(ctx, "/v1/invoices/"+inv.ID+"/pay", url.Values{"payment_method": {cardPays}}, nil); err != nil {
			return err
		}
		return api.do(ctx, http.MethodDelete, "/v1/subscriptions/"+sub.ID, nil, nil)
	}
	return p, nil
}

// stripeClient is the few form-encoded calls the smoke run makes.
type stripeClient struct {
	base, key string
	http      *http.Client
}

func (c *stripeClient) post(ctx context.Context, path string, form url.Values, out any) error {
	return c.do(ctx, http.MethodPost, path, form, out)
}

func (c *stripeClient) do(ctx context.Context, method, path string, form url.Values, out any) error {
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("stripe %s %s: %w", method, path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("stripe %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("stripe %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		_ = json.Unmarshal(b, &e)
		return fmt.Errorf("stripe %s %s: %d %s", method, path, resp.StatusCode, e.Error.Message)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("stripe %s %s: %w", method, path, err)
		}
	}
	return nil
}
