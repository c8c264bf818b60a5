package stripeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/stripe/stripe-go/v76"
)

// WebhookEndpoint is one webhook endpoint as Stripe lists it.
type WebhookEndpoint struct {
	ID  string `json:"id"`
	URL string `json:"url"`
	// Status is "enabled" or "disabled": Stripe disables an endpoint whose
	// deliveries keep failing.
	Status        string   `json:"status"`
	EnabledEvents []string `json:"enabled_events"`
	APIVersion    string   `json:"api_version"`
}

// Enabled reports whether Stripe sends the endpoint events.
func (e WebhookEndpoint) Enabled() bool { return e.Status == "enabled" }

// ListWebhookEndpoints lists GET /v1/webhook_endpoints, every page.
func (c *Client) ListWebhookEndpoints(ctx context.Context) ([]WebhookEndpoint, error) {
	var out []WebhookEndpoint
	build := func() listParams { return &stripe.WebhookEndpointListParams{} }
	err := c.pages(ctx, "list webhook endpoints", "/v1/webhook_endpoints", build, func(items []json.RawMessage) error {
		for _, raw := range items {
			var ep WebhookEndpoint
			if err := json.Unmarshal(raw, &ep); err != nil || ep.ID == "" {
				return fmt.Errorf("list webhook endpoints: a listed endpoint is not one")
			}
			out = append(out, ep)
		}
		return nil
	})
	return out, err
}

// EndpointsAt returns the endpoints that point at public (SameURL), or all
// of them when public is empty.
func EndpointsAt(eps []WebhookEndpoint, public string) []WebhookEndpoint {
	if public == "" {
		return eps
	}
	var out []WebhookEndpoint
	for _, ep := range eps {
		if SameURL(ep.URL, public) {
			out = append(out, ep)
		}
	}
	return out
}

// SameURL reports whether two URLs name the same endpoint: scheme and host
// compared without case, the path without a trailing slash, the query as
// written.
func SameURL(a, b string) bool {
	ua, err1 := url.Parse(a)
	ub, err2 := url.Parse(b)
	if err1 != nil || err2 != nil {
		return a == b
	}
	return strings.EqualFold(ua.Scheme, ub.Scheme) && strings.EqualFold(ua.Host, ub.Host) &&
		strings.TrimSuffix(ua.Path, "/") == strings.TrimSuffix(ub.Path, "/") && ua.RawQuery == ub.RawQuery
}
