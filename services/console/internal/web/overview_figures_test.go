package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/webhookrates"
)

func TestOverviewShowsPrometheusWebhookFigures(t *testing.T) {
	var mu sync.Mutex
	var asked []string
	prom := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query().Get("query")
		mu.Lock()
		asked = append(asked, r.URL.Path+" "+q)
		mu.Unlock()
		result := "[]"
		switch q {
		case webhookrates.FailureRatioSeries:
			result = `[{"metric":{},"value":[1764780000,"0.0421"]}]`
		case webhookrates.DuplicatesSeries:
			result = `[{"metric":{"stage":"ingress"},"value":[1764780000,"11.9999"]},{"metric":{"stage":"billing-state","consumer":"billing-state"},"value":[1764780000,"3"]}]`
		}
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":%s}}`, result)
	}))
	defer prom.Close()
	b := setupRead(t, &statusServer{})
	b.web.opts.Webhooks = &webhookrates.Prometheus{Base: prom.URL}
	b.addStaff(t, "viewer@example.com", auth.Viewer, goodPassword, false)
	br := b.browser(t)
	br.signIn("viewer@example.com", goodPassword)

	p := br.get("/")
	for _, want := range []string{
		`<span id="failure-rate"><strong>4.21 %</strong></span>`, `id="failure-window">last 15 min<`,
		`<span id="duplicates"><strong>15</strong>: ingress 12, billing-state 3</span>`, `id="duplicates-window">last 7 days<`,
		"Prometheus: lr:webhook_failure_ratio:rate15m and lr:duplicates:increase1w",
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the overview lacks %q:\n%s", want, between(p.body, `id="webhooks"`, "</section>"))
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 2 || asked[0] != "/api/v1/query "+webhookrates.FailureRatioSeries || asked[1] != "/api/v1/query "+webhookrates.DuplicatesSeries {
		t.Errorf("Prometheus was asked %q", asked)
	}
}

// movingIngress is an ingress ops listener whose counters the test moves.
type movingIngress struct {
	mu               sync.Mutex
	accepted, failed float64
	dups             float64
}

func (m *movingIngress) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fmt.Fprintf(w, "# TYPE lr_webhook_requests_total counter\nlr_webhook_requests_total{outcome=\"accepted\"} %g\nlr_webhook_requests_total{outcome=\"publish_failed\"} %g\n"+
		"# TYPE lr_webhook_duplicates_total counter\nlr_webhook_duplicates_total %g\n", m.accepted, m.failed, m.dups)
}

func (m *movingIngress) move(accepted, failed, dups float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.accepted += accepted
	m.failed += failed
	m.dups += dups
}

func TestOverviewShowsSampledWebhookFiguresAndTheirWindow(t *testing.T) {
	ingress := &movingIngress{accepted: 500, failed: 20, dups: 9}
	srv := httptest.NewServer(ingress)
	defer srv.Close()
	b := setupRead(t, &statusServer{})
	sampler := &webhookrates.Sampler{Targets: []string{strings.TrimPrefix(srv.URL, "http://")}, Now: b.clock.Now}
	b.web.opts.Webhooks = sampler
	b.addStaff(t, "viewer@example.com", auth.Viewer, goodPassword, false)
	br := b.browser(t)
	br.signIn("viewer@example.com", goodPassword)

	p := br.get("/")
	if !strings.Contains(p.body, "Not sampled yet: no ops listener has answered yet.") {
		t.Errorf("before the first sample: %s", between(p.body, `id="webhooks"`, "</section>"))
	}

	start := b.clock.Now()
	sampler.Sample(b.ctx)
	p = br.get("/")
	if !strings.Contains(p.body, `id="failure-window">since `+start.UTC().Format("15:04")+` UTC, under a minute<`) {
		t.Errorf("right after the first sample: %s", between(p.body, `id="webhooks"`, "</section>"))
	}
	b.clock.Advance(6 * time.Minute)
	ingress.move(194, 6, 2)
	sampler.Sample(b.ctx)
	p = br.get("/")
	for _, want := range []string{
		`<span id="failure-rate"><strong>3.00 %</strong> (6 of 200 requests)</span>`,
		`id="failure-window">since ` + start.UTC().Format("15:04") + ` UTC, 6 min<`,
		`<span id="duplicates"><strong>2</strong>: ingress 2</span>`,
		"Sampled by the console from the ops listeners",
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the overview lacks %q:\n%s", want, between(p.body, `id="webhooks"`, "</section>"))
		}
	}

	// A quiet quarter of an hour: no ratio to show, and the window is whole.
	b.clock.Advance(16 * time.Minute)
	sampler.Sample(b.ctx)
	p = br.get("/")
	if !strings.Contains(p.body, `<span class="muted">no webhook in this window</span>`) || !strings.Contains(p.body, `id="failure-window">last 15 min<`) {
		t.Errorf("a quiet quarter hour: %s", between(p.body, `id="webhooks"`, "</section>"))
	}
}

