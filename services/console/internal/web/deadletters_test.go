package web

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/consoletest"
	"github.com/launchready/launchready/services/console/internal/store"
)

type dlqBundle struct {
	*bundle
	ns *natstest.Server
	js jetstream.JetStream
}

func setupDLQ(t *testing.T) *dlqBundle {
	ns := natstest.Start(t)
	nc, js, err := bus.Connect(t.Context(), ns.Conn(natsauth.Console), "console-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b := setup(t, func(o *Options) { o.JS = js })
	return &dlqBundle{bundle: b, ns: ns, js: js}
}

func failedEvent(id string) *billingv1.BillingEvent {
	return &billingv1.BillingEvent{EventId: id, Type: "invoice.payment_failed", CustomerId: "cus_" + id, Email: "jane.doe@example.com",
		RawJson: []byte(`{"id":"` + id + `","object":"event"}`)}
}

func (b *dlqBundle) exists(t *testing.T, seq uint64) bool {
	t.Helper()
	_, err := bus.GetDeadLetter(b.ctx, b.js, seq)
	if err != nil && !errors.Is(err, bus.ErrDeadLetterNotFound) {
		t.Fatal(err)
	}
	return err == nil
}

func TestViewerSeesDeadLettersMaskedAndCannotActEvenWithAValidToken(t *testing.T) {
	b := setupDLQ(t)
	seq := consoletest.PutDeadLetter(t, b.ns, natsauth.CRMSync, failedEvent("evt_v1"), "hubspot: 400 property missing")
	b.addStaff(t, "vi@example.com", auth.Viewer, goodPassword, false)
	br := b.browser(t)
	br.signIn("vi@example.com", goodPassword)

	list := br.get("/dead-letters")
	if list.status != http.StatusOK || !strings.Contains(list.body, "evt_v1") || !strings.Contains(list.body, "hubspot: 400 property missing") {
		t.Fatalf("list: %d", list.status)
	}
	page := br.get("/dead-letters/" + strconv.FormatUint(seq, 10))
	if page.status != http.StatusOK || !strings.Contains(page.body, "billing.replay.crm-sync.invoice.payment_failed") {
		t.Fatalf("preview: %d", page.status)
	}
	if strings.Contains(page.body, "jane.doe@example.com") || !strings.Contains(page.body, "j•••@example.com") || strings.Contains(page.body, `id="raw"`) {
		t.Fatal("a viewer sees the customer's email or the raw payload")
	}
	if strings.Contains(page.body, `id="replay"`) || strings.Contains(page.body, `id="discard"`) || strings.Contains(page.body, "<form method=\"post\" action=\"/dead-letters") {
		t.Fatal("a viewer is shown action buttons")
	}
	// The same POSTs a support member's page makes, forged with the
	// viewer's own valid session and CSRF token: refused, nothing written.
	csrf := br.csrf()
	for _, action := range []string{"replay", "discard"} {
		p := br.post("/dead-letters/"+strconv.FormatUint(seq, 10)+"/"+action, url.Values{"csrf": {csrf}, "reason": {"forged"}})
		if p.status != http.StatusForbidden {
			t.Fatalf("viewer %s: %d, want 403", action, p.status)
		}
	}
	if !b.exists(t, seq) {
		t.Fatal("a viewer's forged POST settled the dead letter")
	}
	if got := b.auditRows(t, "vi@example.com"); !slices.Equal(got, [][2]string{{"sign_in", "ok"}}) {
		t.Fatalf("a refused POST wrote audit rows: %v", got)
	}
}

func TestSupportReplaysAndDiscardsWithAudit(t *testing.T) {
	b := setupDLQ(t)
	replay := consoletest.PutDeadLetter(t, b.ns, natsauth.CRMSync, failedEvent("evt_r1"), "hubspot: 503")
	discard := consoletest.PutDeadLetter(t, b.ns, natsauth.SupportNotify, failedEvent("evt_d1"), "zendesk: 422")
	b.addStaff(t, "su@example.com", auth.Support, goodPassword, false)
	br := b.browser(t)
	br.signIn("su@example.com", goodPassword)

	page := br.get("/dead-letters/" + strconv.FormatUint(replay, 10))
	if !strings.Contains(page.body, "jane.doe@example.com") || !strings.Contains(page.body, `id="replay"`) || !strings.Contains(page.body, `id="raw"`) {
		t.Fatal("support does not see the payload and the actions")
	}
	// No CSRF token: refused, nothing done.
	if p := br.post("/dead-letters/"+strconv.FormatUint(replay, 10)+"/replay", url.Values{}); p.status != http.StatusForbidden {
		t.Fatalf("replay without a CSRF token: %d, want 403", p.status)
	}
	if !b.exists(t, replay) {
		t.Fatal("a POST without a CSRF token replayed")
	}
	csrf := br.csrf()
	if p := br.post("/dead-letters/"+strconv.FormatUint(replay, 10)+"/replay", url.Values{"csrf": {csrf}, "reason": {"HubSpot is back"}}); p.status != http.StatusSeeOther {
		t.Fatalf("replay: %d", p.status)
	}
	if b.exists(t, replay) {
		t.Fatal("replayed dead letter still there")
	}
	if p := br.post("/dead-letters/"+strconv.FormatUint(replay, 10)+"/replay", url.Values{"csrf": {csrf}}); p.status != http.StatusConflict {
		t.Fatalf("second replay: %d, want 409", p.status)
	}
	// A discard needs a reason.
	if p := br.post("/dead-letters/"+strconv.FormatUint(discard, 10)+"/discard", url.Values{"csrf": {csrf}}); p.status != http.StatusBadRequest || !b.exists(t, discard) {
		t.Fatalf("discard without a reason: %d", p.status)
	}
	if p := br.post("/dead-letters/"+strconv.FormatUint(discard, 10)+"/discard", url.Values{"csrf": {csrf}, "reason": {"test customer, deleted"}}); p.status != http.StatusSeeOther {
		t.Fatalf("discard: %d", p.status)
	}
	if b.exists(t, discard) {
		t.Fatal("discarded dead letter still there")
	}

	rows, err := store.ListAudit(b.ctx, b.pool, store.AuditFilter{Actor: "su@example.com"})
	if err != nil {
		t.Fatal(err)
	}
	var replayed, discarded *store.AuditEntry
	for i := range rows {
		switch {
		case rows[i].Action == "dlq_replay" && rows[i].Outcome == "ok":
			replayed = &rows[i]
		case rows[i].Action == "dlq_discard" && rows[i].Outcome == "ok":
			discarded = &rows[i]
		}
	}
	if replayed == nil || replayed.CustomerID != "cus_evt_r1" || replayed.Reason != "HubSpot is back" ||
		!strings.Contains(string(replayed.Before), `"event_id": "evt_r1"`) && !strings.Contains(string(replayed.Before), `"event_id":"evt_r1"`) ||
		!strings.Contains(string(replayed.After), "billing.replay.crm-sync.invoice.payment_failed") {
		t.Fatalf("replay audit row %+v", replayed)
	}
	if discarded == nil || discarded.Reason != "test customer, deleted" || discarded.Target != "support-notify/"+strconv.FormatUint(discard, 10) {
		t.Fatalf("discard audit row %+v", discarded)
	}
}
