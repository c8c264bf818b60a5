package catchup

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/natsauth"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/harness/verify"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/journey"
	"github.com/launchready/launchready/test/testkit/stripefake"
)

// journeyDay is a journey day, in seconds, in these tests: a two-month
// journey takes 15 minutes, so fifty customers' journeys, started 15 s
// apart, all fall inside the last hour that `--since 1h` reads.
const journeyDay = 15

// templates are scenario's journeys with every step a number of journey
// days apart. Two of scenario's put hours between steps, which would not
// fit in the hour; they are restated here in days.
func templates() []journey.Template {
	out := slices.Clone(journey.Templates)
	for i, tpl := range out {
		switch tpl.Name {
		case "one-time purchase refunded":
			out[i].Build = purchaseRefunded
		case "trial converts":
			out[i].Build = trialConverts
		}
	}
	return out
}

func purchaseRefunded(b *journey.B) (*journey.Journey, error) {
	pi, ch := b.ID("pi"), b.ID("ch")
	b.CustomerEvent("customer.created", 0)
	b.CheckoutPayment("checkout.session.completed", 1, b.ID("cs"), pi, 2000, "paid")
	b.Charge("charge.succeeded", 1, ch, pi, "", 2000, 0, 0)
	b.PaymentIntent("payment_intent.succeeded", 1, pi, 2000, "succeeded")
	b.Charge("charge.refunded", b.Day, ch, pi, "", 2000, 500, 0)
	b.Charge("charge.refunded", 2*b.Day, ch, pi, "", 2000, 2000, 500)
	b.Refund("refund.created", 2*b.Day, b.ID("re", 2), ch, 1500, "succeeded")
	return b.Build("one-time purchase refunded", journey.Want{Status: journey.StatusRefunded})
}

func trialConverts(b *journey.B) (*journey.Journey, error) {
	sub, in1 := b.ID("sub"), b.ID("in", 1)
	b.CustomerEvent("customer.created", 0)
	b.Subscription("customer.subscription.created", 0, sub, "trialing", journey.SubOpts{Trial: true})
	b.Subscription("customer.subscription.trial_will_end", 11*b.Day, sub, "trialing", journey.SubOpts{Trial: true})
	b.Invoice("invoice.paid", 14*b.Day, in1, sub, b.ID("ch", 1), b.ID("pi", 1), "paid", journey.InvoiceOpts{Attempt: 1})
	b.Subscription("customer.subscription.updated", 14*b.Day, sub, "active", journey.SubOpts{Trial: true, LatestInvoice: in1, Prev: map[string]any{"status": "trialing"}})
	b.CustomerEvent("customer.updated", 15*b.Day)
	return b.Build("trial converts", journey.Want{Status: journey.StatusActive, Entitled: true})
}

