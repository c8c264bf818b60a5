package metrics_test

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"

	"github.com/launchready/launchready/pkg/logging"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.work above the working directory")
		}
		dir = parent
	}
}

// loadRules parses deploy/observability/prometheus-rules.yaml the way
// Prometheus does at load time (strict fields, PromQL, annotation templates).
func loadRules(t *testing.T) *rulefmt.RuleGroups {
	t.Helper()
	path := filepath.Join(repoRoot(t), "deploy", "observability", "prometheus-rules.yaml")
	groups, errs := rulefmt.ParseFile(path, false, model.UTF8Validation, parser.NewParser(parser.Options{}), logging.Discard())
	for _, err := range errs {
		t.Errorf("rules: %v", err)
	}
	if groups == nil {
		t.FailNow()
	}
	return groups
}

// exportedNames returns every metric name written as a string literal in the
// services' and pkg's non-test Go source: what /metrics can actually show.
func exportedNames(t *testing.T) map[string]bool {
	t.Helper()
	root := repoRoot(t)
	lit := regexp.MustCompile(`"(lr_[a-z0-9_]+)"`)
	names := map[string]bool{}
	for _, dir := range []string{"pkg", "services"} {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			for _, m := range lit.FindAllSubmatch(b, -1) {
				names[string(m[1])] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return names
}

// selectorNames returns the metric names an expression reads.
func selectorNames(t *testing.T, expr string) []string {
	t.Helper()
	e, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		t.Fatalf("parse %q: %v", expr, err)
	}
	var out []string
	parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
		if vs, ok := n.(*parser.VectorSelector); ok {
			out = append(out, vs.Name)
		}
		return nil
	})
	return out
}

func checkNames(t *testing.T, where, expr string, exported, recorded map[string]bool) {
	t.Helper()
	for _, name := range selectorNames(t, expr) {
		// up is Prometheus's own: 1 when a scrape of the target answered.
		if recorded[name] || name == "up" {
			continue
		}
		base := name
		for _, suf := range []string{"_bucket", "_count", "_sum"} {
			base = strings.TrimSuffix(base, suf)
		}
		if !exported[name] && !exported[base] {
			t.Errorf("%s reads %s, which no service exports", where, name)
		}
	}
}

func TestRulesReferenceExportedMetrics(t *testing.T) {
	groups := loadRules(t)
	exported := exportedNames(t)
	recorded := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				recorded[r.Record] = true
			}
		}
	}
	alerts := map[string]bool{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			where := r.Record + r.Alert
			checkNames(t, where, r.Expr, exported, recorded)
			if r.Alert != "" {
				alerts[r.Alert] = true
				if r.Labels["severity"] == "" || r.Annotations["summary"] == "" || r.Annotations["description"] == "" {
					t.Errorf("%s needs a severity label, a summary and a description", r.Alert)
				}
			}
		}
	}
	for _, want := range []string{
		"LaunchReadyWebhookFailureRateHigh", "LaunchReadyDeadLetters", "LaunchReadyConsumerLagGrowing",
		"LaunchReadyAlertLatencyHigh", "LaunchReadyWeeklyDuplicates", "LaunchReadyWebhookSlow", "LaunchReadyIngressDown",
		"LaunchReadyWebhookSilence", "LaunchReadyStripeEndpointDisabled",
		"LaunchReadyBillingDrift", "LaunchReadySmokeStale",
	} {
		if !alerts[want] {
			t.Errorf("alert %s is missing", want)
		}
	}
}

func TestDashboardReferencesExportedMetrics(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy", "observability", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	exported := exportedNames(t)
	var seen []string
	for _, p := range dash.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			expr := strings.ReplaceAll(tg.Expr, "$__rate_interval", "5m")
			checkNames(t, "panel "+p.Title, expr, exported, nil)
			seen = append(seen, selectorNames(t, expr)...)
		}
	}
	sort.Strings(seen)
	for _, want := range []string{"lr_webhook_requests_total", "lr_dlq_depth", "lr_consumer_pending", "lr_alert_latency_seconds_bucket", "lr_crm_calls_total", "lr_support_calls_total"} {
		if i := sort.SearchStrings(seen, want); i == len(seen) || seen[i] != want {
			t.Errorf("dashboard never shows %s", want)
		}
	}
}

