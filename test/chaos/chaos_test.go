package chaos

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/fakes"
	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/harness/scenario"
)

const (
	customers   = 200
	events      = 2000
	dupFraction = 0.10
	// rate paces the deliveries so the faults land while events flow.
	rate = 50 // deliveries per second
)

// Consumer settings for a bounded run: redeliveries after a kill come
// after 5 s instead of 30 s, retries back off to 2 s instead of 5 min, and
// the delivery budget is raised so no outage inside the run can push an
// event into the dead-letter stream (which would count as lost below).
var chaosEnv = map[string]string{
	"CONSUMER_ACK_WAIT":     "5s",
	"CONSUMER_BACKOFF_BASE": "200ms",
	"CONSUMER_BACKOFF_MAX":  "2s",
	"CONSUMER_MAX_DELIVER":  "100",
	"PUBLISH_TIMEOUT":       "2s",
}

type window struct {
	name       string
	start, end time.Time
}

type faults struct {
	mu sync.Mutex
	ws []window
}

func (f *faults) add(w window) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ws = append(f.ws, w)
}

func (f *faults) all() []window {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]window(nil), f.ws...)
}

// TestChaos is the whole run; its phases log their timings.
func TestChaos(t *testing.T) {
	began := time.Now()
	phase := func(name string, since time.Time) {
		t.Logf("phase %-28s %8s", name, time.Since(since).Round(time.Millisecond))
	}

	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("LR_CHAOS_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("LR_CHAOS_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("shuffle seed %d (LR_CHAOS_SEED=%d reproduces the order)", seed, seed)

	dir, err := scenario.FixturesDir()
	if err != nil {
		t.Fatal(err)
	}
	g, err := scenario.NewGen(dir, "k"+harness.Random(3))
	if err != nil {
		t.Fatal(err)
	}
	// A journey day is an hour: two months of a customer's life fit in the
	// last three days, as a burst of live traffic, so support-notify treats
	// every problem as current (it ignores events older than four days).
	g.DaySeconds = 3600
	journeys, err := g.Mix(customers, events, time.Now().Add(-72*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	deliveries := scenario.Shuffle(journeys, dupFraction, seed)

	t0 := time.Now()
	s := harness.StartStack(t, harness.StackOptions{Env: chaosEnv, Supervise: true})
	// Vendors take a little while, half before acting and half after, so
	// a kill -9 lands mid-call often: the redelivery must then find the
	// ticket by its Idempotency-Key and the contact by its unique property.
	s.HubSpot.SetLatency(40 * time.Millisecond)
	s.Zendesk.SetLatency(300 * time.Millisecond)
	s.Slack.SetLatency(100 * time.Millisecond)
	phase("stack up", t0)

	// ---- Deliver while breaking things.
	t0 = time.Now()
	var done atomic.Int64
	var fs faults
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	faultErr := make(chan error, 1)
	go func() { faultErr <- breakThings(ctx, s, &done, len(deliveries), &fs) }()
	failures := deliver(ctx, s, deliveries, &done)
	phase("delivery", t0)
	if err := <-faultErr; err != nil {
		t.Fatalf("fault injection: %v", err)
	}
	for _, f := range failures {
		t.Errorf("delivery: %s", f)
	}
	if len(failures) > 0 {
		t.FailNow()
	}
	st := s.Driver.Stats()
	p := harness.Percentiles(st.AckLatencies, 0.5, 0.99)
	t.Logf("driver: %d attempts, %d accepted (%d duplicate), statuses %v, network errors %d, ack p50 %s p99 %s",
		st.Attempts, st.Accepted, st.Duplicates, st.Statuses, st.NetErrors, p[0], p[1])
	for _, w := range fs.all() {
		t.Logf("fault %-28s at +%s for %s", w.name, w.start.Sub(t0).Round(time.Millisecond), w.end.Sub(w.start).Round(time.Millisecond))
	}
	if st.Statuses[503] == 0 && st.NetErrors == 0 {
		t.Errorf("no delivery was refused during the nats-server restart: the fault did not bite")
	}

	// ---- Recovery: every service back, every consumer caught up.
	t0 = time.Now()
	for _, name := range harness.Services {
		if err := s.ReadyErr(name, 60*time.Second); err != nil {
			t.Fatalf("after the faults: %v", err)
		}
	}
	want := expected(journeys)
	progress := []struct {
		what, query string
		want        int
	}{
		{"billing.processed_events", `SELECT count(*) FROM billing.processed_events`, len(want[scenario.BillingState])},
		{"crm.processed_events", `SELECT count(*) FROM crm.processed_events`, len(want[scenario.CRMSync])},
		{"support.processed_events", `SELECT count(*) FROM support.processed_events WHERE consumer = 'support-notify'`, len(want[scenario.Tickets])},
		{"support.alerts_sent", `SELECT count(*) FROM support.alerts_sent`, len(want[scenario.Alerts])},
	}
	var behind []string
	if !harness.Poll(3*time.Minute, 200*time.Millisecond, func() bool {
		behind = behind[:0]
		for _, p := range progress {
			n, err := s.CountErr(p.query)
			if err != nil || n < p.want {
				behind = append(behind, fmt.Sprintf("%s %d/%d (%v)", p.what, n, p.want, err))
			}
		}
		return len(behind) == 0
	}) {
		for _, d := range harness.Durables {
			n, err := s.ConsumerBacklog(d)
			behind = append(behind, fmt.Sprintf("%s backlog %d (%v)", d, n, err))
		}
		t.Fatalf("not every event recorded 3 minutes after the faults: %s", strings.Join(behind, "; "))
	}
	s.WaitDrained(2 * time.Minute)
	// A parked event that its charge's teaching event missed (the two ran
	// side by side) is applied by billing-state's sweep, every 5 s; the
	// checks below say so if it is not.
	harness.Poll(time.Minute, 200*time.Millisecond, func() bool {
		n, err := s.CountErr(`SELECT count(*) FROM billing.unresolved_events WHERE resolved_at IS NULL`)
		return err == nil && n == 0
	})
	phase("recovery", t0)
	for name, p := range s.Procs {
		t.Logf("%-15s starts %d, unplanned exits %d", name, p.Starts(), p.Crashes())
	}

	// ---- Checks.
	t0 = time.Now()
	byID := map[string]*scenario.Event{}
	for _, j := range journeys {
		for _, e := range j.Events {
			byID[e.ID] = e
		}
	}

	// The stream holds every event exactly once; nothing was dead-lettered.
	if n, err := s.StreamMsgs(bus.StreamEvents); err != nil || n != uint64(events) {
		t.Errorf("BILLING_EVENTS holds %d messages (%v), want %d: each event stored once", n, err, events)
	}
	if n, err := s.StreamMsgs(bus.StreamDLQ); err != nil || n != 0 {
		t.Errorf("BILLING_DLQ holds %d messages (%v), want 0", n, err)
	}

	// Each service recorded exactly the events it handles.
	sameSet(t, "billing.processed_events", s.Strings(`SELECT event_id FROM billing.processed_events`), want[scenario.BillingState])
	sameSet(t, "crm.processed_events", s.Strings(`SELECT event_id FROM crm.processed_events`), want[scenario.CRMSync])
	sameSet(t, "support.processed_events", s.Strings(`SELECT event_id FROM support.processed_events WHERE consumer = 'support-notify'`), want[scenario.Tickets])
	sameSet(t, "support.alerts_sent", s.Strings(`SELECT event_id FROM support.alerts_sent`), want[scenario.Alerts])
	if n := s.Count(`SELECT count(*) FROM (SELECT event_id FROM billing.audit_log WHERE actor = 'stripe' GROUP BY event_id HAVING count(*) > 1) d`); n != 0 {
		t.Errorf("billing.audit_log: %d events applied more than once", n)
	}
	if n := s.Count(`SELECT count(*) FROM billing.processed_events WHERE outcome = 'unresolved'`); n != 0 {
		t.Errorf("billing.processed_events: %d events still parked for an unknown charge", n)
	}
	if n := s.Count(`SELECT count(*) FROM billing.unresolved_events WHERE resolved_at IS NULL`); n != 0 {
		t.Errorf("billing.unresolved_events: %d events never applied", n)
	}

	// The CRM: one contact per customer, one deal per subscription, each
	// deal on its customer's contact.
	checkCRM(t, s, journeys)

	// Tickets: at most one per support object, exactly one where nothing
	// resolved the problem, and Zendesk agrees with support.tickets.
	checkTickets(t, s, journeys, byID, fs.all())

	// Alerts: every alert sent; a second copy only where a crash or the
	// database cut fell between Slack's answer and the record (the risk
	// support-notify documents).
	checkAlerts(t, s, want[scenario.Alerts], fs.all())
	phase("checks", t0)

	// ---- The in-order reference: the same events, in Stripe's order, one
	// at a time, through a fresh billing-state.
	t0 = time.Now()
	ref := reference(t, journeys)
	phase("reference run", t0)
	t0 = time.Now()
	mismatches := 0
	for _, j := range journeys {
		got, err := status(s, j.Customer)
		if err != nil {
			t.Errorf("%s: %v", j.Customer, err)
			continue
		}
		r := ref[j.Customer]
		if d := diff(got, r); d != "" {
			mismatches++
			if mismatches <= 10 {
				t.Errorf("%s (%s): chaos run differs from the in-order run: %s", j.Customer, j.Name, d)
			}
		}
		if r.GetStatus() != j.Want.Status || r.GetEntitled() != j.Want.Entitled || r.GetDisputeOpen() != j.Want.DisputeOpen {
			t.Errorf("%s (%s): in-order run ends %v entitled=%v dispute_open=%v, the journey means %v entitled=%v dispute_open=%v",
				j.Customer, j.Name, r.GetStatus(), r.GetEntitled(), r.GetDisputeOpen(), j.Want.Status, j.Want.Entitled, j.Want.DisputeOpen)
		}
		cs := s.HubSpot.ContactsFor(j.Customer)
		if len(cs) == 1 && cs[0].Properties["billing_status"] != canonical.StatusName(r.GetStatus()) {
			t.Errorf("%s (%s): CRM says %s, the in-order run %s", j.Customer, j.Name, cs[0].Properties["billing_status"], canonical.StatusName(r.GetStatus()))
		}
	}
	if mismatches > 0 {
		t.Errorf("%d of %d customers differ from the in-order reference", mismatches, len(journeys))
	}
	phase("compare", t0)
	t.Logf("chaos run total %s", time.Since(began).Round(time.Millisecond))
}

// deliver posts every delivery, paced, from 8 senders; each retries like
// Stripe until 2xx. It returns the deliveries that never got one.
func deliver(ctx context.Context, s *harness.Stack, ds []scenario.Delivery, done *atomic.Int64) []string {
	work := make(chan scenario.Delivery)
	var mu sync.Mutex
	var failures []string
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for d := range work {
				if _, _, err := s.Driver.Deliver(ctx, d.Event.Raw); err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("%s %s: %v", d.Event.ID, d.Event.Type, err))
					mu.Unlock()
				}
				done.Add(1)
			}
		}()
	}
	tick := time.NewTicker(time.Second / rate)
	defer tick.Stop()
	for _, d := range ds {
		select {
		case <-ctx.Done():
		case <-tick.C:
		}
		work <- d
	}
	close(work)
	wg.Wait()
	return failures
}

