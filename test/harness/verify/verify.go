// Package verify holds the checks the process-level runs (test/chaos,
// test/cluster) make after their faults: every event recorded once by
// each consumer that handles it, each side effect once in the fakes'
// records, and every customer's status equal to an in-order reference run
// of the same events through a fresh single-node stack.
package verify

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/harness/scenario"
	"github.com/launchready/launchready/test/testkit/fakes"
	"github.com/launchready/launchready/test/testkit/journey"
)

// Window is one fault: what was done, when it began and when it ended.
type Window struct {
	Name       string
	Start, End time.Time
}

// Faults records the faults of a run, from any goroutine.
type Faults struct {
	mu sync.Mutex
	ws []Window
}

// Add records w.
func (f *Faults) Add(w Window) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ws = append(f.ws, w)
}

// All returns the faults recorded so far.
func (f *Faults) All() []Window {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Window(nil), f.ws...)
}

// Expected lists, per durable, the event ids it must record.
func Expected(js []*journey.Journey) map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for _, d := range []string{journey.BillingState, journey.CRMSync, journey.Tickets, journey.Alerts} {
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

// SameSet checks that got holds each id of want exactly once, and nothing else.
func SameSet(t *testing.T, what string, got []string, want map[string]bool) {
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
		t.Errorf("%s: %d rows for %d Expected events: missing %d %v, unexpected %d %v, repeated %d %v",
			what, len(got), len(want), len(missing), head(missing), len(extra), head(extra), len(twice), head(twice))
	}
}

func head(ss []string) []string {
	if len(ss) > 8 {
		return ss[:8]
	}
	return ss
}

// CheckCRM checks the fake HubSpot: one contact per customer, one deal per
// subscription, each deal on its customer's contact.
func CheckCRM(t *testing.T, s *harness.Stack, js []*journey.Journey) {
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

// CheckTickets checks the fake Zendesk: at most one ticket per support
// object, exactly one where nothing resolved the problem, and Zendesk and
// support.tickets agreeing.
func CheckTickets(t *testing.T, s *harness.Stack, js []*journey.Journey, byID map[string]*journey.Event, ws []Window) {
	t.Helper()
	perObject := map[string][]fakes.ZendeskTicket{}
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
				desc = append(desc, fmt.Sprintf("ticket %d opened %s by %s (%s), Status %s, in support.tickets %v, %d comments",
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

func faultList(ws []Window) string {
	var out []string
	for _, w := range ws {
		out = append(out, fmt.Sprintf("%s %s-%s", w.Name, w.Start.Format("15:04:05.000"), w.End.Format("15:04:05.000")))
	}
	return strings.Join(out, "; ")
}

// CheckAlerts checks the fake Slack: every alert sent, a second copy only
// where a crash or a database cut fell between Slack's answer and the record.
func CheckAlerts(t *testing.T, s *harness.Stack, want map[string]bool, ws []Window) {
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
			if (strings.Contains(w.Name, "support-notify") || strings.Contains(w.Name, "database")) &&
				!first.After(w.End) && !last.Before(w.Start) {
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

// Reference runs the events in order through a fresh nats-server and
// billing-state with one worker, and returns every customer's status.
func Reference(t *testing.T, js []*journey.Journey) map[string]*billingv1.CustomerStatus {
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
		st, err := Status(ref, j.Customer)
		if err != nil {
			t.Fatalf("Reference %s: %v", j.Customer, err)
		}
		out[j.Customer] = st
	}
	return out
}

// Status reads a customer's status from the stack's billing-state.
func Status(s *harness.Stack, cus string) (*billingv1.CustomerStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Status.GetCustomerStatus(ctx, &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: cus}})
}

// Diff compares what a customer's billing state says, not when it was
// written: last_event_id and updated_at legitimately depend on arrival.
func Diff(a, b *billingv1.CustomerStatus) string {
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

// CompareToReference checks every journey's customer in s against the
// in-order reference run ref: the same billing state, the state the
// journey means, and the CRM showing that status. It returns how many
// customers differ.
func CompareToReference(t *testing.T, s *harness.Stack, journeys []*journey.Journey, ref map[string]*billingv1.CustomerStatus) int {
	t.Helper()
	mismatches := 0
	for _, j := range journeys {
		got, err := Status(s, j.Customer)
		if err != nil {
			t.Errorf("%s: %v", j.Customer, err)
			continue
		}
		r := ref[j.Customer]
		if d := Diff(got, r); d != "" {
			mismatches++
			if mismatches <= 10 {
				t.Errorf("%s (%s): the run differs from the in-order run: %s", j.Customer, j.Name, d)
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
	return mismatches
}