// alertExpr returns an alert's expression with the recording rules it reads
// inlined, so it can be evaluated against raw series.
func alertExpr(t *testing.T, groups *rulefmt.RuleGroups, alert string) string {
	t.Helper()
	rec := map[string]string{}
	var expr string
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			if r.Record != "" {
				rec[r.Record] = r.Expr
			}
			if r.Alert == alert {
				expr = r.Expr
			}
		}
	}
	if expr == "" {
		t.Fatalf("no alert %s", alert)
	}
	// Longest names first, so no name is replaced inside a longer one.
	names := make([]string, 0, len(rec))
	for n := range rec {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return len(names[i]) > len(names[j]) })
	for _, n := range names {
		expr = strings.ReplaceAll(expr, n, "("+strings.TrimSpace(rec[n])+")")
	}
	return expr
}

// TestAlertsFire evaluates each alert's expression on series shaped like a
// healthy and a broken system, so a rule that can never fire (or always
// fires) fails here rather than in production.
func TestAlertsFire(t *testing.T) {
	groups := loadRules(t)
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	at := time.Unix(0, 0).UTC().Add(60 * time.Minute)
	cases := []struct {
		alert, name, series string
		fires               bool
	}{
		{"LaunchReadyWebhookFailureRateHigh", "2% refused", `
			lr_webhook_requests_total{outcome="accepted"} 0+98x60
			lr_webhook_requests_total{outcome="duplicate"} 0+5x60
			lr_webhook_requests_total{outcome="bad_signature"} 0+2x60`, true},
		{"LaunchReadyWebhookFailureRateHigh", "duplicates are not failures", `
			lr_webhook_requests_total{outcome="accepted"} 0+50x60
			lr_webhook_requests_total{outcome="duplicate"} 0+50x60
			lr_webhook_requests_total{outcome="unavailable"} 0+0.5x60`, false},
		{"LaunchReadyWebhookFailureRateHigh", "ignored wildcard types are answered 200", `
			lr_webhook_requests_total{outcome="accepted"} 0+50x60
			lr_webhook_requests_total{outcome="ignored"} 0+5x60`, false},
		{"LaunchReadyWebhookFailureRateHigh", "busy answers 503", `
			lr_webhook_requests_total{outcome="accepted"} 0+50x60
			lr_webhook_requests_total{outcome="busy"} 0+5x60`, true},
		{"LaunchReadyWebhookFailureRateHigh", "no traffic", `
			lr_webhook_requests_total{outcome="accepted"} 0x60`, false},
		{"LaunchReadyDeadLetters", "one dead letter", `
			lr_dlq_depth{consumer="crm-sync"} 0x30 1x30
			lr_dlq_depth{consumer="billing-state"} 0x60`, true},
		{"LaunchReadyDeadLetters", "empty", `lr_dlq_depth{consumer="crm-sync"} 0x60`, false},
		{"LaunchReadyConsumerLagGrowing", "backlog growing", `lr_consumer_pending{consumer="crm-sync"} 0+20x60`, true},
		{"LaunchReadyConsumerLagGrowing", "large but draining", `lr_consumer_pending{consumer="crm-sync"} 5000-20x60`, false},
		{"LaunchReadyConsumerLagGrowing", "growing but small", `lr_consumer_pending{consumer="crm-sync"} 0+1x60`, false},
		{"LaunchReadyAlertLatencyHigh", "most alerts late", `
			lr_alert_latency_seconds_bucket{le="60"} 0+1x60
			lr_alert_latency_seconds_bucket{le="120"} 0+2x60
			lr_alert_latency_seconds_bucket{le="300"} 0+10x60
			lr_alert_latency_seconds_bucket{le="+Inf"} 0+10x60`, true},
		{"LaunchReadyAlertLatencyHigh", "alerts on time", `
			lr_alert_latency_seconds_bucket{le="60"} 0+10x60
			lr_alert_latency_seconds_bucket{le="120"} 0+10x60
			lr_alert_latency_seconds_bucket{le="300"} 0+10x60
			lr_alert_latency_seconds_bucket{le="+Inf"} 0+10x60`, false},
		{"LaunchReadyWeeklyDuplicates", "at ingress", `lr_webhook_duplicates_total 0+1x60`, true},
		{"LaunchReadyWeeklyDuplicates", "at a consumer", `
			lr_webhook_duplicates_total 0x60
			lr_consumer_duplicates_total{consumer="billing-state"} 0x60
			lr_consumer_duplicates_total{consumer="crm-sync"} 0 0 1x59`, true},
		{"LaunchReadyWebhookSlow", "p95 above 500 ms", `
			lr_webhook_request_seconds_bucket{le="0.1"} 0+50x60
			lr_webhook_request_seconds_bucket{le="0.5"} 0+80x60
			lr_webhook_request_seconds_bucket{le="1"} 0+100x60
			lr_webhook_request_seconds_bucket{le="+Inf"} 0+100x60
			lr_webhook_request_seconds_count 0+100x60`, true},
		{"LaunchReadyWebhookSlow", "p95 under 500 ms", `
			lr_webhook_request_seconds_bucket{le="0.1"} 0+90x60
			lr_webhook_request_seconds_bucket{le="0.5"} 0+99x60
			lr_webhook_request_seconds_bucket{le="1"} 0+100x60
			lr_webhook_request_seconds_bucket{le="+Inf"} 0+100x60
			lr_webhook_request_seconds_count 0+100x60`, false},
		{"LaunchReadyWebhookSlow", "no traffic", `
			lr_webhook_request_seconds_bucket{le="0.5"} 0x60
			lr_webhook_request_seconds_bucket{le="+Inf"} 0x60
			lr_webhook_request_seconds_count 0x60`, false},
		{"LaunchReadyIngressDown", "scrapes fail", `
			up{job="ingress", instance="10.0.0.1:8084"} 1x55 0x5
			up{job="billing-state", instance="10.0.0.2:8081"} 1x60`, true},
		{"LaunchReadyIngressDown", "another service down", `
			up{job="ingress", instance="10.0.0.1:8084"} 1x60
			up{job="billing-state", instance="10.0.0.2:8081"} 0x60`, false},
		// The query runs at minute 60: 3,600 s.
		{"LaunchReadyWebhookSilence", "quiet longer than the setting", `
			lr_webhook_last_received_timestamp_seconds{instance="a"} 0+60x10 600x50
			lr_webhook_last_received_timestamp_seconds{instance="b"} 300x60
			lr_webhook_silence_alert_seconds{instance="a"} 1800x60
			lr_webhook_silence_alert_seconds{instance="b"} 1800x60`, true},
		{"LaunchReadyWebhookSilence", "one replica still receives", `
			lr_webhook_last_received_timestamp_seconds{instance="a"} 600x60
			lr_webhook_last_received_timestamp_seconds{instance="b"} 0+60x60
			lr_webhook_silence_alert_seconds{instance="a"} 1800x60
			lr_webhook_silence_alert_seconds{instance="b"} 1800x60`, false},
		{"LaunchReadyWebhookSilence", "a longer setting", `
			lr_webhook_last_received_timestamp_seconds 600x60
			lr_webhook_silence_alert_seconds 21600x60`, false},
		{"LaunchReadyStripeEndpointDisabled", "Stripe disabled the endpoint", `
			lr_stripe_webhook_endpoint_enabled{url="https://hooks.example.com/stripe",instance="a"} 1x30 0x30
			lr_stripe_webhook_endpoints_matching{instance="a"} 1x60`, true},
		{"LaunchReadyStripeEndpointDisabled", "no endpoint points at PUBLIC_WEBHOOK_URL", `
			lr_stripe_webhook_endpoints_matching{instance="a"} 1x30 0x30`, true},
		{"LaunchReadyStripeEndpointDisabled", "one of two endpoints disabled", `
			lr_stripe_webhook_endpoint_enabled{url="https://a.example.com/hook",instance="a"} 1x60
			lr_stripe_webhook_endpoint_enabled{url="https://b.example.com/hook",instance="a"} 0x60
			lr_stripe_webhook_endpoints_matching{instance="a"} 2x60`, true},
		{"LaunchReadyStripeEndpointDisabled", "enabled and matching", `
			lr_stripe_webhook_endpoint_enabled{url="https://hooks.example.com/stripe",instance="a"} 1x60
			lr_stripe_webhook_endpoints_matching{instance="a"} 1x60`, false},
		{"LaunchReadyStripeEndpointDisabled", "re-enabled after being disabled", `
			lr_stripe_webhook_endpoint_enabled{url="https://hooks.example.com/stripe",instance="a"} 0x30 1x30
			lr_stripe_webhook_endpoints_matching{instance="a"} 1x60`, false},
		// The query runs at minute 60: 3,600 s; 35 days are 3,024,000 s.
		{"LaunchReadySmokeStale", "one channel not passed for 36 days", `
			lr_smoke_last_success_timestamp_seconds{channel="slack",instance="a"} 0x60
			lr_smoke_last_success_timestamp_seconds{channel="sms",instance="a"} -3106800x60`, true},
		{"LaunchReadySmokeStale", "every channel passed this month", `
			lr_smoke_last_success_timestamp_seconds{channel="slack",instance="a"} 0x60
			lr_smoke_last_success_timestamp_seconds{channel="sms",instance="a"} -2592000x60
			lr_smoke_last_success_timestamp_seconds{channel="sms",instance="b"} -2592000x60`, false},
		{"LaunchReadyWeeklyDuplicates", "none", `
			lr_webhook_duplicates_total 0x60
			lr_consumer_duplicates_total{consumer="crm-sync"} 0x60`, false},
	}
	for _, c := range cases {
		t.Run(c.alert+"/"+c.name, func(t *testing.T) {
			script := "load 1m\n"
			for _, line := range strings.Split(c.series, "\n") {
				if line = strings.TrimSpace(line); line != "" {
					script += "  " + line + "\n"
				}
			}
			expr := alertExpr(t, groups, c.alert)
			if fired, vec := evalAlert(t, engine, script, expr, at); fired != c.fires {
				t.Fatalf("fired = %v (%v), want %v\nexpr: %s", fired, vec, c.fires, expr)
			}
		})
	}
}