// breakThings applies the faults as delivery progresses. Each waits for
// its share of the deliveries, so every fault hits a system under load.
func breakThings(ctx context.Context, s *harness.Stack, done *atomic.Int64, total int, fs *faults) error {
	at := func(frac float64) error {
		for float64(done.Load()) < frac*float64(total) {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
		return nil
	}
	hold := func(d time.Duration) error {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(d):
			return nil
		}
	}
	kill := func(frac float64, names ...string) error {
		if err := at(frac); err != nil {
			return err
		}
		w := window{name: "kill -9 " + strings.Join(names, "+"), start: time.Now()}
		for _, n := range names {
			s.Procs[n].Kill()
		}
		if err := hold(2 * time.Second); err != nil {
			return err
		}
		for _, n := range names {
			if err := s.Procs[n].Resume(); err != nil {
				return err
			}
		}
		w.end = time.Now()
		fs.add(w)
		return nil
	}
	if err := kill(0.10, "billing-state"); err != nil {
		return err
	}
	if err := kill(0.25, "crm-sync"); err != nil {
		return err
	}
	if err := kill(0.40, "support-notify"); err != nil {
		return err
	}
	if err := at(0.55); err != nil {
		return err
	}
	w := window{name: "restart nats-server", start: time.Now()}
	if err := s.NATS.Restart(); err != nil {
		return err
	}
	w.end = time.Now()
	fs.add(w)
	if err := at(0.70); err != nil {
		return err
	}
	w = window{name: "cut the database off", start: time.Now()}
	if err := s.CutDatabase(); err != nil {
		return err
	}
	if err := hold(8 * time.Second); err != nil {
		_ = s.RestoreDatabase()
		return err
	}
	if err := s.RestoreDatabase(); err != nil {
		return err
	}
	w.end = time.Now()
	fs.add(w)
	return kill(0.85, "billing-state", "crm-sync", "support-notify")
}

