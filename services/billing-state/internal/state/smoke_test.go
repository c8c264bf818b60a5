package state_test

import (
	"testing"

	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/test/testkit/journey"
)

// A smoke test's event marks its customer, on the single and the batched
// apply path; the mark stays through later unmarked events and shows in the
// customer's status. Real customers carry no mark.
func TestSmokeEventMarksItsCustomer(t *testing.T) {
	b := setup(t)

	single := journey.New(t, journey.ID("cus_lrsmoke"), base)
	ev := single.SmokeInvoice(1, journey.ID("in"), "run_single")
	if ev.GetSmokeRun() != "run_single" {
		t.Fatalf("normalised smoke_run = %q, want run_single", ev.GetSmokeRun())
	}
	b.apply(t, ev)
	b.apply(t, single.Customer("customer.updated", 2))
	if got := b.status(t, single.CustomerID).GetSmokeRun(); got != "run_single" {
		t.Errorf("single apply: smoke_run = %q, want run_single after an unmarked customer.updated", got)
	}

	batched := journey.New(t, journey.ID("cus_lrsmoke"), base)
	plain := journey.New(t, journey.ID("cus"), base)
	items := []state.BatchItem{
		{Event: batched.Customer("customer.created", 0)},
		{Event: batched.SmokeInvoice(1, journey.ID("in"), "run_batch")},
		{Event: plain.Customer("customer.created", 0)},
		{Event: plain.Invoice("invoice.payment_failed", 1, journey.ID("in"), "", "", "", "open")},
	}
	for i, res := range b.store.ApplyBatch(b.ctx, items) {
		if res.Err != nil {
			t.Fatalf("batch item %d: %v", i, res.Err)
		}
	}
	if got := b.status(t, batched.CustomerID).GetSmokeRun(); got != "run_batch" {
		t.Errorf("batched apply: smoke_run = %q, want run_batch", got)
	}
	if got := b.status(t, plain.CustomerID).GetSmokeRun(); got != "" {
		t.Errorf("real customer: smoke_run = %q, want none", got)
	}
	var stored string
	if err := b.pool.QueryRow(b.ctx, `SELECT smoke_run FROM billing.customers WHERE id = $1`, batched.CustomerID).Scan(&stored); err != nil {
		t.Fatal(err)
	}
	if stored != "run_batch" {
		t.Errorf("customers.smoke_run = %q, want run_batch", stored)
	}
}
