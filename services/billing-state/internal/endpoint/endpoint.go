// Package endpoint watches the webhook endpoint as Stripe sees it
// (GET /v1/webhook_endpoints): Stripe disables an endpoint whose deliveries
// keep failing, and then sends it nothing, which no failure-rate rule sees.
//
// Each check exports lr_stripe_webhook_endpoint_enabled{url} (1 enabled, 0
// not) for the endpoints that point at PUBLIC_WEBHOOK_URL (every endpoint
// when it is empty), lr_stripe_webhook_endpoints_matching (how many there
// are) and lr_stripe_endpoint_checks_total{outcome}. The rule
// LaunchReadyStripeEndpointDisabled reads them.
package endpoint

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/pkg/stripeapi"
)

// Outcomes of a check, the outcome label of lr_stripe_endpoint_checks_total.
const (
	OutcomeOK       = "ok"
	OutcomeDisabled = "disabled"
	OutcomeNone     = "none"
	OutcomeError    = "error"
)

// Checker lists the endpoints and exports what it saw.
type Checker struct {
	api    *stripeapi.Client
	public string
	log    *slog.Logger

	enabled  *prometheus.GaugeVec
	matching prometheus.Gauge
	checks   *prometheus.CounterVec
}

// New returns a checker of the endpoints at public (PUBLIC_WEBHOOK_URL;
// empty: every endpoint) with its metrics registered in reg.
func New(api *stripeapi.Client, public string, reg prometheus.Registerer, log *slog.Logger) (*Checker, error) {
	c := &Checker{api: api, public: public, log: log,
		enabled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "lr_stripe_webhook_endpoint_enabled",
			Help: "1 when Stripe reports the webhook endpoint at url enabled, 0 when disabled, at the last endpoint check.",
		}, []string{"url"}),
		matching: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "lr_stripe_webhook_endpoints_matching",
			Help: "Stripe webhook endpoints pointing at PUBLIC_WEBHOOK_URL (all endpoints when it is unset) at the last endpoint check.",
		}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lr_stripe_endpoint_checks_total",
			Help: "Webhook endpoint checks run, by outcome (ok, disabled, none, error).",
		}, []string{"outcome"}),
	}
	if reg != nil {
		for _, m := range []prometheus.Collector{c.enabled, c.matching, c.checks} {
			if err := reg.Register(m); err != nil {
				return nil, fmt.Errorf("endpoint metrics: %w", err)
			}
		}
	}
	for _, o := range []string{OutcomeOK, OutcomeDisabled, OutcomeNone, OutcomeError} {
		c.checks.WithLabelValues(o)
	}
	return c, nil
}

// Check lists the endpoints, exports the gauges and returns the watched
// endpoints and the outcome. On an error the gauges keep their last values.
func (c *Checker) Check(ctx context.Context) ([]stripeapi.WebhookEndpoint, string, error) {
	all, err := c.api.ListWebhookEndpoints(ctx)
	if err != nil {
		c.checks.WithLabelValues(OutcomeError).Inc()
		return nil, OutcomeError, fmt.Errorf("endpoint check: %w", err)
	}
	mine := stripeapi.EndpointsAt(all, c.public)
	// Several endpoints may share a URL: the URL counts as enabled when
	// any of them is, since Stripe then still delivers there.
	byURL := map[string]float64{}
	for _, ep := range mine {
		if ep.Enabled() {
			byURL[ep.URL] = 1
		} else if _, ok := byURL[ep.URL]; !ok {
			byURL[ep.URL] = 0
		}
	}
	c.enabled.Reset()
	outcome := OutcomeOK
	for u, v := range byURL {
		c.enabled.WithLabelValues(u).Set(v)
		if v == 0 {
			outcome = OutcomeDisabled
		}
	}
	c.matching.Set(float64(len(mine)))
	if len(mine) == 0 {
		outcome = OutcomeNone
	}
	c.checks.WithLabelValues(outcome).Inc()
	return mine, outcome, nil
}

// FirstCheckDelay is the longest a start waits before its first check.
// A start is no time to spend Stripe's rate budget, and a pod that keeps
// restarting would otherwise list the endpoints on every start.
const FirstCheckDelay = 5 * time.Minute

// Schedule checks first after min(interval, FirstCheckDelay) and then every
// interval until ctx ends, logging each outcome.
func (c *Checker) Schedule(ctx context.Context, interval time.Duration) error {
	return c.schedule(ctx, min(interval, FirstCheckDelay), interval)
}

func (c *Checker) schedule(ctx context.Context, first, interval time.Duration) error {
	wait := time.NewTimer(first)
	defer wait.Stop()
	select {
	case <-ctx.Done():
		return nil
	case <-wait.C:
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		eps, outcome, err := c.Check(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			c.log.WarnContext(ctx, "webhook endpoint check failed", "action", "endpoint_check", "outcome", outcome, "error", err.Error())
		case outcome == OutcomeNone:
			c.log.WarnContext(ctx, "no stripe webhook endpoint points at PUBLIC_WEBHOOK_URL", "action", "endpoint_check", "outcome", outcome, "url", c.public)
		default:
			for _, ep := range eps {
				if !ep.Enabled() {
					c.log.WarnContext(ctx, "stripe reports the webhook endpoint "+ep.Status, "action", "endpoint_check", "outcome", outcome,
						"endpoint_id", ep.ID, "url", ep.URL)
				}
			}
			if outcome == OutcomeOK {
				c.log.InfoContext(ctx, "webhook endpoint check clean", "action", "endpoint_check", "outcome", outcome)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
