package canonical_test

import (
	"fmt"
	"time"

	"github.com/launchready/launchready/pkg/canonical"
)

func ExampleDerive() {
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	subs := []canonical.Subscription{
		{ID: "sub_old", Status: "canceled", Created: start},
		{ID: "sub_new", Status: "past_due", Created: start.AddDate(0, 3, 0), UnitAmount: 1200, Interval: "year", Currency: "usd"},
	}
	d := canonical.Derive(subs, nil, canonical.Policy{PastDueEntitled: true})
	fmt.Println(canonical.StatusName(d.Status), d.Entitled, d.Primary.ID, d.MRR, d.Currency)
	// Output: past_due true sub_new 100 usd
}

func ExampleDecideSnapshot() {
	sec := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	stored := canonical.Snapshot{EventID: "evt_1", EventType: "customer.subscription.created", Created: sec, Status: "incomplete"}
	was := "incomplete"
	incoming := canonical.Snapshot{EventID: "evt_2", EventType: "customer.subscription.updated", Created: sec, Status: "active",
		Previous: canonical.Previous{Status: &was}}
	d := canonical.DecideSnapshot(stored, incoming)
	fmt.Println(d.Outcome, d.Reason)
	// Output: apply previous_attributes chain
}