// expected lists, per durable, the event ids it must record.
func expected(js []*scenario.Journey) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, d := range []string{scenario.BillingState, scenario.CRMSync, scenario.Tickets, scenario.Alerts} {
		out[d] = map[string]bool{}
		for _, j := range js {
			for _, e := range j.Events {
				if e.HandledBy(d) {
					out[d][e.ID] = true
				}
			}
		}
	}
	return out
}

func sameSet(t *testing.T, what string, got []string, want map[string]bool) {
	t.Helper()
	seen := map[string]int{}
	for _, id := range got {
		seen[id]++
	}
	var missing, extra, twice []string
	for id := range want {
		if seen[id] == 0 {
			missing = append(missing, id)
		}
	}
	for id, n := range seen {
		if !want[id] {
			extra = append(extra, id)
		}
		if n > 1 {
			twice = append(twice, id)
		}
	}
	if len(missing)+len(extra)+len(twice) > 0 {
		sort.Strings(missing)
		sort.Strings(extra)
		t.Errorf("%s: %d rows for %d expected events: missing %d %v, unexpected %d %v, repeated %d %v",
			what, len(got), len(want), len(missing), head(missing), len(extra), head(extra), len(twice), head(twice))
	}
}

func head(ss []string) []string {
	if len(ss) > 8 {
		return ss[:8]
	}
	return ss
}

