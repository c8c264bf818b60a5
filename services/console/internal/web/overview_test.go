package web

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/pg"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/consoletest"
)

// opsListener answers /readyz and /metrics as a service's ops listener
// does (lr_build_info and process_start_time_seconds as Prometheus prints
// them).
func opsListener(t *testing.T, service, revision string, ready bool) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/readyz":
			if !ready {
				http.Error(w, "nats: not connected", http.StatusServiceUnavailable)
				return
			}
			_, _ = w.Write([]byte("ok\n"))
		case "/metrics":
			_, _ = w.Write([]byte("# HELP lr_build_info The build this process runs; always 1.\n# TYPE lr_build_info gauge\n" +
				`lr_build_info{go_version="go1.26.8",modified="false",revision="` + revision + `",service="` + service + `"} 1` + "\n" +
				"# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n# TYPE process_start_time_seconds gauge\n" +
				"process_start_time_seconds 1.76478e+09\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestOverviewShowsServicesConsumersDeadLettersAndReadiness(t *testing.T) {
	b := setupRead(t, &statusServer{})
	b.web.opts.OpsTargets = []string{
		opsListener(t, "billing-state", "0123456789abcdef0123456789abcdef01234567", true),
		opsListener(t, "crm-sync", "fedcba9876543210fedcba9876543210fedcba98", false),
	}
	consoletest.PutDeadLetter(t, b.ns, natsauth.CRMSync, &billingv1.BillingEvent{EventId: "evt_o1", Type: "invoice.paid", CustomerId: "cus_o1"}, "hubspot: 503")
	consoletest.PutDeadLetter(t, b.ns, natsauth.CRMSync, &billingv1.BillingEvent{EventId: "evt_o2", Type: "invoice.paid", CustomerId: "cus_o2"}, "hubspot: 503")
	b.addStaff(t, "viewer@example.com", auth.Viewer, goodPassword, false)
	br := b.browser(t)
	br.signIn("viewer@example.com", goodPassword)

	p := br.get("/")
	for _, want := range []string{
		`<td class="ok">ready</td>`, `<code>0123456789ab</code>`, "2025-12-03 16:40:00 UTC", // billing-state's build and start
		`<td class="bad">not ready (503 Service Unavailable)</td>`, `<code>fedcba987654</code>`,
		`<td>crm-sync</td><td colspan="3" class="bad">no durable`, // no consumer has started on this NATS server
		`<a href="/dead-letters?consumer=crm-sync">crm-sync</a>: <strong class="bad">2</strong>`,
		`<dd id="last-backfill">never run</dd>`, `<dd id="last-smoke">never run</dd>`,
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the overview lacks %q", want)
		}
	}

	// A backfill ran and `launchready smoke` made its table and ran; each
	// tool's schema grants the console's reader, as its migrations do.
	b.exec(t, `CREATE SCHEMA backfill; CREATE TABLE backfill.runs (id bigserial PRIMARY KEY, types text NOT NULL DEFAULT '',
		window_start timestamptz NOT NULL, window_end timestamptz NOT NULL, next_until timestamptz NOT NULL, events_read bigint NOT NULL DEFAULT 0,
		published bigint NOT NULL DEFAULT 0, known bigint NOT NULL DEFAULT 0, started_at timestamptz NOT NULL DEFAULT now(),
		updated_at timestamptz NOT NULL DEFAULT now(), completed_at timestamptz)`)
	b.exec(t, `INSERT INTO backfill.runs (window_start, window_end, next_until, events_read, published, completed_at)
		VALUES ('2026-11-01', '2026-12-01', '2026-11-01', 120, 7, '2026-12-01 10:00:00Z')`)
	b.exec(t, `CREATE SCHEMA readiness; CREATE TABLE readiness.smoke_results (run_id text NOT NULL, channel text NOT NULL, ok boolean NOT NULL,
		latency_ms bigint NOT NULL, detail text NOT NULL DEFAULT '', finished_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (run_id, channel))`)
	b.exec(t, `INSERT INTO readiness.smoke_results VALUES ('r1', 'webhook', true, 840, '', '2026-12-02 09:00:00Z'), ('r1', 'crm', false, 30000, 'timeout', '2026-12-02 09:00:30Z')`)
	p = br.get("/")
	if !strings.Contains(p.body, "not readable: launchready_console_ro has no SELECT on backfill") {
		t.Errorf("an ungranted backfill schema: %s", between(p.body, `id="last-backfill">`, "</dd>"))
	}
	for _, schema := range []string{"backfill", "readiness"} {
		if _, err := pg.GrantReader(b.ctx, b.pool, schema); err != nil {
			t.Fatal(err)
		}
	}
	p = br.get("/")
	for _, want := range []string{"120 read, 7 published; done 2026-12-01 10:00:00 UTC",
		`2026-12-02 09:00:30 UTC: <span class="bad">crm failed (30000 ms)</span> <span class="ok">webhook ok (840 ms)</span>`} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the overview lacks %q", want)
		}
	}
}

func between(s, from, to string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i+len(from):]
	if j := strings.Index(s, to); j >= 0 {
		return s[:j]
	}
	return s
}
