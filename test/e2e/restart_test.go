package e2e

import (
	"strconv"
	"testing"
	"time"

	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/journey"
)

// TestRestartDuringDatabaseOutage: a service that restarts while its
// database refuses connections (a failover, a maintenance window) must wait
// for it and recover, not exit: in Kubernetes an exit is a crash loop with
// growing back-off, and under compose without a restart policy it is an
// outage that outlives the database's.
func TestRestartDuringDatabaseOutage(t *testing.T) {
	s := startStack(t, harness.StackOptions{})
	g := newGen(t)
	consumers := []string{"billing-state", "crm-sync", "support-notify"}

	if err := s.CutDatabase(); err != nil {
		t.Fatal(err)
	}
	restored := false
	t.Cleanup(func() {
		if !restored {
			_ = s.RestoreDatabase()
		}
	})
	for _, name := range consumers {
		if err := s.Procs[name].Restart(); err != nil {
			t.Fatal(err)
		}
	}
	// Hold the outage a few seconds: long enough for every service to meet
	// it at start-up, short enough for any start-up timeout.
	<-time.After(3 * time.Second)
	if err := s.RestoreDatabase(); err != nil {
		t.Fatal(err)
	}
	restored = true
	for _, name := range consumers {
		if err := s.ReadyErr(name, 60*time.Second); err != nil {
			t.Errorf("%s: not ready after the database came back: %v", name, err)
		}
		if n := s.Procs[name].Crashes(); n != 0 || !s.Procs[name].Running() {
			t.Errorf("%s exited while the database refused connections (exits: %d); it must wait for it:\n%s", name, n, s.Procs[name].Tail(3000))
		}
	}
	// And the system works afterwards.
	b := g.Customer("after", time.Now().Add(-time.Minute))
	evs := purchase(b, 0, 500)
	j := build(t, b)
	deliver(t, s, evs...)
	waitStatus(t, s, j.Customer, active, 60*time.Second)
}

// TestTicketOnceAcrossCrash: support-notify dies after Zendesk opened a
// ticket and before the ticket was recorded. While it is down, Stripe sends
// the next event about the same invoices: a second failed attempt on one,
// the payment that settles the other. After the restart each invoice must
// still have exactly one ticket, and no ticket may be left open that
// support-notify does not know about (nobody would ever resolve it).
func TestTicketOnceAcrossCrash(t *testing.T) {
	// A long AckWait keeps the interrupted deliveries away until the new
	// events have been handled, which is the order this test is about.
	s := startStack(t, harness.StackOptions{ServiceEnv: map[string]map[string]string{
		"support-notify": {"CONSUMER_ACK_WAIT": "15s"},
	}})
	g := newGen(t)
	now := time.Now()
	bx := g.Customer("crashx", now.Add(-30*24*time.Hour))
	by := g.Customer("crashy", now.Add(-30*24*time.Hour))
	setup := append(activeSubscription(bx), activeSubscription(by)...)
	failX, updX := renewalFails(bx, 30*journey.Day-60)
	failY, updY := renewalFails(by, 30*journey.Day-60)
	againX := bx.Invoice("invoice.payment_failed", 30*journey.Day, bx.ID("in", 2), bx.ID("sub"), bx.ID("ch", 3), bx.ID("pi", 2), "open",
		journey.InvoiceOpts{Attempt: 2, NextAttempt: 33 * journey.Day})
	paidY := by.Invoice("invoice.paid", 30*journey.Day, by.ID("in", 2), by.ID("sub"), by.ID("ch", 3), by.ID("pi", 2), "paid",
		journey.InvoiceOpts{Attempt: 2})
	build(t, bx)
	build(t, by)
	deliver(t, s, setup...)
	s.WaitDrained(60*time.Second, "support-notify")

	// Zendesk acts half-way through a 4 s call: kill support-notify once
	// both tickets exist and before either answer arrives.
	s.Zendesk.SetLatency(4 * time.Second)
	deliver(t, s, failX, updX, failY, updY)
	testkit.Eventually(t, 30*time.Second, "Zendesk to open both tickets", func() bool { return len(s.Zendesk.Tickets()) == 2 })
	s.Procs["support-notify"].Kill()
	if n := s.Count(`SELECT count(*) FROM support.tickets`); n != 0 {
		t.Fatalf("support.tickets has %d rows before any Zendesk answer: the crash did not land between the call and the commit", n)
	}
	s.Zendesk.SetLatency(200 * time.Millisecond)
	deliver(t, s, againX, paidY)
	if err := s.Procs["support-notify"].Resume(); err != nil {
		t.Fatal(err)
	}
	s.WaitReady("support-notify", 60*time.Second)
	s.WaitDrained(90*time.Second, "support-notify")

	perInvoice := map[string]int{}
	recorded := map[string]bool{}
	for _, id := range s.Strings(`SELECT ticket_id::text FROM support.tickets`) {
		recorded[id] = true
	}
	for _, tk := range s.Zendesk.Tickets() {
		switch tk.ExternalID {
		case failX.ID, againX.ID:
			perInvoice["x"]++
		case failY.ID:
			perInvoice["y"]++
		}
		if tk.Status != "solved" && !recorded[strconv.FormatInt(tk.ID, 10)] {
			t.Errorf("zendesk ticket %d (opened by %s) is open and support-notify has no record of it: nobody will resolve it", tk.ID, tk.ExternalID)
		}
	}
	if perInvoice["x"] != 1 {
		t.Errorf("invoice %s has %d tickets after the crash, want 1 (the second failure must comment on the first)", failX.Invoice, perInvoice["x"])
	}
	posts, puts, hits := s.Zendesk.Counts()
	t.Logf("zendesk: %d tickets, %d creates (%d from the idempotency store), %d updates", len(s.Zendesk.Tickets()), posts, hits, puts)
}