func checkCRM(t *testing.T, s *harness.Stack, js []*scenario.Journey) {
	t.Helper()
	subs := 0
	for _, j := range js {
		cs := s.HubSpot.ContactsFor(j.Customer)
		if len(cs) != 1 {
			t.Errorf("hubspot: %d contacts for %s, want 1", len(cs), j.Customer)
			continue
		}
		for _, sub := range j.Subscriptions {
			subs++
			ds := s.HubSpot.DealsFor(sub)
			if len(ds) != 1 {
				t.Errorf("hubspot: %d deals for %s, want 1", len(ds), sub)
				continue
			}
			if a := s.HubSpot.Associated(ds[0].ID); len(a) != 1 || a[0] != cs[0].ID {
				t.Errorf("hubspot: deal %s (%s) associated with %v, want [%s]", ds[0].ID, sub, a, cs[0].ID)
			}
		}
	}
	if n := len(s.HubSpot.Contacts()); n != len(js) {
		t.Errorf("hubspot: %d contacts in all, want %d", n, len(js))
	}
	if n := len(s.HubSpot.Deals()); n != subs {
		t.Errorf("hubspot: %d deals in all, want %d", n, subs)
	}
	t.Logf("hubspot: %d contacts, %d deals, %d calls (%d concurrent at most)", len(s.HubSpot.Contacts()), len(s.HubSpot.Deals()), s.HubSpot.CallCount(), s.HubSpot.MaxConcurrent())
}

