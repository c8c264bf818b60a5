package doctor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/stripeapi"
)

// stripeAPI returns a client on STRIPE_API_KEY (and STRIPE_API_BASE), or a
// skip when no key is set.
func (d *Doctor) stripeAPI() (*client.API, string, error) {
	key := d.env.Lookup("STRIPE_API_KEY")
	if key == "" {
		return nil, "", skip("STRIPE_API_KEY is not set")
	}
	cfg := &stripe.BackendConfig{
		HTTPClient:        &http.Client{Timeout: 15 * time.Second},
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		MaxNetworkRetries: stripe.Int64(1),
	}
	if base := d.env.Lookup("STRIPE_API_BASE"); base != "" {
		cfg.URL = stripe.String(base)
	}
	api := &client.API{}
	api.Init(key, &stripe.Backends{
		API:     stripe.GetBackendWithConfig(stripe.APIBackend, cfg),
		Connect: stripe.GetBackendWithConfig(stripe.ConnectBackend, cfg),
		Uploads: stripe.GetBackendWithConfig(stripe.UploadsBackend, cfg),
	})
	return api, key, nil
}

// KeyMode names the mode of a Stripe secret or restricted key: "live",
// "test", or "" when it is not a Stripe API key at all.
func KeyMode(key string) (mode string, restricted bool) {
	for _, p := range []struct {
		prefix, mode string
		restricted   bool
	}{
		{"sk_live_", "live", false}, {"sk_test_", "test", false},
		{"rk_live_", "live", true}, {"rk_test_", "test", true},
	} {
		if strings.HasPrefix(key, p.prefix) {
			return p.mode, p.restricted
		}
	}
	return "", false
}

// readsNeeded are the reads the features that use the key make, each with
// the feature that needs it: a restricted key must allow all of them.
var readsNeeded = []struct {
	what, feature string
	list          func(api *client.API, p stripe.ListParams) error
}{
	{"webhook_endpoints", "doctor, endpoint alert", func(api *client.API, p stripe.ListParams) error {
		it := api.WebhookEndpoints.List(&stripe.WebhookEndpointListParams{ListParams: p})
		it.Next()
		return it.Err()
	}},
	{"events", "backfill", func(api *client.API, p stripe.ListParams) error {
		it := api.Events.List(&stripe.EventListParams{ListParams: p})
		it.Next()
		return it.Err()
	}},
	{"subscriptions", "drift checks, tie-breaks", func(api *client.API, p stripe.ListParams) error {
		it := api.Subscriptions.List(&stripe.SubscriptionListParams{ListParams: p, Status: stripe.String("all")})
		it.Next()
		return it.Err()
	}},
	{"charges", "disputes and refunds to their customer", func(api *client.API, p stripe.ListParams) error {
		it := api.Charges.List(&stripe.ChargeListParams{ListParams: p})
		it.Next()
		return it.Err()
	}},
	{"customers", "backfill --objects", func(api *client.API, p stripe.ListParams) error {
		it := api.Customers.List(&stripe.CustomerListParams{ListParams: p})
		it.Next()
		return it.Err()
	}},
}