// evalAlert loads script and evaluates expr at at: whether it returns
// anything (the alert's condition holds), and what.
func evalAlert(t *testing.T, engine *promql.Engine, script, expr string, at time.Time) (bool, promql.Vector) {
	t.Helper()
	st := promqltest.LoadedStorage(t, script)
	t.Cleanup(func() { st.Close() })
	q, err := engine.NewInstantQuery(context.Background(), st, nil, expr, at)
	if err != nil {
		t.Fatalf("query %s: %v", expr, err)
	}
	defer q.Close()
	res := q.Exec(context.Background())
	if res.Err != nil {
		t.Fatalf("eval %s: %v", expr, res.Err)
	}
	vec, err := res.Vector()
	if err != nil {
		t.Fatal(err)
	}
	return len(vec) > 0, vec
}

// The drift alert needs hours of series: checks run every 6h, and the gauge
// holds each check's count until the next one.
func TestDriftAlertFiresWhenTwoChecksInARowFindDrift(t *testing.T) {
	groups := loadRules(t)
	engine := promqltest.NewTestEngine(t, false, 0, promqltest.DefaultMaxSamplesPerQuery)
	at := time.Unix(0, 0).UTC().Add(7*time.Hour + 40*time.Minute)
	expr := alertExpr(t, groups, "LaunchReadyBillingDrift")
	for _, c := range []struct {
		name, series string
		fires        bool
	}{
		{"found by two checks in a row", "lr_billing_drift_customers 0x60 1x400", true},
		{"found once, then repaired", "lr_billing_drift_customers 0x60 1x360 0x40", false},
		{"found by one check only so far", "lr_billing_drift_customers 0x300 1x160", false},
		{"two replicas, one still sees it", "lr_billing_drift_customers{instance=\"a\"} 0x60 1x400\n  lr_billing_drift_customers{instance=\"b\"} 0x60 1x360 0x40", true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if fired, vec := evalAlert(t, engine, "load 1m\n  "+c.series+"\n", expr, at); fired != c.fires {
				t.Fatalf("fired = %v (%v), want %v\nexpr: %s", fired, vec, c.fires, expr)
			}
		})
	}
}
