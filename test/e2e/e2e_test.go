package e2e

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/fakes"
	"github.com/launchready/launchready/test/testkit/journey"
)

const (
	active   = billingv1.BillingStatus_BILLING_STATUS_ACTIVE
	pastDue  = billingv1.BillingStatus_BILLING_STATUS_PAST_DUE
	canceled = billingv1.BillingStatus_BILLING_STATUS_CANCELED
	refunded = billingv1.BillingStatus_BILLING_STATUS_REFUNDED
)

// purchase adds a paid one-time Checkout purchase to b, at offset at.
func purchase(b *journey.B, at int, amount int64) []*journey.Event {
	pi, ch := b.ID("pi"), b.ID("ch")
	return []*journey.Event{
		b.CustomerEvent("customer.created", at),
		b.CheckoutPayment("checkout.session.completed", at+5, b.ID("cs"), pi, amount, "paid"),
		b.Charge("charge.succeeded", at+5, ch, pi, "", amount, 0, 0),
		b.PaymentIntent("payment_intent.succeeded", at+5, pi, amount, "succeeded"),
	}
}

// activeSubscription adds a customer with a paid, active subscription.
func activeSubscription(b *journey.B) []*journey.Event {
	sub, in1 := b.ID("sub"), b.ID("in", 1)
	return []*journey.Event{
		b.CustomerEvent("customer.created", 0),
		b.Subscription("customer.subscription.created", 0, sub, "active", journey.SubOpts{LatestInvoice: in1}),
		b.Invoice("invoice.paid", 0, in1, sub, b.ID("ch", 1), b.ID("pi", 1), "paid", journey.InvoiceOpts{Attempt: 1, Reason: "subscription_create"}),
	}
}

// renewalFails adds a failed renewal at offset at: the invoice event and
// the subscription turning past_due in the same second.
func renewalFails(b *journey.B, at int) (failed, update *journey.Event) {
	sub, in2 := b.ID("sub"), b.ID("in", 2)
	failed = b.Invoice("invoice.payment_failed", at, in2, sub, b.ID("ch", 2), b.ID("pi", 2), "open", journey.InvoiceOpts{Attempt: 1, NextAttempt: at + 3*journey.Day})
	update = b.Subscription("customer.subscription.updated", at, sub, "past_due", journey.SubOpts{LatestInvoice: in2, Prev: map[string]any{"status": "active"}})
	return failed, update
}

// TestSuccessfulPurchase: a paid one-time purchase is recorded once in
// Postgres, appears once in the CRM, and opens no ticket and no alert.
func TestSuccessfulPurchase(t *testing.T) {
	s := startStack(t, harness.StackOptions{})
	g := newGen(t)
	b := g.Customer("buy", time.Now().Add(-time.Minute))
	evs := purchase(b, 0, 4900)
	j := build(t, b)

	sent := time.Now()
	deliver(t, s, evs...)
	st, took := waitStatus(t, s, j.Customer, active, 30*time.Second)
	t.Logf("purchase visible over gRPC %s after the first POST (poll %s)", ms(time.Since(sent)), ms(took))
	if !st.GetEntitled() || st.GetEmail() != j.Email || st.GetUserId() != j.UserID {
		t.Fatalf("status %+v: want entitled, email %s, user %s", st, j.Email, j.UserID)
	}
	s.WaitDrained(60 * time.Second)

	// Postgres: every event once, one purchase, one audit row per event.
	processedOnce(t, s, "billing.processed_events", evs...)
	if n := s.Count(`SELECT count(*) FROM billing.payments WHERE customer_id = $1 AND from_checkout AND paid`, j.Customer); n != 1 {
		t.Errorf("billing.payments: %d paid checkout purchases, want 1", n)
	}
	if n := s.Count(`SELECT count(*) FROM (SELECT event_id FROM billing.audit_log GROUP BY event_id HAVING count(*) > 1) d`); n != 0 {
		t.Errorf("audit_log: %d events audited more than once", n)
	}
	// CRM: one contact, active.
	crmEvents := filter(evs, journey.CRMSync)
	processedOnce(t, s, "crm.processed_events", crmEvents...)
	contacts := s.HubSpot.ContactsFor(j.Customer)
	if len(contacts) != 1 || len(s.HubSpot.Contacts()) != 1 {
		t.Fatalf("hubspot: %d contacts for %s, %d in all; want exactly 1", len(contacts), j.Customer, len(s.HubSpot.Contacts()))
	}
	if p := contacts[0].Properties; p["billing_status"] != "active" || p["email"] != j.Email || p["billing_entitled"] != "true" {
		t.Errorf("hubspot contact %v: want active, entitled, %s", p, j.Email)
	}
	// Support: the success was seen (it would resolve a ticket) and nothing
	// was opened or posted.
	if n := s.Count(`SELECT count(*) FROM support.processed_events WHERE event_id = $1 AND outcome = 'nothing_open'`, evs[3].ID); n != 1 {
		t.Errorf("support.processed_events: payment_intent.succeeded not recorded as nothing_open")
	}
	if n := s.Zendesk.CallCount(); n != 0 || len(s.Zendesk.Tickets()) != 0 {
		t.Errorf("zendesk: %d calls, %d tickets; a purchase opens none", n, len(s.Zendesk.Tickets()))
	}
	if n := s.Slack.CallCount(); n != 0 {
		t.Errorf("slack: %d calls; a purchase alerts nobody", n)
	}
	if n := s.Count(`SELECT count(*) FROM support.tickets`); n != 0 {
		t.Errorf("support.tickets: %d rows", n)
	}
}

