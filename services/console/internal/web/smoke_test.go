package web

import (
	"strings"
	"testing"

	"github.com/launchready/launchready/pkg/natsauth"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/consoletest"
)

func TestASmokeCustomerIsMarkedAndLeftOutOfCounts(t *testing.T) {
	st := &statusServer{customers: []*billingv1.CustomerStatus{
		{CustomerId: "cus_Smoke1", Status: billingv1.BillingStatus_BILLING_STATUS_PAST_DUE, SmokeRun: "smoke-20261203-0900"},
		{CustomerId: "cus_Real1", Status: billingv1.BillingStatus_BILLING_STATUS_ACTIVE, Entitled: true},
	}}
	b := setupRead(t, st)
	b.addStaff(t, "viewer@example.com", auth.Viewer, goodPassword, false)
	br := b.browser(t)
	br.signIn("viewer@example.com", goodPassword)

	p := br.get("/customers/cus_Smoke1")
	if !strings.Contains(p.body, `id="smoke-badge"`) || !strings.Contains(between(p.body, `<dd id="status">`, "</dd>"), "smoke test") ||
		!strings.Contains(p.body, "run smoke-20261203-0900") {
		t.Errorf("the smoke customer's page has no badge: %d %s", p.status, between(p.body, `<dd id="status">`, "</dd>"))
	}
	if p := br.get("/customers/cus_Real1"); p.status != 200 || strings.Contains(p.body, `id="smoke-badge"`) {
		t.Errorf("a real customer marked as a smoke test: %d %s", p.status, between(p.body, `<dd id="status">`, "</dd>"))
	}

	// Two dead letters of crm-sync: one of a real customer's event, one
	// of the smoke test's. Only the real one is counted.
	consoletest.PutDeadLetter(t, b.ns, natsauth.CRMSync, &billingv1.BillingEvent{EventId: "evt_real1", Type: "invoice.paid", CustomerId: "cus_Real1"}, "hubspot: 503")
	consoletest.PutDeadLetter(t, b.ns, natsauth.CRMSync, &billingv1.BillingEvent{EventId: "evt_smoke1", Type: "invoice.payment_failed",
		CustomerId: "cus_Smoke1", SmokeRun: "smoke-20261203-0900"}, "hubspot: 503")
	consoletest.PutDeadLetter(t, b.ns, natsauth.SupportNotify, &billingv1.BillingEvent{EventId: "evt_smoke1", Type: "invoice.payment_failed",
		CustomerId: "cus_Smoke1", SmokeRun: "smoke-20261203-0900"}, "zendesk: 401")
	p = br.get("/")
	for _, want := range []string{
		`<a href="/dead-letters?consumer=crm-sync">crm-sync</a>: <strong class="bad">1</strong>`,
		`<p class="muted" id="smoke-dead-letters">2 from smoke tests, not counted.</p>`,
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the overview lacks %q: %s", want, between(p.body, `id="dead-letter-counts"`, "</section>"))
		}
	}
	if strings.Contains(p.body, `consumer=support-notify">`) {
		t.Errorf("a consumer counted with only a smoke test's dead letter: %s", between(p.body, `id="dead-letter-counts"`, "</section>"))
	}
}
