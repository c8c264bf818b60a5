package catchup

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/harness/verify"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/journey"
)

// listed are the kinds of object `backfill --objects` lists.
var listed = map[string]bool{"customer": true, "subscription": true, "invoice": true, "checkout.session": true, "charge": true, "refund": true, "dispute": true}

// TestObjectsRestoreHistoryOlderThanEvents: every journey happened more
// than a year ago, so Stripe has none of its events left, only its
// objects as they are now. `launchready backfill --objects` (the built
// command) restores each customer's status from them, canceled
// subscriptions included, and the CRM with it, and opens no ticket and
// sends no alert: history is not news. A second run publishes nothing.
func TestObjectsRestoreHistoryOlderThanEvents(t *testing.T) {
	harness.Binaries(t)
	bin := harness.Launchready(t)
	g := newGen(t, "h")
	var js []*journey.Journey
	for i := range 2 * len(journey.Templates) {
		tpl := journey.Templates[i%len(journey.Templates)]
		j, err := tpl.Build(g.Customer(fmt.Sprintf("c%02d", i), time.Now().Add(-400*24*time.Hour)))
		if err != nil {
			t.Fatal(err)
		}
		js = append(js, j)
	}
	s := harness.StartStack(t, harness.StackOptions{LogLevel: "warn"})
	fake, env := newStripe(t, s, nil)
	// Stripe's objects now: the last state each journey's events carried.
	objects := 0
	for _, j := range js {
		last := map[string][]byte{}
		var order []string
		for _, e := range j.Events {
			var ev struct {
				Data struct {
					Object json.RawMessage `json:"object"`
				} `json:"data"`
			}
			var head struct{ ID, Object string }
			if err := json.Unmarshal(e.Raw, &ev); err != nil || json.Unmarshal(ev.Data.Object, &head) != nil {
				t.Fatalf("event %s: %v", e.ID, err)
			}
			if !listed[head.Object] {
				continue
			}
			if _, seen := last[head.ID]; !seen {
				order = append(order, head.ID)
			}
			last[head.ID] = ev.Data.Object
		}
		for _, id := range order {
			if err := fake.PutObject(last[id]); err != nil {
				t.Fatal(err)
			}
			objects++
		}
	}

	code, out, errs := backfill(t, bin, env, "--objects")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("read %d objects", objects)) {
		t.Fatalf("backfill --objects: exit %d\n%s%s", code, out, errs)
	}
	t.Logf("%d journeys, %d objects\n%s", len(js), objects, out)
	for _, r := range fake.Requests() {
		if r.Path == "/v1/subscriptions" && r.Query.Get("status") != "all" {
			t.Fatalf("subscriptions listed without status=all: %v", r.Query)
		}
	}
	n, err := s.StreamMsgs("BILLING_EVENTS")
	if err != nil || n == 0 {
		t.Fatalf("BILLING_EVENTS holds %d messages (%v)", n, err)
	}
	if !testkit.Poll(2*time.Minute, 100*time.Millisecond, func() bool {
		done, err := s.CountErr(`SELECT count(*) FROM billing.processed_events`)
		return err == nil && uint64(done) >= n // #nosec G115 -- a few dozen
	}) {
		t.Fatalf("billing-state did not apply the %d snapshots", n)
	}
	s.WaitDrained(time.Minute)

	canceled := 0
	for _, j := range js {
		st, err := verify.Status(s, j.Customer)
		if err != nil {
			t.Errorf("%s (%s): %v", j.Customer, j.Name, err)
			continue
		}
		if st.GetStatus() != j.Want.Status || st.GetEntitled() != j.Want.Entitled || st.GetDisputeOpen() != j.Want.DisputeOpen {
			t.Errorf("%s (%s): restored %v entitled=%v dispute_open=%v, the journey ends %v entitled=%v dispute_open=%v",
				j.Customer, j.Name, st.GetStatus(), st.GetEntitled(), st.GetDisputeOpen(), j.Want.Status, j.Want.Entitled, j.Want.DisputeOpen)
		}
		if j.Want.Status == journey.StatusCanceled {
			canceled++
		}
		cs := s.HubSpot.ContactsFor(j.Customer)
		if len(cs) != 1 || cs[0].Properties["billing_status"] != canonical.StatusName(j.Want.Status) {
			var got []map[string]string
			for _, c := range cs {
				got = append(got, c.Properties)
			}
			t.Errorf("%s (%s): CRM contacts %v, want one with billing_status %s", j.Customer, j.Name, got, canonical.StatusName(j.Want.Status))
		}
	}
	if canceled == 0 {
		t.Fatal("no journey ends canceled: the canceled subscriptions were not exercised")
	}
	if n := len(s.Zendesk.Tickets()); n != 0 || s.Zendesk.CallCount() != 0 {
		t.Errorf("zendesk: %d tickets, %d calls; snapshots open none", n, s.Zendesk.CallCount())
	}
	if n := s.Slack.CallCount(); n != 0 {
		t.Errorf("slack: %d calls; snapshots alert nobody", n)
	}

	before := count(t, s)
	code, out, errs = backfill(t, bin, env, "--objects")
	if code != 0 || !strings.Contains(out, "0 published") {
		t.Fatalf("second backfill --objects: exit %d\n%s%s", code, out, errs)
	}
	s.WaitDrained(time.Minute)
	unchanged(t, s, before, "a second backfill --objects")
}