// TestFailedPayment: a failed renewal makes the customer past_due, gRPC
// shows it, one ticket opens and an alert reaches Slack within 2 minutes of
// the event's time.
func TestFailedPayment(t *testing.T) {
	s := startStack(t, harness.StackOptions{})
	g := newGen(t)
	now := time.Now()
	b := g.Customer("fail", now.Add(-30*24*time.Hour))
	setup := activeSubscription(b)
	failed, update := renewalFails(b, 30*journey.Day)
	j := build(t, b)
	if d := failed.Created.Sub(now); d > time.Second || d < -time.Second {
		t.Fatalf("failure event created %s, want now", failed.Created)
	}

	deliver(t, s, setup...)
	waitStatus(t, s, j.Customer, active, 30*time.Second)
	sent := time.Now()
	deliver(t, s, failed, update)
	st, _ := waitStatus(t, s, j.Customer, pastDue, 30*time.Second)
	t.Logf("past_due visible over gRPC %s after the POST", ms(time.Since(sent)))
	if !st.GetEntitled() {
		t.Errorf("past_due customer not entitled; PAST_DUE_ENTITLED defaults to true")
	}
	if st.GetLastEventId() == "" {
		t.Errorf("status has no last_event_id")
	}

	// The alert: within 2 minutes of the Stripe event's created time.
	slo := failed.Created.Add(2 * time.Minute)
	testkit.Eventually(t, time.Until(slo)+time.Second, "the failed-payment alert in Slack", func() bool { return slackFor(s, failed.ID) > 0 })
	msg := s.Slack.ByEvent()[failed.ID][0]
	if msg.At.After(slo) {
		t.Fatalf("alert accepted %s after the event, over the 2-minute promise", msg.At.Sub(failed.Created))
	}
	t.Logf("alert accepted %s after the event's created time (%s after the POST)", msg.At.Sub(failed.Created).Round(time.Millisecond), ms(msg.At.Sub(sent)))
	if !strings.Contains(msg.Text, "15.00") {
		t.Errorf("alert text %q does not name the amount", msg.Text)
	}

	// One ticket about the invoice, opened by the failure.
	testkit.Eventually(t, 60*time.Second, "the ticket", func() bool { return len(s.Zendesk.Tickets()) > 0 })
	s.WaitDrained(60 * time.Second)
	ts := s.Zendesk.Tickets()
	if len(ts) != 1 || ts[0].ExternalID != failed.ID || ts[0].Requester.Email != j.Email {
		t.Fatalf("zendesk tickets %+v: want one, external_id %s, requester %s", ts, failed.ID, j.Email)
	}
	if slackFor(s, failed.ID) != 1 || len(s.Slack.Messages()) != 1 {
		t.Errorf("slack: %d messages, want exactly the one alert", len(s.Slack.Messages()))
	}
	// The CRM agrees with gRPC.
	testkit.Eventually(t, 30*time.Second, "the CRM contact past_due", func() bool {
		cs := s.HubSpot.ContactsFor(j.Customer)
		return len(cs) == 1 && cs[0].Properties["billing_status"] == "past_due"
	})
	processedOnce(t, s, "billing.processed_events", append(setup, failed, update)...)
}

