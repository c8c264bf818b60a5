package web

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/resync"
	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/store"
)

var resyncFormRE = regexp.MustCompile(`action="/customers/[^"]+/resync/([a-z-]+)"[^>]*>\s*<input type="hidden" name="csrf" value="[^"]+">\s*<input type="hidden" name="request_id" value="([^"]+)">`)

// resyncForms reads each resync form's request id from the customer page.
func resyncFormIDs(body string) map[string]string {
	out := map[string]string{}
	for _, m := range resyncFormRE.FindAllStringSubmatch(body, -1) {
		out[m[1]] = m[2]
	}
	return out
}

// The customer page's resync forms, through a real NATS server with the
// production permissions: the console asks as its own user, a crm-sync
// process answers on its own subject, and the page shows the answer;
// support-notify is not running and the page says so. Each submission is
// audited with actor, reason and outcome. A viewer sees no form, and the
// same POST forged with the viewer's valid session and CSRF token gets
// 403 and reaches no consumer; a POST without the token gets 403.
func TestResyncFromTheCustomerPage(t *testing.T) {
	b := setupDLQ(t)
	nc, _, err := bus.Connect(t.Context(), b.ns.Conn(natsauth.CRMSync), "crm-sync-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	var mu sync.Mutex
	var asked []resync.Request
	srv, err := resync.Serve(nc, natsauth.CRMSync, 10*time.Second, nil, func(_ context.Context, req resync.Request) resync.Reply {
		mu.Lock()
		defer mu.Unlock()
		asked = append(asked, req)
		return resync.Reply{Outcome: resync.OutcomeResent, Detail: "pushed the contact to hubspot again (1 calls)"}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Stop(); err != nil {
			t.Error(err)
		}
	})
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	requests := func() []resync.Request { mu.Lock(); defer mu.Unlock(); return slices.Clone(asked) }
	const customer = "cus_Resync1"

	b.addStaff(t, "su@example.com", auth.Support, goodPassword, false)
	su := b.browser(t)
	su.signIn("su@example.com", goodPassword)
	page := su.get("/customers/" + customer)
	ids := resyncFormIDs(page.body)
	if page.status != http.StatusOK || ids["crm-sync"] == "" || ids["support-notify"] == "" {
		t.Fatalf("customer page for support: %d, forms %v", page.status, ids)
	}
	csrf := su.csrf()

	p := su.post("/customers/"+customer+"/resync/crm-sync", url.Values{"csrf": {csrf}, "request_id": {ids["crm-sync"]}, "reason": {"CRM shows the old plan"}})
	if p.status != http.StatusOK || !strings.Contains(p.body, `id="resync-outcome">resent<`) || !strings.Contains(p.body, "pushed the contact to hubspot again") {
		t.Fatalf("resync crm-sync: %d %s", p.status, p.body)
	}
	got := requests()
	want := resync.Request{RequestID: ids["crm-sync"], CustomerID: customer, Actor: "su@example.com", Reason: "CRM shows the old plan"}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("crm-sync was asked %+v, want once %+v", got, want)
	}

	p = su.post("/customers/"+customer+"/resync/support-notify", url.Values{"csrf": {csrf}, "request_id": {ids["support-notify"]}, "reason": {"ticket lost"}})
	if p.status != http.StatusServiceUnavailable || !strings.Contains(p.body, "support-notify is not running") {
		t.Fatalf("resync with nobody serving: %d %s", p.status, p.body)
	}
	if p := su.post("/customers/"+customer+"/resync/crm-sync", url.Values{"csrf": {csrf}, "request_id": {ids["crm-sync"]}}); p.status != http.StatusBadRequest {
		t.Fatalf("no reason: %d", p.status)
	}
	if p := su.post("/customers/"+customer+"/resync/crm-sync", url.Values{"request_id": {ids["crm-sync"]}, "reason": {"no token"}}); p.status != http.StatusForbidden {
		t.Fatalf("no CSRF token: %d", p.status)
	}
	if p := su.post("/customers/"+customer+"/resync/billing-state", url.Values{"csrf": {csrf}, "request_id": {ids["crm-sync"]}, "reason": {"x"}}); p.status != http.StatusNotFound {
		t.Fatalf("a consumer that takes no resync: %d", p.status)
	}
	if n := len(requests()); n != 1 {
		t.Fatalf("crm-sync was asked %d times, want once", n)
	}
	rows, err := store.ListAudit(b.ctx, b.pool, store.AuditFilter{CustomerID: customer})
	if err != nil {
		t.Fatal(err)
	}
	var resyncs []string
	for _, r := range rows {
		if r.Action == "resync" {
			if r.Actor != "su@example.com" || r.Reason == "" || r.Target == "" {
				t.Errorf("audit row %+v", r)
			}
			resyncs = append(resyncs, r.Target+":"+r.Outcome)
		}
	}
	slices.Sort(resyncs)
	if !slices.Equal(resyncs, []string{"crm-sync:resent", "support-notify:no_responder"}) {
		t.Fatalf("audit rows %v", resyncs)
	}

	b.addStaff(t, "vi@example.com", auth.Viewer, goodPassword, false)
	vi := b.browser(t)
	vi.signIn("vi@example.com", goodPassword)
	if p := vi.get("/customers/" + customer); p.status != http.StatusOK || strings.Contains(p.body, `id="resync"`) || len(resyncFormIDs(p.body)) != 0 {
		t.Fatalf("a viewer sees resync forms: %d", p.status)
	}
	p = vi.post("/customers/"+customer+"/resync/crm-sync", url.Values{"csrf": {vi.csrf()}, "request_id": {"rsy_forgedforgedforged1"}, "reason": {"forged"}})
	if p.status != http.StatusForbidden {
		t.Fatalf("a viewer's forged resync: %d", p.status)
	}
	if n := len(requests()); n != 1 {
		t.Fatalf("a forged resync reached crm-sync (%d requests)", n)
	}
	for _, row := range b.auditRows(t, "vi@example.com") {
		if row[0] == "resync" {
			t.Fatalf("a refused resync was recorded as done: %v", row)
		}
	}
}
