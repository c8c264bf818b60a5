package web

import (
	"strconv"
	"strings"
	"testing"

	"github.com/launchready/launchready/pkg/natsauth"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/consoletest"
)

func TestEventPageShowsEachConsumersOutcomeAndMasksThePayloadForAViewer(t *testing.T) {
	b := setupRead(t, &statusServer{})
	b.exec(t, `INSERT INTO billing.processed_events (event_id, event_type, customer_id, outcome) VALUES ('evt_E1', 'invoice.payment_failed', 'cus_E1', 'applied')`)
	b.exec(t, `INSERT INTO support.processed_events (consumer, event_id, event_type, outcome) VALUES ('support-notify', 'evt_E1', 'invoice.payment_failed', 'created')`)
	seq := consoletest.PutDeadLetter(t, b.ns, natsauth.CRMSync, &billingv1.BillingEvent{
		EventId: "evt_E1", Type: "invoice.payment_failed", CustomerId: "cus_E1", Email: "jane.doe@example.com",
		RawJson: []byte(`{"id":"evt_E1","data":{"object":{"customer_email":"jane.doe@example.com","client_secret":"pi_1_secret_abcdefghijklmnop"}}}`),
	}, "hubspot: 503")
	b.addStaff(t, "viewer@example.com", auth.Viewer, goodPassword, false)
	b.addStaff(t, "support@example.com", auth.Support, goodPassword, false)

	viewer := b.browser(t)
	viewer.signIn("viewer@example.com", goodPassword)
	p := viewer.get("/events/evt_E1")
	if p.status != 200 {
		t.Fatalf("event page: %d %s", p.status, p.body)
	}
	for _, want := range []string{
		`<td>billing-state</td><td class="outcome">applied</td>`,
		`<td>support-notify</td><td class="outcome">created</td>`,
		`<td>crm-sync</td><td class="outcome bad"><a href="/dead-letters/` + strconv.FormatUint(seq, 10) + `">dead-lettered</a> after 10 attempts: hubspot: 503`,
		`href="/customers/cus_E1"`, `j•••@example.com`, `id="event-raw-hidden"`,
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("a viewer's event page lacks %q", want)
		}
	}
	if strings.Contains(p.body, "jane.doe@example.com") || strings.Contains(p.body, "secret_abcdefghijklmnop") {
		t.Error("a viewer sees the email or the client secret")
	}

	sup := b.browser(t)
	sup.signIn("support@example.com", goodPassword)
	p = sup.get("/events/evt_E1")
	if !strings.Contains(p.body, `id="event-raw"`) || !strings.Contains(p.body, "jane.doe@example.com") {
		t.Errorf("support does not see the payload: %s", between(p.body, `id="payload"`, "</section>"))
	}
	if strings.Contains(p.body, "secret_abcdefghijklmnop") {
		t.Error("the payload shows the client secret to support")
	}
	if p := sup.get("/events/evt_Nothing"); p.status != 200 || !strings.Contains(p.body, `id="no-outcomes"`) {
		t.Errorf("an unknown event: %d", p.status)
	}
}

// The dead letter's page says what a replay would change: nothing when
// its consumer has recorded the event since, the event applied otherwise.
func TestDeadLetterPreviewSaysWhatAReplayChanges(t *testing.T) {
	b := setupRead(t, &statusServer{})
	b.exec(t, `INSERT INTO billing.processed_events (event_id, event_type, customer_id, outcome) VALUES ('evt_P1', 'invoice.paid', 'cus_P1', 'applied')`)
	b.exec(t, `INSERT INTO crm.processed_events (event_id, event_type, customer_id, outcome) VALUES ('evt_P2', 'invoice.paid', 'cus_P2', 'synced')`)
	unapplied := consoletest.PutDeadLetter(t, b.ns, natsauth.CRMSync, &billingv1.BillingEvent{EventId: "evt_P1", Type: "invoice.paid", CustomerId: "cus_P1"}, "hubspot: 503")
	since := consoletest.PutDeadLetter(t, b.ns, natsauth.CRMSync, &billingv1.BillingEvent{EventId: "evt_P2", Type: "invoice.paid", CustomerId: "cus_P2"}, "hubspot: 503")
	b.addStaff(t, "support@example.com", auth.Support, goodPassword, false)
	br := b.browser(t)
	br.signIn("support@example.com", goodPassword)

	p := br.get("/dead-letters/" + strconv.FormatUint(unapplied, 10))
	if !strings.Contains(p.body, "crm-sync has no record of this event: a replay applies it for the first time.") ||
		!strings.Contains(p.body, "untouched: billing-state applied;") {
		t.Errorf("preview of an unapplied event: %s", between(p.body, `id="preview"`, "</section>"))
	}
	p = br.get("/dead-letters/" + strconv.FormatUint(since, 10))
	if !strings.Contains(p.body, "crm-sync has recorded this event since: <strong>synced</strong>") || !strings.Contains(p.body, "A replay changes nothing") {
		t.Errorf("preview of an event applied since: %s", between(p.body, `id="preview"`, "</section>"))
	}
}