// TestRefund: a full refund reaches billing state within 60 s, the CRM
// contact is updated in place (no second contact), and ops get an alert.
func TestRefund(t *testing.T) {
	s := startStack(t, harness.StackOptions{})
	g := newGen(t)
	b := g.Customer("refund", time.Now().Add(-time.Hour))
	evs := purchase(b, 0, 2500)
	refund := b.Charge("charge.refunded", 3600, b.ID("ch"), b.ID("pi"), "", 2500, 2500, 0)
	j := build(t, b)

	deliver(t, s, evs...)
	waitStatus(t, s, j.Customer, active, 30*time.Second)
	s.WaitDrained(60 * time.Second)
	if n := len(s.HubSpot.ContactsFor(j.Customer)); n != 1 {
		t.Fatalf("hubspot: %d contacts after the purchase, want 1", n)
	}

	sent := time.Now()
	deliver(t, s, refund)
	st, _ := waitStatus(t, s, j.Customer, refunded, 60*time.Second)
	took := time.Since(sent)
	if took > 60*time.Second {
		t.Fatalf("refund took %s to reach billing state, over 60 s", took)
	}
	t.Logf("refund visible over gRPC %s after the POST", ms(took))
	if st.GetEntitled() {
		t.Errorf("refunded customer still entitled")
	}
	testkit.Eventually(t, 60*time.Second, "the CRM contact refunded", func() bool {
		cs := s.HubSpot.ContactsFor(j.Customer)
		return len(cs) == 1 && cs[0].Properties["billing_status"] == "refunded"
	})
	s.WaitDrained(60 * time.Second)
	if n, all := len(s.HubSpot.ContactsFor(j.Customer)), len(s.HubSpot.Contacts()); n != 1 || all != 1 {
		t.Fatalf("hubspot: %d contacts for the customer, %d in all; want 1 (no duplicate contact)", n, all)
	}
	if slackFor(s, refund.ID) != 1 {
		t.Errorf("slack: %d alerts for the refund, want 1", slackFor(s, refund.ID))
	}
	processedOnce(t, s, "billing.processed_events", append(evs, refund)...)
	processedOnce(t, s, "crm.processed_events", refund)
}

// TestCancellation: a gRPC Watch client sees the subscription's deletion
// as soon as billing-state applies it.
func TestCancellation(t *testing.T) {
	s := startStack(t, harness.StackOptions{})
	g := newGen(t)
	b := g.Customer("cancel", time.Now().Add(-40*24*time.Hour))
	setup := activeSubscription(b)
	del := b.Subscription("customer.subscription.deleted", 40*journey.Day, b.ID("sub"), "canceled",
		journey.SubOpts{LatestInvoice: b.ID("in", 1), Reason: "cancellation_requested"})
	j := build(t, b)

	deliver(t, s, setup...)
	waitStatus(t, s, j.Customer, active, 30*time.Second)
	// The stream carries a deadline, as many gRPC clients set one; see
	// TestWatchWithoutDeadline for a watcher without.
	ch := watch(t, s, j.Customer, 10*time.Minute)
	if first := next(t, ch, 10*time.Second); first.GetStatus() != active {
		t.Fatalf("watch starts with %v (%s), want the current status ACTIVE", first.GetStatus(), first.GetCustomerId())
	}

	sent := time.Now()
	ack := deliver(t, s, del)[0]
	var got *billingv1.CustomerStatus
	for got == nil || got.GetStatus() != canceled {
		got = next(t, ch, 10*time.Second)
		if strings.HasPrefix(got.GetCustomerId(), "error:") {
			t.Fatalf("watch: %s", got.GetCustomerId())
		}
	}
	seen := time.Since(sent)
	t.Logf("Watch saw CANCELED %s after the POST (ingress ack %s)", ms(seen), ms(ack.Latency))
	// "At once": the change is pushed, not polled; allow for a loaded
	// machine but nothing like a polling interval.
	if seen > 5*time.Second {
		t.Errorf("Watch saw the cancellation %s after the POST, want well under 5 s", seen)
	}
	if got.GetEntitled() || got.GetLastEventId() != del.ID {
		t.Errorf("watched status %+v: want not entitled, last event %s", got, del.ID)
	}
	// Ops hear of it; no ticket (the customer asked for it).
	testkit.Eventually(t, 60*time.Second, "the cancellation alert", func() bool { return slackFor(s, del.ID) == 1 })
	s.WaitDrained(60 * time.Second)
	if n := len(s.Zendesk.Tickets()); n != 0 {
		t.Errorf("zendesk: %d tickets for a requested cancellation", n)
	}
}

