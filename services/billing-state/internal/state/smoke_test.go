package state_test

import (
	"testing"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/test/testkit/journey"
)

// smokeInvoice is a failed invoice of a smoke test run, as `launchready
// smoke --via webhook` sends it: the run in the invoice's metadata.
func smokeInvoice(jb *journey.Builder, at int, run string) *billingv1.BillingEvent {
	return jb.Event("stripe-ruby-mock/invoice.payment_failed.json", "invoice.payment_failed", at, map[string]any{
		"id": journey.ID("in"), "customer": jb.CustomerID, "status": "open", "billing_reason": "subscription_cycle",
		"metadata.launchready_smoke": run, "created": jb.Base.Unix() + int64(at),
	}, nil)
}

// A smoke test's event marks its customer, on the single and the batched
// apply path; the mark stays through later unmarked events and shows in the
// customer's status. Real customers carry no mark.
func TestSmokeEventMarksItsCustomer(t *testing.T) {
	b := setup(t)

	single := journey.New(t, journey.ID("cus_lrsmoke"), base)
	ev := smokeInvoice(single, 1, "run_single")
	if ev.GetSmokeRun() != "run_single" {
		t.Fatalf("normalised smoke_run = %q, want run_single", ev.GetSmokeRun())
	}
	b.apply(t, ev)
	b.apply(t, single.Customer("customer.updated", 2))
	if got := b.status(t, single.CustomerID).GetSmokeRun(); got != "run_single" {
		t.Errorf("single apply: smoke_run = %q, want run_single after an unmarked customer.updated", got)
	}

	batched := journey.New(t, journey.ID("cus_lrsmoke"), base)
	real := journey.New(t, journey.ID("cus"), base)
	items := []state.BatchItem{
		{Event: batched.Customer("customer.created", 0)},
		{Event: smokeInvoice(batched, 1, "run_batch")},
		{Event: real.Customer("customer.created", 0)},
		{Event: real.Invoice("invoice.payment_failed", 1, journey.ID("in"), "", "", "", "open")},
	}
	for i, res := range b.store.ApplyBatch(b.ctx, items) {
		if res.Err != nil {
			t.Fatalf("batch item %d: %v", i, res.Err)
		}
	}
	if got := b.status(t, batched.CustomerID).GetSmokeRun(); got != "run_batch" {
		t.Errorf("batched apply: smoke_run = %q, want run_batch", got)
	}
	if got := b.status(t, real.CustomerID).GetSmokeRun(); got != "" {
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
