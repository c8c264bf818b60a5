package endpoint_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/stripeapi"
	"github.com/launchready/launchready/services/billing-state/internal/endpoint"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/stripefake"
)

const public = "https://hooks.example.com/webhooks/stripe"

func endpointJSON(id, url, status string, created int64) []byte {
	return fmt.Appendf(nil, `{"id":%q,"object":"webhook_endpoint","url":%q,"status":%q,"created":%d,"enabled_events":["*"],"livemode":false}`, id, url, status, created)
}

func setup(t *testing.T, public string) (*stripefake.Server, *endpoint.Checker, *prometheus.Registry) {
	t.Helper()
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	key := "sk_test_" + hex.EncodeToString(b)
	fake := stripefake.New(key)
	t.Cleanup(fake.Close)
	api, err := stripeapi.New(stripeapi.Config{Key: config.Secret(key), Base: fake.URL()})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	c, err := endpoint.New(api, public, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return fake, c, reg
}

func put(t *testing.T, fake *stripefake.Server, raw []byte) {
	t.Helper()
	if err := fake.PutObject(raw); err != nil {
		t.Fatal(err)
	}
}

func gauges(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				name += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			switch {
			case m.Gauge != nil:
				out[name] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[name] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func TestDisabledEndpointReadsZero(t *testing.T) {
	fake, c, reg := setup(t, public)
	put(t, fake, endpointJSON("we_1", public, "disabled", 100))
	put(t, fake, endpointJSON("we_2", "https://elsewhere.example.com/hook", "enabled", 101))
	_, outcome, err := c.Check(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	g := gauges(t, reg)
	if outcome != endpoint.OutcomeDisabled {
		t.Errorf("outcome %q, want disabled", outcome)
	}
	if v, ok := g["lr_stripe_webhook_endpoint_enabled{url="+public+"}"]; !ok || v != 0 {
		t.Errorf("enabled gauge for the disabled endpoint: %v (present %v), want 0; all: %v", v, ok, g)
	}
	if _, ok := g["lr_stripe_webhook_endpoint_enabled{url=https://elsewhere.example.com/hook}"]; ok {
		t.Errorf("an endpoint at another URL is watched: %v", g)
	}
	if g["lr_stripe_webhook_endpoints_matching"] != 1 || g["lr_stripe_endpoint_checks_total{outcome=disabled}"] != 1 {
		t.Errorf("matching %v, disabled checks %v; want 1 and 1", g["lr_stripe_webhook_endpoints_matching"], g["lr_stripe_endpoint_checks_total{outcome=disabled}"])
	}

	// Re-enabled in the dashboard: the next check reads 1.
	put(t, fake, endpointJSON("we_1", public+"/", "enabled", 100))
	if _, outcome, err = c.Check(context.Background()); err != nil || outcome != endpoint.OutcomeOK {
		t.Fatalf("outcome %q, %v; want ok", outcome, err)
	}
	g = gauges(t, reg)
	if v, ok := g["lr_stripe_webhook_endpoint_enabled{url="+public+"/}"]; !ok || v != 1 {
		t.Errorf("enabled gauge after re-enabling: %v (present %v), want 1; all: %v", v, ok, g)
	}
	if _, ok := g["lr_stripe_webhook_endpoint_enabled{url="+public+"}"]; ok {
		t.Errorf("the old URL's series outlived the check: %v", g)
	}
}

func TestEnabledEndpointReadsOne(t *testing.T) {
	fake, c, reg := setup(t, public)
	put(t, fake, endpointJSON("we_1", public, "enabled", 100))
	if _, outcome, err := c.Check(context.Background()); err != nil || outcome != endpoint.OutcomeOK {
		t.Fatalf("outcome %q, %v; want ok", outcome, err)
	}
	g := gauges(t, reg)
	if v, ok := g["lr_stripe_webhook_endpoint_enabled{url="+public+"}"]; !ok || v != 1 {
		t.Errorf("enabled gauge: %v (present %v), want 1; all: %v", v, ok, g)
	}
	if g["lr_stripe_webhook_endpoints_matching"] != 1 || g["lr_stripe_endpoint_checks_total{outcome=ok}"] != 1 {
		t.Errorf("matching %v, ok checks %v; want 1 and 1", g["lr_stripe_webhook_endpoints_matching"], g["lr_stripe_endpoint_checks_total{outcome=ok}"])
	}
}

func TestNoEndpointMatchingReadsZeroMatching(t *testing.T) {
	fake, c, reg := setup(t, public)
	put(t, fake, endpointJSON("we_1", "https://old.example.com/webhooks/stripe", "enabled", 100))
	if _, outcome, err := c.Check(context.Background()); err != nil || outcome != endpoint.OutcomeNone {
		t.Fatalf("outcome %q, %v; want none", outcome, err)
	}
	g := gauges(t, reg)
	if v, ok := g["lr_stripe_webhook_endpoints_matching"]; !ok || v != 0 {
		t.Errorf("matching: %v (present %v), want 0", v, ok)
	}
	for name := range g {
		if strings.HasPrefix(name, "lr_stripe_webhook_endpoint_enabled{") {
			t.Errorf("a series for an endpoint not at PUBLIC_WEBHOOK_URL: %s", name)
		}
	}
	if g["lr_stripe_endpoint_checks_total{outcome=none}"] != 1 {
		t.Errorf("none checks %v, want 1", g["lr_stripe_endpoint_checks_total{outcome=none}"])
	}
}

func TestWithoutPublicURLEveryEndpointIsWatched(t *testing.T) {
	fake, c, reg := setup(t, "")
	put(t, fake, endpointJSON("we_1", "https://a.example.com/hook", "enabled", 100))
	put(t, fake, endpointJSON("we_2", "https://b.example.com/hook", "disabled", 101))
	if _, outcome, err := c.Check(context.Background()); err != nil || outcome != endpoint.OutcomeDisabled {
		t.Fatalf("outcome %q, %v; want disabled", outcome, err)
	}
	g := gauges(t, reg)
	if g["lr_stripe_webhook_endpoint_enabled{url=https://a.example.com/hook}"] != 1 || g["lr_stripe_webhook_endpoints_matching"] != 2 {
		t.Errorf("want a enabled and 2 matching: %v", g)
	}
	if v, ok := g["lr_stripe_webhook_endpoint_enabled{url=https://b.example.com/hook}"]; !ok || v != 0 {
		t.Errorf("b: %v (present %v), want 0", v, ok)
	}
}

func TestStripeErrorCountsAndKeepsGauges(t *testing.T) {
	fake, c, reg := setup(t, public)
	put(t, fake, endpointJSON("we_1", public, "enabled", 100))
	if _, _, err := c.Check(context.Background()); err != nil {
		t.Fatal(err)
	}
	fake.Fail500(10)
	if _, outcome, err := c.Check(context.Background()); err == nil || outcome != endpoint.OutcomeError {
		t.Fatalf("outcome %q, %v; want an error", outcome, err)
	}
	g := gauges(t, reg)
	if g["lr_stripe_endpoint_checks_total{outcome=error}"] != 1 || g["lr_stripe_webhook_endpoint_enabled{url="+public+"}"] != 1 {
		t.Errorf("want one error and the gauge kept at 1: %v", g)
	}
}

// The scheduled check waits for its first delay, then checks every
// interval, and returns when ctx ends.
func TestScheduleChecksAfterTheFirstDelayAndEveryInterval(t *testing.T) {
	fake, c, reg := setup(t, public)
	put(t, fake, endpointJSON("we_1", public, "disabled", 100))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- c.ScheduleFirstAfter(ctx, 300*time.Millisecond, 200*time.Millisecond) }()
	if n := len(fake.Requests()); n != 0 {
		t.Fatalf("%d requests before the first delay", n)
	}
	testkit.Eventually(t, 10*time.Second, "two scheduled checks", func() bool {
		return gauges(t, reg)["lr_stripe_endpoint_checks_total{outcome=disabled}"] >= 2
	})
	first := fake.Requests()[0].At
	if d := first.Sub(start); d < 300*time.Millisecond {
		t.Errorf("first check %s after start, before the first delay", d)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Schedule did not return after its context ended")
	}
}