// TestWatchWithoutDeadline: a long-lived watcher (a mobile backend keeping
// one stream open per signed-in user) opens WatchCustomerStatus without a
// deadline and must get the current status, then changes.
func TestWatchWithoutDeadline(t *testing.T) {
	s := startStack(t, harness.StackOptions{Services: []string{"ingress", "billing-state"}})
	g := newGen(t)
	b := g.Customer("watch", time.Now().Add(-time.Minute))
	evs := purchase(b, 0, 700)
	j := build(t, b)
	deliver(t, s, evs...)
	waitStatus(t, s, j.Customer, active, 30*time.Second)
	ch := watch(t, s, j.Customer, 0)
	first := next(t, ch, 10*time.Second)
	if first.GetStatus() != active {
		t.Fatalf("watch without a deadline starts with %v %q, want the current status ACTIVE", first.GetStatus(), first.GetCustomerId())
	}
	refund := b.Charge("charge.refunded", 60, b.ID("ch"), b.ID("pi"), "", 700, 700, 0)
	deliver(t, s, refund)
	if st := next(t, ch, 10*time.Second); st.GetStatus() != refunded {
		t.Fatalf("watch without a deadline got %v %q, want REFUNDED", st.GetStatus(), st.GetCustomerId())
	}
}

// TestDuplicateDelivery: the same event delivered again (in a burst,
// concurrently, later, and once past ingress's duplicate window) causes
// each side effect once.
func TestDuplicateDelivery(t *testing.T) {
	s := startStack(t, harness.StackOptions{})
	g := newGen(t)
	b := g.Customer("dup", time.Now().Add(-30*24*time.Hour))
	setup := activeSubscription(b)
	failed, update := renewalFails(b, 30*journey.Day)
	j := build(t, b)
	deliver(t, s, setup...)
	waitStatus(t, s, j.Customer, active, 30*time.Second)

	// The first delivery and three concurrent repeats of each event, as
	// Stripe does when a response is slow.
	answers := make(chan harness.Answer, 8)
	var wg sync.WaitGroup
	for _, e := range []*journey.Event{failed, update} {
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				answers <- s.Driver.Post(context.Background(), e.Raw)
			}()
		}
	}
	wg.Wait()
	close(answers)
	fresh, dups := 0, 0
	for a := range answers {
		if a.Err != nil || a.Status != 200 {
			t.Fatalf("concurrent delivery: %d %v %s", a.Status, a.Err, a.Body)
		}
		if a.Duplicate {
			dups++
		} else {
			fresh++
		}
	}
	if fresh != 2 || dups != 6 {
		t.Fatalf("concurrent deliveries: %d fresh, %d duplicate; want 2 and 6", fresh, dups)
	}
	waitStatus(t, s, j.Customer, pastDue, 30*time.Second)
	testkit.Eventually(t, 60*time.Second, "ticket and alert", func() bool {
		return len(s.Zendesk.Tickets()) == 1 && slackFor(s, failed.ID) == 1
	})
	s.WaitDrained(60 * time.Second)
	hubCalls, zdCalls, slackCalls := s.HubSpot.CallCount(), s.Zendesk.CallCount(), s.Slack.CallCount()

	// Later: Stripe retries after our 200 got lost.
	for range 2 {
		if a := s.Driver.Post(context.Background(), failed.Raw); a.Status != 200 || !a.Duplicate {
			t.Fatalf("late repeat: %d duplicate=%v %s", a.Status, a.Duplicate, a.Body)
		}
	}
	// Past the duplicate window (Stripe retries for three days, JetStream
	// dedupes for two hours): the same event reaches the stream again under
	// another message id, and each consumer's processed_events must stop it.
	ev, err := stripeevent.Normalize(failed.Raw)
	if err != nil {
		t.Fatal(err)
	}
	payload, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	pub := bus.NewPublisher(s.Backfill, nil)
	if res, err := pub.Publish(context.Background(), bus.EventSubject(ev.GetType()), failed.ID+"-after-window", payload, nil); err != nil || res.Duplicate {
		t.Fatalf("publish past the window: %v (duplicate %v)", err, res.Duplicate)
	}
	if n, err := s.StreamMsgs(bus.StreamEvents); err != nil || n != uint64(len(setup)+3) {
		t.Fatalf("stream holds %d messages (%v), want %d: each delivery once, plus the one past the window", n, err, len(setup)+3)
	}
	s.WaitDrained(60 * time.Second)

	if n := s.HubSpot.CallCount(); n != hubCalls {
		t.Errorf("hubspot: %d calls after the repeats, %d before", n, hubCalls)
	}
	if n := s.Zendesk.CallCount(); n != zdCalls || len(s.Zendesk.Tickets()) != 1 {
		t.Errorf("zendesk: %d calls (before %d), %d tickets; want no new call and one ticket", n, zdCalls, len(s.Zendesk.Tickets()))
	}
	if n := s.Slack.CallCount(); n != slackCalls || slackFor(s, failed.ID) != 1 {
		t.Errorf("slack: %d calls (before %d), %d alerts for the failure; want one", n, slackCalls, slackFor(s, failed.ID))
	}
	all := append(setup, failed, update)
	processedOnce(t, s, "billing.processed_events", all...)
	processedOnce(t, s, "crm.processed_events", filter(all, journey.CRMSync)...)
	processedOnce(t, s, "support.processed_events", failed)
	processedOnce(t, s, "support.alerts_sent", failed)
	if n := s.Count(`SELECT count(*) FROM billing.audit_log WHERE event_id = $1`, failed.ID); n != 1 {
		t.Errorf("billing.audit_log: %d rows for the failure, want 1", n)
	}
}