func TestOverviewShowsTheLastDriftCheckAndDoctorReport(t *testing.T) {
	b := setupRead(t, &statusServer{})
	b.addStaff(t, "viewer@example.com", auth.Viewer, goodPassword, false)
	br := b.browser(t)
	br.signIn("viewer@example.com", goodPassword)

	p := br.get("/")
	for _, want := range []string{`<dd id="last-drift">never run</dd>`, `<dd id="last-doctor">never run</dd>`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the overview lacks %q", want)
		}
	}

	// billing-state's checks, written as it writes them; the newest shows.
	b.exec(t, `INSERT INTO billing.drift_checks (started_at, finished_at, outcome, customers, subscriptions) VALUES
		('2026-12-01 06:00:00Z', '2026-12-01 06:00:04Z', 'clean', 0, 0),
		('2026-12-01 12:00:00Z', '2026-12-01 12:00:05Z', 'drift', 2, 3)`)
	p = br.get("/")
	if want := `<dd id="last-drift">2026-12-01 12:00:05 UTC: <span class="bad">2 customers drifted (3 subscriptions)</span></dd>`; !strings.Contains(p.body, want) {
		t.Errorf("the overview lacks %q: %s", want, between(p.body, `id="last-drift">`, "</dd>"))
	}
	b.exec(t, `INSERT INTO billing.drift_checks (started_at, finished_at, outcome, error) VALUES
		('2026-12-01 18:00:00Z', '2026-12-01 18:00:01Z', 'error', 'drift check: stripe: 401 invalid api key')`)
	p = br.get("/")
	if want := `2026-12-01 18:00:01 UTC: <span class="bad">failed</span>: drift check: stripe: 401 invalid api key</dd>`; !strings.Contains(p.body, want) {
		t.Errorf("the overview lacks %q: %s", want, between(p.body, `id="last-drift">`, "</dd>"))
	}

	// `launchready doctor` made its table and stored two reports; its
	// schema grants the console's reader, as readiness.EnsureSchema does.
	b.exec(t, `CREATE SCHEMA readiness; CREATE TABLE readiness.doctor_reports (id bigserial PRIMARY KEY,
		created_at timestamptz NOT NULL DEFAULT now(), report jsonb NOT NULL)`)
	b.exec(t, `INSERT INTO readiness.doctor_reports (created_at, report) VALUES
		('2026-12-02 08:00:00Z', '{"checks":[{"name":"config","status":"fail","detail":"","fix":""}]}'),
		('2026-12-02 09:30:00Z', '{"checks":[{"name":"stripe-mode","status":"pass","detail":"sk_test with STRIPE_LIVEMODE=test","fix":""},
			{"name":"tls","status":"warn","detail":"expires in 12 days","fix":"renew"},
			{"name":"webhook-route","status":"fail","detail":"301","fix":"no redirect"},
			{"name":"dmarc","status":"fail","detail":"no record","fix":"publish one"},
			{"name":"config","status":"pass","detail":"","fix":""}],"skipped":[{"name":"sms","reason":"no Twilio"}]}')`)
	if _, err := pg.GrantReader(b.ctx, b.pool, "readiness"); err != nil {
		t.Fatal(err)
	}
	p = br.get("/")
	want := `<dd id="last-doctor">2026-12-02 09:30:00 UTC: <span class="ok">2 pass</span>, <span class="warn">1 warn</span>, <span class="bad">2 fail</span>; failing: <code class="bad">dmarc</code>, <code class="bad">webhook-route</code></dd>`
	if !strings.Contains(p.body, want) {
		t.Errorf("the overview lacks %q: %s", want, between(p.body, `id="last-doctor">`, "</dd>"))
	}

	// A report where everything passed names nothing.
	b.exec(t, `INSERT INTO readiness.doctor_reports (created_at, report) VALUES ('2026-12-02 10:00:00Z', '{"checks":[{"name":"config","status":"pass","detail":"","fix":""}]}')`)
	p = br.get("/")
	want = `<dd id="last-doctor">2026-12-02 10:00:00 UTC: <span class="ok">1 pass</span>, <span class="ok">0 warn</span>, <span class="ok">0 fail</span></dd>`
	if !strings.Contains(p.body, want) {
		t.Errorf("the overview lacks %q: %s", want, between(p.body, `id="last-doctor">`, "</dd>"))
	}
}
