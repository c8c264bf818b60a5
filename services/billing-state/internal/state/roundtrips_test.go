package state_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/test/testkit/journey"
)

// TestApplyRoundTrips pins what one event costs in round trips to Postgres.
// At a backlog's rate the time is in round trips and commits, not in the
// statements, so a change that adds one shows here before it shows in a
// benchmark on a busy machine.
func TestApplyRoundTrips(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	trips := &pgtest.RoundTrips{}
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t), pg.WithIndexPlans(), pg.WithTracer(trips))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := state.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	store := state.New(pool, state.Options{Policy: canonical.DefaultPolicy()})
	jb := journey.New(t, "cus_Trips1", base)

	// cost applies ev alone and returns the round trips it took.
	cost := func(ev *billingv1.BillingEvent, want state.Outcome) int64 {
		t.Helper()
		before := trips.Count()
		res, err := store.ApplyEvent(ctx, ev, state.ApplyOptions{ParkUnresolved: true})
		if err != nil || res.Outcome != want {
			t.Fatalf("%s: %+v %v; want %s", ev.GetType(), res, err, want)
		}
		return trips.Count() - before
	}
	created := jb.Subscription("customer.subscription.created", 0, "sub_Trips1", "active", false, nil)
	alone := []struct {
		name string
		ev   *billingv1.BillingEvent
		want state.Outcome
		// trips: three for most events: BEGIN with the record and the
		// lock; the purchase facts (and parked events) for the derivation;
		// the writes with COMMIT. An invoice's conditional write waits for
		// its answer (one more); a dispute looks up its charge's customer
		// and then locks it (two more, one when it is parked instead); a
		// duplicate stops after the record.
		trips int64
	}{
		{"first subscription event", created, state.OutcomeApplied, 3},
		{"subscription update", jb.Subscription("customer.subscription.updated", 10, "sub_Trips1", "past_due", false, nil), state.OutcomeApplied, 3},
		{"duplicate", created, state.OutcomeDuplicate, 2},
		{"charge that teaches its customer", jb.Charge("charge.succeeded", 20, "ch_Trips1", "pi_Trips1", 1500, 0, "succeeded"), state.OutcomeApplied, 3},
		{"invoice", jb.Invoice("invoice.paid", 30, "in_Trips1", "sub_Trips1", "ch_Trips1", "pi_Trips1", "paid"), state.OutcomeApplied, 4},
		{"dispute found through its charge", jb.Dispute("charge.dispute.created", 40, "dp_Trips1", "ch_Trips1", "needs_response"), state.OutcomeApplied, 5},
		{"dispute of an unknown charge, parked", jb.Dispute("charge.dispute.created", 50, "dp_Trips2", "ch_Unknown", "needs_response"), state.OutcomeUnresolved, 3},
	}
	for _, c := range alone {
		if got := cost(c.ev, c.want); got != c.trips {
			t.Errorf("%s: %d round trips, want %d", c.name, got, c.trips)
		}
	}

	// A batch of events that name their customers shares one transaction:
	// BEGIN with the records, locks and reads of every customer, and the
	// writes with COMMIT. An event that teaches a charge's customer adds
	// one, to claim the events parked for that charge.
	customers := make([]*journey.Builder, 4)
	for i := range customers {
		customers[i] = journey.New(t, fmt.Sprintf("cus_TripsBatch%d", i), base)
	}
	batch := func(name string, want int64, event func(i int, c *journey.Builder) *billingv1.BillingEvent) {
		t.Helper()
		items := make([]state.BatchItem, 0, 16)
		for i := range cap(items) {
			items = append(items, state.BatchItem{Event: event(i, customers[i%len(customers)])})
		}
		before := trips.Count()
		for i, r := range store.ApplyBatch(ctx, items) {
			if r.Err != nil || r.Result.Outcome != state.OutcomeApplied {
				t.Fatalf("%s, item %d: %+v %v", name, i, r.Result, r.Err)
			}
		}
		if got := trips.Count() - before; got != want {
			t.Errorf("%s: %d round trips, want %d", name, got, want)
		}
	}
	batch("a batch of 16 subscription updates", 2, func(i int, c *journey.Builder) *billingv1.BillingEvent {
		return c.Subscription("customer.subscription.updated", i+1, "sub_"+c.CustomerID, "active", false, nil)
	})
	batch("a batch of 12 subscription updates and 4 charges", 6, func(i int, c *journey.Builder) *billingv1.BillingEvent {
		if i%4 == 1 {
			return c.Charge("charge.succeeded", 100+i, fmt.Sprintf("ch_TripsBatch%d", i), "", 1500, 0, "succeeded")
		}
		return c.Subscription("customer.subscription.updated", 100+i, "sub_"+c.CustomerID, "active", false, nil)
	})
}