// TestInvalidSignature: every badly signed delivery gets 400 and writes
// nothing anywhere: not the stream, not Postgres, not a vendor.
func TestInvalidSignature(t *testing.T) {
	s := startStack(t, harness.StackOptions{})
	g := newGen(t)
	bad := g.Customer("bad", time.Now().Add(-time.Minute))
	badEvs := purchase(bad, 0, 9900)
	badJ := build(t, bad)
	body := badEvs[1].Raw
	now := time.Now()
	otherSecret := "whsec_" + harness.Random(24)
	tampered := []byte(strings.Replace(string(body), `"amount_total":9900`, `"amount_total":1`, 1))
	if string(tampered) == string(body) {
		t.Fatal("tampering changed nothing")
	}
	cases := []struct {
		name string
		body []byte
		sig  string
	}{
		{"wrong secret", body, stripeevent.Sign(body, otherSecret, now)},
		{"tampered body", tampered, stripeevent.Sign(body, s.Secret, now)},
		{"no signature", body, ""},
		{"malformed header", body, "t=soon,v1=zz"},
		{"stale timestamp", body, stripeevent.Sign(body, s.Secret, now.Add(-10*time.Minute))},
		{"future timestamp", body, stripeevent.Sign(body, s.Secret, now.Add(10*time.Minute))},
	}
	for _, c := range cases {
		a := s.Driver.PostSigned(context.Background(), c.body, c.sig)
		if a.Err != nil || a.Status != 400 {
			t.Errorf("%s: status %d err %v, want 400", c.name, a.Status, a.Err)
		}
		if !strings.Contains(a.Body, "error") {
			t.Errorf("%s: body %q does not say why", c.name, a.Body)
		}
	}
	if n, err := s.StreamMsgs(bus.StreamEvents); err != nil || n != 0 {
		t.Fatalf("stream holds %d messages (%v) after refused deliveries, want 0", n, err)
	}

	// A valid delivery right after goes through, which also proves the
	// checks below look at a working pipeline.
	good := g.Customer("good", time.Now().Add(-time.Minute))
	goodEvs := purchase(good, 0, 1900)
	goodJ := build(t, good)
	deliver(t, s, goodEvs...)
	waitStatus(t, s, goodJ.Customer, active, 30*time.Second)
	s.WaitDrained(60 * time.Second)
	testkit.Eventually(t, 30*time.Second, "the good customer's contact", func() bool { return len(s.HubSpot.ContactsFor(goodJ.Customer)) == 1 })

	if n, err := s.StreamMsgs(bus.StreamEvents); err != nil || n != uint64(len(goodEvs)) {
		t.Errorf("stream holds %d messages (%v), want only the %d valid ones", n, err, len(goodEvs))
	}
	for _, q := range []string{
		`SELECT count(*) FROM billing.processed_events WHERE event_id LIKE $1`,
		`SELECT count(*) FROM billing.customers WHERE id LIKE $1`,
		`SELECT count(*) FROM billing.audit_log WHERE customer_id LIKE $1`,
		`SELECT count(*) FROM crm.processed_events WHERE event_id LIKE $1`,
		`SELECT count(*) FROM crm.customers WHERE customer_id LIKE $1`,
		`SELECT count(*) FROM support.processed_events WHERE event_id LIKE $1`,
	} {
		if n := s.Count(q, "%"+strings.TrimPrefix(badJ.Customer, "cus_")+"%"); n != 0 {
			t.Errorf("%s: %d rows for the refused customer", q, n)
		}
	}
	if n := s.Count(`SELECT count(*) FROM billing.processed_events`); n != len(goodEvs) {
		t.Errorf("billing.processed_events: %d rows, want %d", n, len(goodEvs))
	}
	if _, err := getStatus(s, badJ.Customer); !isNotFound(err) {
		t.Errorf("GetCustomerStatus(refused customer) = %v, want NotFound", err)
	}
	if n := s.HubSpot.CallsMentioning(strings.TrimPrefix(badJ.Customer, "cus_")); n != 0 {
		t.Errorf("hubspot: %d calls about the refused customer", n)
	}
	if n, m := s.Zendesk.CallCount(), s.Slack.CallCount(); n != 0 || m != 0 {
		t.Errorf("zendesk %d calls, slack %d calls; want none", n, m)
	}
}