func (d *Doctor) checkStripeKey(ctx context.Context) ([]Check, error) {
	api, key, err := d.stripeAPI()
	if err != nil {
		return nil, err
	}
	want := d.env.Lookup("STRIPE_LIVEMODE")
	mode, restricted := KeyMode(key)
	var out []Check
	switch {
	case mode == "":
		out = append(out, fail("stripe/key-mode", "STRIPE_API_KEY is not a Stripe secret or restricted key (sk_live_, sk_test_, rk_live_, rk_test_)",
			"copy the secret key from the Stripe dashboard, Developers → API keys"))
	case want == "":
		out = append(out, warn("stripe/key-mode", fmt.Sprintf("a %s key, and STRIPE_LIVEMODE is empty: ingress takes events of either mode", mode),
			fmt.Sprintf("set STRIPE_LIVEMODE=%s", mode)))
	case want != mode:
		out = append(out, fail("stripe/key-mode", fmt.Sprintf("a %s key while STRIPE_LIVEMODE=%s", mode, want),
			fmt.Sprintf("use the %s-mode key of this account, or set STRIPE_LIVEMODE=%s if this deployment is meant to be %s", want, mode, mode)))
	default:
		out = append(out, pass("stripe/key-mode", fmt.Sprintf("a %s key, as STRIPE_LIVEMODE asks", mode)))
	}
	if mode == "" {
		return out, nil
	}
	var denied, other []string
	for _, r := range readsNeeded {
		p := stripe.ListParams{Limit: stripe.Int64(1)}
		p.Context = ctx
		err := r.list(api, p)
		var se *stripe.Error
		switch {
		case err == nil:
		case errors.As(err, &se) && (se.HTTPStatusCode == http.StatusForbidden || se.HTTPStatusCode == http.StatusUnauthorized):
			denied = append(denied, fmt.Sprintf("%s read (%s)", r.what, r.feature))
		default:
			other = append(other, fmt.Sprintf("%s: %v", r.what, stripeErrorText(err)))
		}
	}
	name := "stripe/key-permissions"
	switch {
	case len(denied) > 0 && restricted:
		out = append(out, fail(name, "the restricted key may not: "+strings.Join(denied, ", "),
			"edit the restricted key in the Stripe dashboard and grant read on each resource named"))
	case len(denied) > 0:
		out = append(out, fail(name, "Stripe refused the key: "+strings.Join(denied, ", "),
			"the key is revoked or wrong: roll it in the dashboard and update STRIPE_API_KEY"))
	case len(other) > 0:
		out = append(out, fail(name, "Stripe did not answer: "+strings.Join(other, "; "), "check STRIPE_API_BASE and the network path to api.stripe.com"))
	case restricted:
		out = append(out, pass(name, "the restricted key reads every resource the features use (writes for staff actions are not tried)"))
	default:
		out = append(out, pass(name, "the secret key reads every resource the features use"))
	}
	return out, nil
}

// checkClock compares the local clock with the Date header of Stripe's
// answer: signatures carry a timestamp checked within WEBHOOK_TOLERANCE
// (5 minutes), so a skewed host refuses genuine events.
func (d *Doctor) checkClock(ctx context.Context) ([]Check, error) {
	api, _, err := d.stripeAPI()
	if err != nil {
		return nil, err
	}
	p := &stripe.WebhookEndpointListParams{}
	p.Limit = stripe.Int64(1)
	p.Context = ctx
	before := d.Now()
	it := api.WebhookEndpoints.List(p)
	it.Next()
	after := d.Now()
	if err := it.Err(); err != nil {
		var se *stripe.Error
		if !errors.As(err, &se) || se.LastResponse == nil {
			return nil, fmt.Errorf("ask Stripe for its time: %v", stripeErrorText(err))
		}
	}
	resp := it.WebhookEndpointList().LastResponse
	if resp == nil {
		return nil, errors.New("ask Stripe for its time: no answer")
	}
	theirs, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return nil, fmt.Errorf("the Date header of Stripe's answer, %q: %v", resp.Header.Get("Date"), err)
	}
	ours := before.Add(after.Sub(before) / 2)
	skew := ours.Sub(theirs)
	// Date has a resolution of one second.
	abs := max(skew, -skew) - time.Second
	detail := fmt.Sprintf("this host is %s %s Stripe", max(skew, -skew).Round(time.Second), map[bool]string{true: "ahead of", false: "behind"}[skew >= 0])
	switch {
	case abs >= 2*time.Minute:
		return []Check{fail("clock", detail+"; signatures are checked within 5 minutes", "run NTP (chrony, systemd-timesyncd) on the host")}, nil
	case abs >= 30*time.Second:
		return []Check{warn("clock", detail, "run NTP (chrony, systemd-timesyncd) on the host")}, nil
	}
	return []Check{pass("clock", detail+", well inside the 5-minute signature tolerance")}, nil
}

// HandledEventTypes are the event types the system acts on: each changes
// a customer's canonical status, the CRM, or opens a ticket or an alert. A
// webhook endpoint must subscribe to every one of them.
var HandledEventTypes = []string{
	"charge.dispute.closed", "charge.dispute.created", "charge.dispute.funds_reinstated",
	"charge.dispute.funds_withdrawn", "charge.dispute.updated", "charge.failed",
	"charge.refund.updated", "charge.refunded", "charge.succeeded",
	"checkout.session.async_payment_failed", "checkout.session.async_payment_succeeded",
	"checkout.session.completed", "checkout.session.expired",
	"customer.created", "customer.deleted", "customer.updated",
	"customer.subscription.created", "customer.subscription.deleted", "customer.subscription.paused",
	"customer.subscription.resumed", "customer.subscription.trial_will_end", "customer.subscription.updated",
	"invoice.finalization_failed", "invoice.marked_uncollectible", "invoice.paid",
	"invoice.payment_action_required", "invoice.payment_failed", "invoice.payment_succeeded",
	"payment_intent.payment_failed", "payment_intent.requires_action", "payment_intent.succeeded",
	"refund.created", "refund.updated",
}

