package chaos

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/harness/scenario"
	"github.com/launchready/launchready/test/harness/verify"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/journey"
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

	dir, err := testkit.FindFixturesDir()
	if err != nil {
		t.Fatal(err)
	}
	g, err := journey.NewGen(dir, "k"+harness.Random(3))
	if err != nil {
		t.Fatal(err)
	}
	// A journey day is an hour: two months of a customer's life fit in the
	// last three days, as a burst of live traffic, so support-notify treats
	// every problem as current (it ignores events older than four days).
	g.DaySeconds = 3600
	journeys, err := scenario.Mix(g, customers, events, time.Now().Add(-72*time.Hour))
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
	var fs verify.Faults
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
	for _, w := range fs.All() {
		t.Logf("fault %-28s at +%s for %s", w.Name, w.Start.Sub(t0).Round(time.Millisecond), w.End.Sub(w.Start).Round(time.Millisecond))
	}
	// Ingress re-sends a publish that meets the restart until its deadline,
	// so a short restart may refuse nothing: its retries show it bit.
	retries, err := s.MetricSum("ingress", "lr_publish_retries_total")
	if err != nil {
		t.Errorf("ingress metrics: %v", err)
	}
	t.Logf("ingress: %v publish attempts sent again", retries)
	if st.Statuses[503] == 0 && st.NetErrors == 0 && retries == 0 {
		t.Errorf("no delivery was refused or retried during the nats-server restart: the fault did not bite")
	}

	// ---- Recovery: every service back, every consumer caught up.
	t0 = time.Now()
	for _, name := range harness.Services {
		if err := s.ReadyErr(name, 60*time.Second); err != nil {
			t.Fatalf("after the faults: %v", err)
		}
	}
	want := verify.Expected(journeys)
	progress := []struct {
		what, query string
		want        int
	}{
		{"billing.processed_events", `SELECT count(*) FROM billing.processed_events`, len(want[journey.BillingState])},
		{"crm.processed_events", `SELECT count(*) FROM crm.processed_events`, len(want[journey.CRMSync])},
		{"support.processed_events", `SELECT count(*) FROM support.processed_events WHERE consumer = 'support-notify'`, len(want[journey.Tickets])},
		{"support.alerts_sent", `SELECT count(*) FROM support.alerts_sent`, len(want[journey.Alerts])},
	}
	var behind []string
	if !testkit.Poll(3*time.Minute, 200*time.Millisecond, func() bool {
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
	testkit.Poll(time.Minute, 200*time.Millisecond, func() bool {
		n, err := s.CountErr(`SELECT count(*) FROM billing.unresolved_events WHERE resolved_at IS NULL`)
		return err == nil && n == 0
	})
	phase("recovery", t0)
	for name, p := range s.Procs {
		t.Logf("%-15s starts %d, unplanned exits %d", name, p.Starts(), p.Crashes())
	}

	// ---- Checks.
	t0 = time.Now()
	byID := map[string]*journey.Event{}
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
	verify.SameSet(t, "billing.processed_events", s.Strings(`SELECT event_id FROM billing.processed_events`), want[journey.BillingState])
	verify.SameSet(t, "crm.processed_events", s.Strings(`SELECT event_id FROM crm.processed_events`), want[journey.CRMSync])
	verify.SameSet(t, "support.processed_events", s.Strings(`SELECT event_id FROM support.processed_events WHERE consumer = 'support-notify'`), want[journey.Tickets])
	verify.SameSet(t, "support.alerts_sent", s.Strings(`SELECT event_id FROM support.alerts_sent`), want[journey.Alerts])
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
	verify.CheckCRM(t, s, journeys)

	// Tickets: at most one per support object, exactly one where nothing
	// resolved the problem, and Zendesk agrees with support.tickets.
	verify.CheckTickets(t, s, journeys, byID, fs.All())

	// Alerts: every alert sent; a second copy only where a crash or the
	// database cut fell between Slack's answer and the record (the risk
	// support-notify documents).
	verify.CheckAlerts(t, s, want[journey.Alerts], fs.All())
	phase("checks", t0)

	// ---- The in-order reference: the same events, in Stripe's order, one
	// at a time, through a fresh billing-state.
	t0 = time.Now()
	ref := verify.Reference(t, journeys)
	phase("reference run", t0)
	t0 = time.Now()
	verify.CompareToReference(t, s, journeys, ref)
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
func breakThings(ctx context.Context, s *harness.Stack, done *atomic.Int64, total int, fs *verify.Faults) error {
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
		w := verify.Window{Name: "kill -9 " + strings.Join(names, "+"), Start: time.Now()}
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
		w.End = time.Now()
		fs.Add(w)
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
	w := verify.Window{Name: "restart nats-server", Start: time.Now()}
	if err := s.NATS.Restart(); err != nil {
		return err
	}
	w.End = time.Now()
	fs.Add(w)
	if err := at(0.70); err != nil {
		return err
	}
	w = verify.Window{Name: "cut the database off", Start: time.Now()}
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
	w.End = time.Now()
	fs.Add(w)
	return kill(0.85, "billing-state", "crm-sync", "support-notify")
}