// newGen returns a journey generator whose ids start with prefix and a
// fresh tag.
func newGen(t *testing.T, prefix string) *journey.Gen {
	t.Helper()
	dir, err := testkit.FindFixturesDir()
	if err != nil {
		t.Fatal(err)
	}
	g, err := journey.NewGen(dir, prefix+harness.Random(3))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

// outage builds customers' journeys holding total events in all, the
// first customer starting at start and each next one 15 s later, padded
// with the noise a real account sends. It returns the journeys and their
// events in the order Stripe created them.
func outage(t *testing.T, customers, total int, start time.Time) ([]*journey.Journey, []*journey.Event) {
	t.Helper()
	g := newGen(t, "o")
	g.DaySeconds = journeyDay
	tpls := templates()
	var js []*journey.Journey
	var bs []*journey.B
	n := 0
	for i := range customers {
		b := g.Customer(fmt.Sprintf("c%03d", i), start.Add(time.Duration(i)*journeyDay*time.Second))
		j, err := tpls[i%len(tpls)].Build(b)
		if err != nil {
			t.Fatal(err)
		}
		js, bs = append(js, j), append(bs, b)
		n += len(j.Events)
	}
	if n > total {
		t.Fatalf("%d customers make %d events, more than %d", customers, n, total)
	}
	for k := 0; n < total; k, n = k+1, n+1 {
		b := bs[k%customers]
		at := 2*b.Day + 7*(k/customers+1)
		if (k/customers)%2 == 0 {
			b.PaymentMethodAttached(at)
		} else {
			b.CustomerEvent("customer.updated", at)
		}
		if b.Err() != nil {
			t.Fatal(b.Err())
		}
	}
	var evs []*journey.Event
	for _, j := range js {
		evs = append(evs, j.Events...)
	}
	sort.SliceStable(evs, func(a, b int) bool { return evs[a].Created.Before(evs[b].Created) })
	if late := evs[len(evs)-1].Created; late.After(time.Now()) {
		t.Fatalf("the last event is created at %s, in the future", late)
	}
	return js, evs
}

// newStripe serves a fake Stripe API holding evs, and returns it with the
// environment `launchready backfill` needs against it and s.
func newStripe(t *testing.T, s *harness.Stack, evs []*journey.Event) (*stripefake.Server, []string) {
	t.Helper()
	key := "sk_test_" + harness.Random(12)
	fake := stripefake.New(key)
	t.Cleanup(fake.Close)
	for _, e := range evs {
		if err := fake.AddEvent(e.Raw); err != nil {
			t.Fatal(err)
		}
	}
	env := map[string]string{
		"STRIPE_API_KEY":  key,
		"STRIPE_API_BASE": fake.URL(),
		"STRIPE_LIVEMODE": "test",
		"DATABASE_URL":    s.DatabaseURL,
		"LOG_LEVEL":       "warn",
	}
	maps.Copy(env, s.NATS.Env(natsauth.Backfill))
	var list []string
	for _, k := range slices.Sorted(maps.Keys(env)) {
		list = append(list, k+"="+env[k])
	}
	return fake, list
}

// command returns `launchready args...` with only env as its
// environment, in its own process group, killed if the test dies.
func command(ctx context.Context, bin string, env []string, args ...string) (*exec.Cmd, *bytes.Buffer, *bytes.Buffer) {
	cmd := exec.CommandContext(ctx, bin, args...) // #nosec G204 -- the command this repository builds
	cmd.Env = env
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	return cmd, &out, &errs
}

// backfill runs `launchready backfill args...` to its end.
func backfill(t *testing.T, bin string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd, out, errs := command(ctx, bin, env, append([]string{"backfill"}, args...)...)
	err := cmd.Run()
	if err != nil && cmd.ProcessState == nil {
		t.Fatalf("launchready backfill: %v", err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errs.String()
}

// settle waits until every consumer has recorded every event it handles,
// nothing is left in any durable and no event is parked for a charge it
// has not met, then checks that each recorded exactly those events.
func settle(t *testing.T, s *harness.Stack, js []*journey.Journey) {
	t.Helper()
	want := verify.Expected(js)
	tables := []struct{ what, query, durable string }{
		{"billing.processed_events", `SELECT event_id FROM billing.processed_events`, journey.BillingState},
		{"crm.processed_events", `SELECT event_id FROM crm.processed_events`, journey.CRMSync},
		{"support.processed_events", `SELECT event_id FROM support.processed_events WHERE consumer = 'support-notify'`, journey.Tickets},
		{"support.alerts_sent", `SELECT event_id FROM support.alerts_sent`, journey.Alerts},
	}
	var behind []string
	if !testkit.Poll(2*time.Minute, 100*time.Millisecond, func() bool {
		behind = behind[:0]
		for _, tb := range tables {
			n, err := s.CountErr(`SELECT count(*) FROM (` + tb.query + `) q`)
			if err != nil || n < len(want[tb.durable]) {
				behind = append(behind, fmt.Sprintf("%s %d/%d (%v)", tb.what, n, len(want[tb.durable]), err))
			}
		}
		return len(behind) == 0
	}) {
		t.Fatalf("not every event recorded within 2 minutes: %s", strings.Join(behind, "; "))
	}
	s.WaitDrained(time.Minute)
	// billing-state's sweep applies an event parked for a charge it had
	// not met yet once the charge is known.
	if !testkit.Poll(time.Minute, 100*time.Millisecond, func() bool {
		n, err := s.CountErr(`SELECT count(*) FROM billing.unresolved_events WHERE resolved_at IS NULL`)
		return err == nil && n == 0
	}) {
		t.Fatalf("billing.unresolved_events: events still parked a minute after the consumers drained")
	}
	for _, tb := range tables {
		verify.SameSet(t, tb.what, s.Strings(tb.query), want[tb.durable])
	}
}

// customer is everything a customer's events left behind.
type customer struct {
	Status *billingv1.CustomerStatus
	// Contact is the CRM contact's properties; Deals each subscription's
	// deal's, by subscription id.
	Contact string
	Deals   map[string]string
	// Tickets are the Zendesk tickets about the customer, by the support
	// object they are about.
	Tickets map[string]ticket
	// Alerts are the events alerted on.
	Alerts []string
}

// ticket is what a Zendesk ticket shows: Opener is the event that opened
// it, Desc its status, priority, subject, tags and number of comments.
type ticket struct {
	Opener, Status, Desc string
}

// snapshot reads every journey's customer from billing-state (gRPC), the
// fake HubSpot, the fake Zendesk and support.alerts_sent.
func snapshot(t *testing.T, s *harness.Stack, js []*journey.Journey) map[string]*customer {
	t.Helper()
	byID := map[string]*journey.Event{}
	for _, j := range js {
		for _, e := range j.Events {
			byID[e.ID] = e
		}
	}
	out := map[string]*customer{}
	for _, j := range js {
		st, err := verify.Status(s, j.Customer)
		if err != nil {
			t.Fatalf("%s: %v", j.Customer, err)
		}
		c := &customer{Status: st, Deals: map[string]string{}, Tickets: map[string]ticket{}}
		cs := s.HubSpot.ContactsFor(j.Customer)
		if len(cs) != 1 {
			t.Fatalf("hubspot: %d contacts for %s, want 1", len(cs), j.Customer)
		}
		c.Contact = fmt.Sprint(cs[0].Properties)
		for _, sub := range j.Subscriptions {
			ds := s.HubSpot.DealsFor(sub)
			if len(ds) != 1 {
				t.Fatalf("hubspot: %d deals for %s, want 1", len(ds), sub)
			}
			c.Deals[sub] = fmt.Sprint(ds[0].Properties)
		}
		out[j.Customer] = c
	}
	for _, tk := range s.Zendesk.Tickets() {
		e := byID[tk.ExternalID]
		if e == nil {
			t.Fatalf("zendesk ticket %d names unknown event %q", tk.ID, tk.ExternalID)
		}
		c := out[e.Customer]
		if _, dup := c.Tickets[e.TicketObject()]; dup {
			t.Fatalf("zendesk: two tickets about %s", e.TicketObject())
		}
		c.Tickets[e.TicketObject()] = ticket{Opener: tk.ExternalID, Status: tk.Status,
			Desc: fmt.Sprintf("%s %s %q %v %d comments", tk.Status, tk.Priority, tk.Subject, slices.Sorted(slices.Values(tk.Tags)), len(tk.Comments))}
	}
	for _, id := range s.Strings(`SELECT event_id FROM support.alerts_sent`) {
		c := out[byID[id].Customer]
		c.Alerts = append(c.Alerts, id)
	}
	for _, c := range out {
		sort.Strings(c.Alerts)
	}
	return out
}

// compareTickets describes how got's tickets differ from want's: the
// same tickets about the same objects, opened by the same events, in the
// same state.
func compareTickets(want, got *customer) (diffs []string) {
	for _, obj := range slices.Sorted(maps.Keys(want.Tickets)) {
		w := want.Tickets[obj]
		g, ok := got.Tickets[obj]
		switch {
		case !ok:
			diffs = append(diffs, fmt.Sprintf("ticket about %s: %s vs none", obj, w.Desc))
		case g.Opener != w.Opener || g.Desc != w.Desc:
			diffs = append(diffs, fmt.Sprintf("ticket about %s: opened by %s, %s vs opened by %s, %s", obj, w.Opener, w.Desc, g.Opener, g.Desc))
		}
	}
	for _, obj := range slices.Sorted(maps.Keys(got.Tickets)) {
		if _, ok := want.Tickets[obj]; !ok {
			diffs = append(diffs, fmt.Sprintf("ticket about %s: none vs %s", obj, got.Tickets[obj].Desc))
		}
	}
	return diffs
}

// compare reports every customer whose state in got differs from want
// (webhooks vs backfill).
func compare(t *testing.T, js []*journey.Journey, want, got map[string]*customer) {
	t.Helper()
	differ, tickets := 0, 0
	for _, j := range js {
		w, g := want[j.Customer], got[j.Customer]
		var d []string
		if s := verify.Diff(w.Status, g.Status); s != "" {
			d = append(d, "status: "+s)
		}
		if w.Contact != g.Contact {
			d = append(d, fmt.Sprintf("CRM contact: %s vs %s", w.Contact, g.Contact))
		}
		if fmt.Sprint(w.Deals) != fmt.Sprint(g.Deals) {
			d = append(d, fmt.Sprintf("CRM deals: %v vs %v", w.Deals, g.Deals))
		}
		d = append(d, compareTickets(w, g)...)
		tickets += len(w.Tickets)
		if fmt.Sprint(w.Alerts) != fmt.Sprint(g.Alerts) {
			d = append(d, fmt.Sprintf("alerts: %v vs %v", w.Alerts, g.Alerts))
		}
		if len(d) > 0 {
			differ++
			t.Errorf("%s (%s): webhooks vs backfill:\n  %s", j.Customer, j.Name, strings.Join(d, "\n  "))
		}
	}
	if differ > 0 {
		t.Errorf("%d of %d customers differ from the run that had the webhooks", differ, len(js))
	}
	t.Logf("%d customers compared, %d tickets of the webhook run each matched by the backfill's", len(js), tickets)
}