func (d *Doctor) checkStripeEndpoint(ctx context.Context) ([]Check, error) {
	key := d.env.Lookup("STRIPE_API_KEY")
	if key == "" {
		return nil, skip("STRIPE_API_KEY is not set")
	}
	public := d.env.Lookup("PUBLIC_WEBHOOK_URL")
	if public == "" {
		return nil, skip("PUBLIC_WEBHOOK_URL is not set")
	}
	// The same listing and matching as billing-state's endpoint check. The
	// key's mode is the stripe-key check's to judge, so none is asked here.
	api, err := stripeapi.New(stripeapi.Config{Key: config.Secret(key), Base: d.env.Lookup("STRIPE_API_BASE"),
		Timeout: 15 * time.Second, MaxNetworkRetries: 1})
	if err != nil {
		return nil, err
	}
	all, err := api.ListWebhookEndpoints(ctx)
	if err != nil {
		return nil, err
	}
	mine := stripeapi.EndpointsAt(all, public)
	var urls []string
	for _, ep := range all {
		urls = append(urls, ep.URL)
	}
	if len(mine) == 0 {
		seen := "no endpoint at all"
		if len(urls) > 0 {
			seen = "endpoints at " + strings.Join(urls, ", ")
		}
		return []Check{fail("stripe/endpoint", "no webhook endpoint points at "+public+" ("+seen+")",
			"add the endpoint in the Stripe dashboard (Developers → Webhooks) with the URL "+public+", or fix PUBLIC_WEBHOOK_URL")}, nil
	}
	var out []Check
	for _, ep := range mine {
		label := "stripe/endpoint " + ep.ID
		if !ep.Enabled() {
			out = append(out, fail(label, fmt.Sprintf("points at %s but is %s: Stripe sends it nothing", public, ep.Status),
				"enable it in the dashboard once the route answers 2xx (Stripe disables endpoints that keep failing)"))
			continue
		}
		out = append(out, pass(label, "enabled, at "+public))
		if missing := MissingEventTypes(ep.EnabledEvents); len(missing) > 0 {
			out = append(out, fail(label+" events", "does not subscribe to: "+strings.Join(missing, ", "),
				"add those event types to the endpoint in the dashboard"))
		} else {
			out = append(out, pass(label+" events", fmt.Sprintf("subscribes to every one of the %d event types the system handles", len(HandledEventTypes))))
		}
		out = append(out, apiVersionCheck(label+" api version", ep.APIVersion))
	}
	return out, nil
}

// MissingEventTypes lists the handled event types an endpoint's
// enabled_events leave out; "*" enables them all.
func MissingEventTypes(enabled []string) []string {
	if slices.Contains(enabled, "*") {
		return nil
	}
	var missing []string
	for _, t := range HandledEventTypes {
		if !slices.Contains(enabled, t) {
			missing = append(missing, t)
		}
	}
	sort.Strings(missing)
	return missing
}

// apiVersionCheck: the normaliser reads every payload shape from the 2017
// API versions through 2025-03-31.basil's releases. An endpoint without an
// API version of its own renders events in the account's default version.
func apiVersionCheck(name, v string) Check {
	if v == "" {
		return pass(name, "the account's default version")
	}
	date, release, _ := strings.Cut(v, ".")
	t, err := time.Parse("2006-01-02", date)
	switch {
	case err != nil:
		return fail(name, fmt.Sprintf("%q is not a Stripe API version", v), "pick a dated API version for the endpoint")
	case t.Before(time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC)):
		return fail(name, v+" is older than any payload shape the normaliser reads (2017 and later)", "upgrade the endpoint's API version in the dashboard")
	case release != "" && release != "acacia" && release != "basil":
		return warn(name, v+" is newer than the shapes the normaliser was built for (through basil)", "keep the endpoint on a basil version until Launch Ready is upgraded")
	}
	return pass(name, v+", a version the normaliser reads")
}

func stripeErrorText(err error) string {
	var se *stripe.Error
	if errors.As(err, &se) {
		if se.Msg != "" {
			return fmt.Sprintf("%d %s", se.HTTPStatusCode, se.Msg)
		}
		return fmt.Sprintf("HTTP %d", se.HTTPStatusCode)
	}
	return err.Error()
}