func checkTickets(t *testing.T, s *harness.Stack, js []*scenario.Journey, byID map[string]*scenario.Event, ws []window) {
	t.Helper()
	perObject := map[string][]fakes.Ticket{}
	for _, tk := range s.Zendesk.Tickets() {
		e := byID[tk.ExternalID]
		if e == nil {
			t.Errorf("zendesk ticket %d names unknown event %q", tk.ID, tk.ExternalID)
			continue
		}
		perObject[e.TicketObject()] = append(perObject[e.TicketObject()], tk)
	}
	recorded := map[string]bool{}
	for _, id := range s.Strings(`SELECT ticket_id::text FROM support.tickets`) {
		recorded[id] = true
	}
	for obj, tks := range perObject {
		if len(tks) > 1 {
			var desc []string
			for _, tk := range tks {
				desc = append(desc, fmt.Sprintf("ticket %d opened %s by %s (%s), status %s, in support.tickets %v, %d comments",
					tk.ID, tk.CreatedAt.Format("15:04:05.000"), tk.ExternalID, byID[tk.ExternalID].Type, tk.Status,
					recorded[strconv.FormatInt(tk.ID, 10)], len(tk.Comments)))
			}
			t.Errorf("zendesk: %d tickets about %s, want at most 1:\n  %s\n  faults: %s", len(tks), obj, strings.Join(desc, "\n  "), faultList(ws))
		}
	}
	for _, tk := range s.Zendesk.Tickets() {
		if !recorded[strconv.FormatInt(tk.ID, 10)] && tk.Status != "solved" {
			t.Errorf("zendesk ticket %d (opened %s by %s, %s) is open but support-notify has no record of it: nobody will resolve it",
				tk.ID, tk.CreatedAt.Format("15:04:05.000"), tk.ExternalID, byID[tk.ExternalID].Type)
		}
	}
	must := 0
	for _, j := range js {
		for _, obj := range j.MustTicket {
			must++
			if len(perObject[obj]) != 1 {
				t.Errorf("zendesk: %d tickets about %s (%s), want exactly 1: nothing resolved it", len(perObject[obj]), obj, j.Name)
			}
		}
	}
	ids := s.Strings(`SELECT ticket_id::text FROM support.tickets`)
	zd := map[string]bool{}
	for _, tk := range s.Zendesk.Tickets() {
		zd[strconv.FormatInt(tk.ID, 10)] = true
	}
	if len(ids) != len(zd) {
		t.Errorf("support.tickets has %d rows, zendesk %d tickets", len(ids), len(zd))
	}
	for _, id := range ids {
		if !zd[id] {
			t.Errorf("support.tickets names ticket %s that zendesk does not have", id)
		}
	}
	posts, puts, hits := s.Zendesk.Counts()
	t.Logf("zendesk: %d tickets (%d must-have), %d creates (%d answered from the idempotency store), %d updates",
		len(zd), must, posts, hits, puts)
}

func faultList(ws []window) string {
	var out []string
	for _, w := range ws {
		out = append(out, fmt.Sprintf("%s %s-%s", w.name, w.start.Format("15:04:05.000"), w.end.Format("15:04:05.000")))
	}
	return strings.Join(out, "; ")
}