// TestSlowThirdParties: Zendesk answers in 10 s, HubSpot and Slack in
// 200 ms, and HubSpot fails every call about one customer until told
// otherwise. Webhooks are still acknowledged fast, billing state and alerts
// do not wait for Zendesk, and that customer's retries hold up nobody
// else's CRM sync.
func TestSlowThirdParties(t *testing.T) {
	s := startStack(t, harness.StackOptions{})
	s.Zendesk.SetLatency(10 * time.Second)
	s.HubSpot.SetLatency(200 * time.Millisecond)
	s.Slack.SetLatency(200 * time.Millisecond)
	g := newGen(t)
	now := time.Now()

	type cust struct {
		j      *journey.Journey
		evs    []*journey.Event
		failed *journey.Event
		want   billingv1.BillingStatus
	}
	var cs []*cust
	for _, name := range []string{"slowa", "slowb", "slowc", "slowd"} {
		b := g.Customer(name, now.Add(-30*24*time.Hour))
		evs := activeSubscription(b)
		f, u := renewalFails(b, 30*journey.Day)
		cs = append(cs, &cust{j: build(t, b), evs: append(evs, f, u), failed: f, want: pastDue})
	}
	b := g.Customer("slowe", now.Add(-time.Minute))
	evs := purchase(b, 0, 1200)
	cs = append(cs, &cust{j: build(t, b), evs: evs, want: active})

	stuck := cs[0].j
	key := strings.TrimPrefix(stuck.Customer, "cus_")
	rule := &fakes.Rule{Status: 503, Match: func(_, _ string, body []byte) bool { return strings.Contains(string(body), key) }}
	removeRule := s.HubSpot.AddRule(rule)

	// Deliver everything, customers in parallel, as Stripe would.
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for _, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, e := range c.evs {
				if a := s.Driver.Post(context.Background(), e.Raw); a.Err != nil || a.Status != 200 {
					errs <- e.ID + ": " + a.Body
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Errorf("delivery failed: %s", e)
	}
	st := s.Driver.Stats()
	p := harness.Percentiles(st.AckLatencies, 0.5, 0.99, 1)
	t.Logf("%d webhooks acked in %s: p50 %s p99 %s max %s", st.Accepted, ms(time.Since(start)), ms(p[0]), ms(p[1]), ms(p[2]))
	if p[2] > 2*time.Second {
		t.Errorf("slowest ack %s: ingress must not wait for any vendor", p[2])
	}

	// Billing state: every customer right before Zendesk could have
	// answered a single call.
	for _, c := range cs {
		waitStatus(t, s, c.j.Customer, c.want, 30*time.Second)
	}
	t.Logf("billing state complete %s after the first POST", ms(time.Since(start)))
	// Alerts leave while ticket workers sit in 10 s Zendesk calls.
	for _, c := range cs[:4] {
		testkit.Eventually(t, 30*time.Second, "alert for "+c.j.Customer, func() bool { return slackFor(s, c.failed.ID) == 1 })
		at := s.Slack.ByEvent()[c.failed.ID][0].At
		if d := at.Sub(start); d > 9*time.Second {
			t.Errorf("alert for %s accepted %s after the first POST: it waited behind Zendesk", c.j.Customer, d)
		}
	}
	t.Logf("alerts all accepted %s after the first POST; zendesk calls finished so far: %d", ms(time.Since(start)), s.Zendesk.CallCount())

	// The CRM: everyone else is synced while the stuck customer is still
	// being retried.
	for _, c := range cs[1:] {
		testkit.Eventually(t, 60*time.Second, "CRM contact for "+c.j.Customer, func() bool {
			ct := s.HubSpot.ContactsFor(c.j.Customer)
			return len(ct) == 1 && ct[0].Properties["billing_status"] == canonical.StatusName(c.want)
		})
	}
	testkit.Eventually(t, 60*time.Second, "a retry of the stuck customer", func() bool { return rule.Hits() >= 2 })
	if n := len(s.HubSpot.ContactsFor(stuck.Customer)); n != 0 {
		t.Fatalf("stuck customer has %d contacts while HubSpot refuses it", n)
	}
	t.Logf("other customers synced while %s failed %d times", stuck.Customer, rule.Hits())
	removeRule()
	testkit.Eventually(t, 90*time.Second, "the stuck customer synced after HubSpot recovered", func() bool {
		ct := s.HubSpot.ContactsFor(stuck.Customer)
		return len(ct) == 1 && ct[0].Properties["billing_status"] == "past_due"
	})

	// Tickets: one per failed invoice, despite 10 s per call.
	testkit.Eventually(t, 90*time.Second, "four tickets", func() bool { return len(s.Zendesk.Tickets()) == 4 })
	s.WaitDrained(90 * time.Second)
	seen := map[string]int{}
	for _, tk := range s.Zendesk.Tickets() {
		seen[tk.ExternalID]++
	}
	for _, c := range cs[:4] {
		if seen[c.failed.ID] != 1 {
			t.Errorf("tickets for %s: %d, want 1", c.failed.ID, seen[c.failed.ID])
		}
	}
	if m := s.Zendesk.MaxConcurrent(); m < 2 {
		t.Errorf("zendesk served at most %d call at once: ticket calls ran one after another", m)
	}
	t.Logf("done %s after the first POST (zendesk max concurrent calls %d)", ms(time.Since(start)), s.Zendesk.MaxConcurrent())
}

func filter(evs []*journey.Event, durable string) []*journey.Event {
	var out []*journey.Event
	for _, e := range evs {
		if e.HandledBy(durable) {
			out = append(out, e)
		}
	}
	return out
}
