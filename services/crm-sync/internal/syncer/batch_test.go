package syncer_test

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit/hubspotfake"
	"github.com/launchready/launchready/test/testkit/journey"
)

func deliveries(evs []*billingv1.BillingEvent) []*bus.Delivery {
	ds := make([]*bus.Delivery, len(evs))
	for i, ev := range evs {
		ds[i] = &bus.Delivery{Event: ev, Delivered: 1, Subject: bus.EventSubject(ev.GetType())}
	}
	return ds
}

func mustEvent(t *testing.T, g *journey.ObjectGen, typ string, at time.Time, o, prev journey.Obj) *billingv1.BillingEvent {
	t.Helper()
	ev, err := g.Event(typ, at, o, prev)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func (b *bundle) processedCount(t *testing.T, customerID string) int {
	t.Helper()
	var n int
	if err := b.pool.QueryRow(context.Background(),
		`SELECT count(*) FROM crm.processed_events WHERE customer_id = $1`, customerID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// requests counts the fake's requests whose path contains part.
func requests(fake *hubspotfake.Server, part string) int {
	n := 0
	for _, r := range fake.Requests() {
		if strings.Contains(r.Path, part) {
			n++
		}
	}
	return n
}

// Twenty events of one customer handed over together, in no particular
// order, fold into one document: one contact write carrying the newest
// state, one deal write, and every event recorded.
func TestWaitingEventsOfOneCustomerFoldIntoOneContactUpdate(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	g := &journey.ObjectGen{Prefix: "fold"}
	t0 := time.Date(2024, 6, 1, 8, 0, 0, 0, time.UTC)
	cus, sub := "cus_fold", "sub_fold"
	evs := []*billingv1.BillingEvent{mustEvent(t, g, "customer.created", t0, journey.CustomerObject(cus, "fold@example.com", "Grace Hopper", ""), nil)}
	s := journey.Sub{ID: sub, Customer: cus, Status: "trialing", Created: t0, PeriodEnd: t0.Add(14 * 24 * time.Hour),
		Price: journey.Price{ID: "price_fold_0", UnitAmount: 1000, Interval: "month", Currency: "usd"}}
	evs = append(evs, mustEvent(t, g, "customer.subscription.created", t0, journey.SubscriptionObject(s), nil))
	statuses := []string{"trialing", "active", "past_due", "active"}
	for i := 1; len(evs) < 20; i++ {
		prev := journey.Obj{"status": s.Status}
		s.Status = statuses[i%len(statuses)]
		s.Price.ID, s.Price.UnitAmount = fmt.Sprintf("price_fold_%d", i), int64(1000+100*i)
		s.PeriodEnd = s.PeriodEnd.Add(24 * time.Hour)
		evs = append(evs, mustEvent(t, g, "customer.subscription.updated", t0.Add(time.Duration(i)*time.Minute), journey.SubscriptionObject(s), prev))
	}
	newest := s
	shuffled := append([]*billingv1.BillingEvent(nil), evs...)
	r := mrand.New(mrand.NewPCG(20, 1))
	r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })

	for i, err := range b.sy.SyncBatch(context.Background(), deliveries(shuffled)) {
		if err != nil {
			t.Fatalf("delivery %d (%s): %v", i, shuffled[i].GetType(), err)
		}
	}
	if n := requests(b.fake, "/objects/contacts/"); n != 1 {
		t.Fatalf("%d contact writes for 20 waiting events; want 1", n)
	}
	if n := requests(b.fake, "/objects/deals/"); n != 1 {
		t.Fatalf("%d deal writes; want 1", n)
	}
	contacts := b.fake.Contacts()
	if len(contacts) != 1 {
		t.Fatalf("%d contacts; want 1", len(contacts))
	}
	props := contacts[0].Properties
	if props["billing_status"] != newest.Status || props["plan"] != newest.Price.ID || props["email"] != "fold@example.com" ||
		props["current_period_end"] != newest.PeriodEnd.UTC().Format(time.RFC3339) {
		t.Fatalf("contact %v; want the newest state (%s, %s, period end %s)", props, newest.Status, newest.Price.ID, newest.PeriodEnd)
	}
	if n := b.processedCount(t, cus); n != 20 {
		t.Fatalf("%d events recorded processed; want 20", n)
	}
	// The mirror's watermark is the newest event's, whichever order the
	// batch held them in.
	var lastID string
	if err := b.pool.QueryRow(context.Background(), `SELECT last_event_id FROM crm.customers WHERE customer_id = $1`, cus).Scan(&lastID); err != nil {
		t.Fatal(err)
	}
	if want := evs[len(evs)-1].GetEventId(); lastID != want {
		t.Fatalf("customer's newest event %s; want %s", lastID, want)
	}
	// The same deliveries again are duplicates and call nothing.
	before := len(b.fake.Requests())
	ds := deliveries(evs)
	for i, err := range b.sy.SyncBatch(context.Background(), ds) {
		if err != nil {
			t.Fatalf("redelivery %d: %v", i, err)
		}
	}
	if after := len(b.fake.Requests()); after != before {
		t.Fatalf("redelivered batch made %d calls", after-before)
	}
}

// A batch with one record HubSpot refuses: that customer's deliveries fail
// permanently (dead letters), every other customer's are synced and
// recorded. Both ways HubSpot reports a bad input are covered: a 207 that
// names it, and one 400 for the whole batch, which is split until the bad
// record stands alone.
func TestBatchWithOneBadRecordFailsItAlone(t *testing.T) {
	t.Parallel()
	for _, style := range []struct {
		name  string
		style hubspotfake.BatchErrors
	}{{"multi-status", hubspotfake.MultiStatus}, {"whole-batch", hubspotfake.WholeBatch}} {
		t.Run(style.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			b.fake.SetBatchErrors(style.style)
			const customers, bad = 12, 7
			g := &journey.ObjectGen{Prefix: "bad" + style.name[:1]}
			t0 := time.Date(2024, 6, 1, 8, 0, 0, 0, time.UTC)
			var evs []*billingv1.BillingEvent
			for i := range customers {
				cus := fmt.Sprintf("cus_bad%d", i)
				evs = append(evs,
					mustEvent(t, g, "customer.created", t0, journey.CustomerObject(cus, fmt.Sprintf("bad%d@example.com", i), "", ""), nil),
					mustEvent(t, g, "customer.subscription.created", t0, journey.SubscriptionObject(journey.Sub{
						ID: fmt.Sprintf("sub_bad%d", i), Customer: cus, Status: "active", Created: t0, PeriodEnd: t0.Add(30 * 24 * time.Hour),
						Price: journey.Price{ID: "price_bad", UnitAmount: 900, Interval: "month", Currency: "usd"}}), nil))
			}
			badCus := fmt.Sprintf("cus_bad%d", bad)
			b.fake.RejectRecord("contacts", "stripe_customer_id", badCus)

			errs := b.sy.SyncBatch(context.Background(), deliveries(evs))
			for i, err := range errs {
				mine := evs[i].GetCustomerId() == badCus
				switch {
				case mine && !bus.IsPermanent(err):
					t.Errorf("bad record's delivery %s: %v; want a permanent failure (dead letter)", evs[i].GetEventId(), err)
				case mine && !strings.Contains(err.Error(), "INVALID_OPTION"):
					t.Errorf("bad record's failure %q does not carry HubSpot's reason", err)
				case !mine && err != nil:
					t.Errorf("delivery %s of a good record: %v", evs[i].GetEventId(), err)
				}
			}
			if n := b.processedCount(t, badCus); n != 0 {
				t.Errorf("bad record has %d events recorded processed", n)
			}
			for i := range customers {
				cus := fmt.Sprintf("cus_bad%d", i)
				c, ok := b.fake.Find("contacts", "stripe_customer_id", cus)
				if i == bad {
					if ok {
						t.Errorf("the bad record was written: %v", c.Properties)
					}
					continue
				}
				if n := b.processedCount(t, cus); n != 2 {
					t.Errorf("%s: %d events recorded processed; want 2", cus, n)
				}
				d, dok := b.fake.Find("deals", "stripe_subscription_id", fmt.Sprintf("sub_bad%d", i))
				if !ok || !dok || c.Properties["billing_status"] != "active" {
					t.Errorf("%s: contact %v (%v), deal found %v", cus, c.Properties, ok, dok)
					continue
				}
				if as := b.fake.Associated(d.ID); len(as) != 1 || as[0] != c.ID {
					t.Errorf("%s: deal associated with %v, contact %s", cus, as, c.ID)
				}
			}
			// Eleven customers in one contact call, one deal call and one
			// association call, plus the splits a whole-batch refusal takes.
			contactCalls := requests(b.fake, "/objects/contacts/")
			if style.style == hubspotfake.MultiStatus && contactCalls != 1 {
				t.Errorf("%d contact calls; a 207 names the bad input, so want 1", contactCalls)
			}
			if style.style == hubspotfake.WholeBatch && (contactCalls < 3 || contactCalls > 2*4+1) {
				t.Errorf("%d contact calls; halving 12 inputs to find one takes 3 to 9", contactCalls)
			}
			if n := requests(b.fake, "/objects/deals/"); n != 1 {
				t.Errorf("%d deal calls; want 1", n)
			}
			if n := requests(b.fake, "/associations/"); n != 1 {
				t.Errorf("%d association calls; want 1", n)
			}
		})
	}
}