func checkAlerts(t *testing.T, s *harness.Stack, want map[string]bool, ws []window) {
	t.Helper()
	by := s.Slack.ByEvent()
	dups := 0
	for id := range want {
		ms := by[id]
		if len(ms) == 0 {
			t.Errorf("slack: no alert for %s", id)
			continue
		}
		if len(ms) == 1 {
			continue
		}
		dups++
		first, last := ms[0].At, ms[len(ms)-1].At
		explained := false
		for _, w := range ws {
			// The first copy left before the fault ended, the second after
			// it began: a crash or cut between Slack's answer and the record.
			if (strings.Contains(w.name, "support-notify") || strings.Contains(w.name, "database")) &&
				!first.After(w.end) && !last.Before(w.start) {
				explained = true
			}
		}
		if !explained {
			t.Errorf("slack: %d alerts for %s (%s .. %s) with no crash or cut in between", len(ms), id, first.Format(time.StampMilli), last.Format(time.StampMilli))
		}
	}
	for id := range by {
		if !want[id] {
			t.Errorf("slack: alert for %q, which no rule alerts on", id)
		}
	}
	t.Logf("slack: %d alerts for %d alerting events; %d repeated across a crash or the database cut (support-notify's documented risk)",
		len(s.Slack.Messages()), len(want), dups)
}

// reference runs the events in order through a fresh nats-server and
// billing-state with one worker, and returns every customer's status.
func reference(t *testing.T, js []*scenario.Journey) map[string]*billingv1.CustomerStatus {
	t.Helper()
	ref := harness.StartStack(t, harness.StackOptions{
		Services: []string{"billing-state"},
		Env:      map[string]string{"CONSUMER_CONCURRENCY": "1"},
		LogLevel: "warn",
	})
	pub := bus.NewPublisher(ref.Backfill, nil)
	ordered := scenario.InOrder(js)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for _, e := range ordered {
		ev, err := stripeevent.Normalize(e.Raw)
		if err != nil {
			t.Fatalf("normalise %s: %v", e.ID, err)
		}
		if _, err := pub.PublishEvent(ctx, ev); err != nil {
			t.Fatalf("publish %s: %v", e.ID, err)
		}
	}
	ref.WaitDrained(3*time.Minute, "billing-state")
	out := map[string]*billingv1.CustomerStatus{}
	for _, j := range js {
		st, err := status(ref, j.Customer)
		if err != nil {
			t.Fatalf("reference %s: %v", j.Customer, err)
		}
		out[j.Customer] = st
	}
	return out
}

func status(s *harness.Stack, cus string) (*billingv1.CustomerStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Status.GetCustomerStatus(ctx, &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: cus}})
}

// diff compares what a customer's billing state says, not when it was
// written: last_event_id and updated_at legitimately depend on arrival.
func diff(a, b *billingv1.CustomerStatus) string {
	var d []string
	cmp := func(name string, x, y any) {
		if fmt.Sprint(x) != fmt.Sprint(y) {
			d = append(d, fmt.Sprintf("%s %v vs %v", name, x, y))
		}
	}
	cmp("status", a.GetStatus(), b.GetStatus())
	cmp("entitled", a.GetEntitled(), b.GetEntitled())
	cmp("dispute_open", a.GetDisputeOpen(), b.GetDisputeOpen())
	cmp("cancel_at_period_end", a.GetCancelAtPeriodEnd(), b.GetCancelAtPeriodEnd())
	cmp("plan", a.GetPlan(), b.GetPlan())
	cmp("current_period_end", a.GetCurrentPeriodEnd().AsTime(), b.GetCurrentPeriodEnd().AsTime())
	cmp("trial_end", a.GetTrialEnd().AsTime(), b.GetTrialEnd().AsTime())
	cmp("email", a.GetEmail(), b.GetEmail())
	cmp("user_id", a.GetUserId(), b.GetUserId())
	return strings.Join(d, "; ")
}
