package state_test

import (
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/test/testkit/journey"
)

// TestBatchedShuffledDeliveryConverges delivers the shuffled journeys of
// every customer interleaved, as one stream, in batches of random sizes
// applied by four workers at once (so concurrent transactions lock
// overlapping customers), and checks that every customer ends where
// in-order delivery ends and that no event was applied twice.
func TestBatchedShuffledDeliveryConverges(t *testing.T) {
	b := setup(t)
	runs, want := shuffledRuns(t, b, "bat")
	r := rand.New(rand.NewSource(7))
	var stream []*billingv1.BillingEvent
	for _, run := range runs {
		stream = append(stream, run.evs...)
	}
	r.Shuffle(len(stream), func(i, j int) { stream[i], stream[j] = stream[j], stream[i] })
	var batches [][]*billingv1.BillingEvent
	for len(stream) > 0 {
		n := min(len(stream), 1+r.Intn(40))
		batches = append(batches, stream[:n])
		stream = stream[n:]
	}

	var mu sync.Mutex
	var retry []batchItem // unknown charges, delivered again later as the consumer would
	apply := func(its []batchItem) error {
		again, err := applyItems(b, its)
		mu.Lock()
		retry = append(retry, again...)
		mu.Unlock()
		return err
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(batches))
	work := make(chan []batchItem)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for its := range work {
				if err := apply(its); err != nil {
					errs <- err
				}
			}
		}()
	}
	for _, batch := range batches {
		its := make([]batchItem, len(batch))
		for i, ev := range batch {
			its[i] = batchItem{ev: ev, tries: 1}
		}
		work <- its
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// What waited for its charge goes round again, in one batch per round,
	// until it is applied or parked.
	for round := 0; len(retry) > 0; round++ {
		if round > 5 {
			t.Fatalf("%d events still unresolved after 5 rounds", len(retry))
		}
		its := retry
		retry = nil
		if err := apply(its); err != nil {
			t.Fatal(err)
		}
	}
	checkConverged(t, b, runs, want)

	// Exactly once: one audit row per event, duplicates in the same or in
	// concurrent batches included.
	var twice int
	if err := b.store.Pool().QueryRow(b.ctx, `SELECT count(*) FROM (SELECT event_id FROM billing.audit_log
		WHERE customer_id LIKE 'cus_bats%' GROUP BY event_id HAVING count(*) > 1) d`).Scan(&twice); err != nil {
		t.Fatal(err)
	}
	if twice != 0 {
		t.Fatalf("%d events have more than one audit row", twice)
	}
}

// TestApplyBatchIsolatesAFailingEvent puts, between good events, one that
// Go rejects and one whose statement Postgres rejects: each gets its own
// error, the others are applied together, and nothing is lost or doubled.
func TestApplyBatchIsolatesAFailingEvent(t *testing.T) {
	b := setup(t)
	good1 := journey.New(t, "cus_BatGood1", base)
	good2 := journey.New(t, "cus_BatGood2", base)
	bad := journey.New(t, "cus_BatBad1", base)
	nul := journey.New(t, "cus_BatNul1", base)

	first := good1.Subscription("customer.subscription.created", 0, "sub_BatGood1", "active", false, nil)
	malformed := bad.Subscription("customer.subscription.created", 0, "sub_BatBad1", "active", false, nil)
	malformed.RawJson = []byte("{")
	// Text with a NUL byte: Postgres refuses it in the audit row, a
	// statement that travels with the next event's reads.
	refused := nul.Subscription("customer.subscription.created", 0, "sub_BatNul1", "active", false, nil)
	refused.Email = "nul\x00@example.com"
	second := good2.Subscription("customer.subscription.created", 0, "sub_BatGood2", "past_due", false, nil)
	ignored := &billingv1.BillingEvent{EventId: "evt_BatPlan", Type: "plan.created", ObjectType: "plan", CustomerId: "cus_BatGood1"}

	items := []state.BatchItem{{Event: first}, {Event: malformed}, {Event: refused}, {Event: second}, {Event: first}, {Event: ignored}}
	res := b.store.ApplyBatch(b.ctx, items)
	if len(res) != len(items) {
		t.Fatalf("%d results for %d items", len(res), len(items))
	}
	if res[0].Err != nil || res[0].Result.Outcome != state.OutcomeApplied || !res[0].Result.StatusChanged {
		t.Fatalf("first good event: %+v", res[0])
	}
	if !errors.Is(res[1].Err, state.ErrMalformed) {
		t.Fatalf("malformed event: %+v, want ErrMalformed", res[1])
	}
	if res[2].Err == nil || !strings.Contains(res[2].Err.Error(), refused.GetEventId()) || errors.Is(res[2].Err, state.ErrMalformed) {
		t.Fatalf("refused event: %+v, want Postgres' refusal of its own statement", res[2])
	}
	if res[3].Err != nil || res[3].Result.Outcome != state.OutcomeApplied {
		t.Fatalf("second good event: %+v", res[3])
	}
	if res[4].Err != nil || res[4].Result.Outcome != state.OutcomeDuplicate {
		t.Fatalf("the same event again in the batch: %+v, want duplicate", res[4])
	}
	if res[5].Err != nil || res[5].Result.Outcome != state.OutcomeIgnored {
		t.Fatalf("ignored type: %+v", res[5])
	}
	if st := b.status(t, good1.CustomerID); st.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_ACTIVE {
		t.Fatalf("good1 status %v", st.GetStatus())
	}
	if st := b.status(t, good2.CustomerID); st.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_PAST_DUE {
		t.Fatalf("good2 status %v", st.GetStatus())
	}
	for _, ev := range []*billingv1.BillingEvent{malformed, refused} {
		var n int
		if err := b.store.Pool().QueryRow(b.ctx, `SELECT count(*) FROM billing.processed_events WHERE event_id = $1`, ev.GetEventId()).Scan(&n); err != nil || n != 0 {
			t.Fatalf("failed event %s recorded as processed (%d, %v): a retry would skip it", ev.GetEventId(), n, err)
		}
	}
	var audits int
	if err := b.store.Pool().QueryRow(b.ctx, `SELECT count(*) FROM billing.audit_log WHERE event_id = $1`, first.GetEventId()).Scan(&audits); err != nil || audits != 1 {
		t.Fatalf("first good event has %d audit rows (%v), want 1", audits, err)
	}
}

type batchItem struct {
	ev    *billingv1.BillingEvent
	tries int
}

// applyItems applies one batch as the consumer does: an event whose charge
// is unknown is returned to be delivered again (and parked on its third
// try); any other failure is an error.
func applyItems(b *bundle, its []batchItem) (again []batchItem, err error) {
	bis := make([]state.BatchItem, len(its))
	for i, it := range its {
		bis[i] = state.BatchItem{Event: it.ev, Opts: state.ApplyOptions{ParkUnresolved: it.tries >= 3}}
	}
	for i, res := range b.store.ApplyBatch(b.ctx, bis) {
		switch {
		case errors.Is(res.Err, state.ErrCustomerUnknown):
			again = append(again, batchItem{ev: its[i].ev, tries: its[i].tries + 1})
		case res.Err != nil && err == nil:
			err = fmt.Errorf("%s %s: %w", its[i].ev.GetType(), its[i].ev.GetEventId(), res.Err)
		}
	}
	return again, err
}
