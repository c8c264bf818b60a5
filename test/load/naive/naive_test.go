package naive

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/fakes"
	"github.com/launchready/launchready/test/testkit/journey"
)

// TestBaselineDoesEverythingBeforeAnswering: the baseline's answer comes
// only after Postgres and every vendor call, so with vendors answering in
// 100 ms a failed payment takes at least the CRM, desk and Slack calls in
// a row; a bad signature is refused and writes nothing.
func TestBaselineDoesEverythingBeforeAnswering(t *testing.T) {
	db := pgtest.NewDatabase(t)
	hub := fakes.NewHubSpot("tok")
	defer hub.Close()
	zd := fakes.NewZendesk("ops@example.com", "zd")
	defer zd.Close()
	sl := fakes.NewSlack("/hook")
	defer sl.Close()
	for _, f := range []interface{ SetLatency(time.Duration) }{hub, zd, sl} {
		f.SetLatency(100 * time.Millisecond)
	}
	ctx := context.Background()
	s, err := New(ctx, Config{DatabaseURL: db, WebhookSecret: "whsec_test", HubSpotURL: hub.URL(), HubSpotToken: "tok",
		ZendeskURL: zd.URL(), ZendeskEmail: zd.Email, ZendeskToken: zd.Token, SlackURL: sl.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	srv := httptest.NewServer(s)
	defer srv.Close()

	dir, err := testkit.FindFixturesDir()
	if err != nil {
		t.Fatal(err)
	}
	g, err := journey.NewGen(dir, "nv1")
	if err != nil {
		t.Fatal(err)
	}
	b := g.Customer("a", time.Now().Add(-time.Hour))
	failed := b.Invoice("invoice.payment_failed", 0, b.ID("in"), b.ID("sub"), b.ID("ch"), b.ID("pi"), "open", journey.InvoiceOpts{Attempt: 1})
	if b.Err() != nil {
		t.Fatal(b.Err())
	}
	post := func(sig string) (int, time.Duration) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/stripe", bytes.NewReader(failed.Raw))
		req.Header.Set("Stripe-Signature", sig)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, time.Since(start)
	}
	if code, _ := post(stripeevent.Sign(failed.Raw, "whsec_other", time.Now())); code != 400 {
		t.Fatalf("bad signature: %d, want 400", code)
	}
	if hub.CallCount()+zd.CallCount()+sl.CallCount() != 0 {
		t.Fatal("a refused delivery called a vendor")
	}
	code, took := post(stripeevent.Sign(failed.Raw, "whsec_test", time.Now()))
	if code != 200 {
		t.Fatalf("valid delivery: %d", code)
	}
	if took < 300*time.Millisecond {
		t.Errorf("answered in %s: the three vendor calls (100 ms each) must come first", took)
	}
	if len(hub.ContactsFor(failed.Customer)) != 1 || len(zd.Tickets()) != 1 || len(sl.Messages()) != 1 {
		t.Errorf("side effects: %d contacts, %d tickets, %d alerts; want one each", len(hub.ContactsFor(failed.Customer)), len(zd.Tickets()), len(sl.Messages()))
	}
	conn, err := pgx.Connect(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM naive_events WHERE event_id = $1`, failed.ID).Scan(&n); err != nil || n != 1 {
		t.Fatalf("naive_events: %d rows (%v), want 1", n, err)
	}
	// A Stripe retry is stored once and calls nobody again.
	calls := hub.CallCount()
	if code, _ := post(stripeevent.Sign(failed.Raw, "whsec_test", time.Now())); code != 200 || hub.CallCount() != calls {
		t.Fatalf("retry: %d, hubspot calls %d -> %d", code, calls, hub.CallCount())
	}
}
