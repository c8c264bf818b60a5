package scenario

import (
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/journey"
)

// TestMixNormalisesAsBuilt checks that every event the chaos and load runs
// send is an envelope ingress accepts, that normalisation reads back the
// ids the builder wrote (in both API shapes), and that the set has the
// promised size, duplicates and order.
func TestMixNormalisesAsBuilt(t *testing.T) {
	dir, err := testkit.FindFixturesDir()
	if err != nil {
		t.Fatal(err)
	}
	g, err := journey.NewGen(dir, "t1")
	if err != nil {
		t.Fatal(err)
	}
	js, err := Mix(g, 200, 2000, time.Unix(1_700_000_000, 0))
	if err != nil {
		t.Fatal(err)
	}
	if len(js) != 200 {
		t.Fatalf("journeys = %d, want 200", len(js))
	}
	ids := map[string]bool{}
	types := map[string]int{}
	total := 0
	for _, j := range js {
		for _, e := range j.Events {
			total++
			if ids[e.ID] {
				t.Fatalf("event id %s built twice", e.ID)
			}
			ids[e.ID] = true
			types[e.Type]++
			ev, err := stripeevent.Normalize(e.Raw)
			if err != nil {
				t.Fatalf("%s %s: %v", e.ID, e.Type, err)
			}
			if ev.GetEventId() != e.ID || ev.GetType() != e.Type {
				t.Fatalf("normalised %s/%s, built %s/%s", ev.GetEventId(), ev.GetType(), e.ID, e.Type)
			}
			if !ev.GetCreated().AsTime().Equal(e.Created) {
				t.Fatalf("%s created %s, built %s", e.ID, ev.GetCreated().AsTime(), e.Created)
			}
			if e.Subscription != "" && (e.Type[:9] == "customer." || e.Type[:8] == "invoice.") && ev.GetSubscriptionId() != e.Subscription {
				t.Fatalf("%s %s: subscription %q, built %q", e.ID, e.Type, ev.GetSubscriptionId(), e.Subscription)
			}
			if e.Invoice != "" && ev.GetInvoiceId() != e.Invoice {
				t.Fatalf("%s %s: invoice %q, built %q", e.ID, e.Type, ev.GetInvoiceId(), e.Invoice)
			}
			if e.Dispute != "" && ev.GetDisputeId() != e.Dispute {
				t.Fatalf("%s %s: dispute %q, built %q", e.ID, e.Type, ev.GetDisputeId(), e.Dispute)
			}
			if e.Charge != "" && ev.GetChargeId() != e.Charge {
				t.Fatalf("%s %s: charge %q, built %q", e.ID, e.Type, ev.GetChargeId(), e.Charge)
			}
			// Disputes and refunds name only a charge, as Stripe sends them.
			wantCus := e.Customer
			if e.Dispute != "" || e.Type == "refund.created" {
				wantCus = ""
			}
			if ev.GetCustomerId() != wantCus {
				t.Fatalf("%s %s: customer %q, want %q", e.ID, e.Type, ev.GetCustomerId(), wantCus)
			}
			if e.Type == "customer.subscription.created" && ev.GetCurrentPeriodEnd().GetSeconds() == 0 {
				t.Fatalf("%s (api %s): no current_period_end read", e.ID, ev.GetApiVersion())
			}
		}
	}
	if total != 2000 {
		t.Fatalf("events = %d, want 2000", total)
	}
	for _, typ := range []string{"customer.subscription.updated", "invoice.payment_failed", "charge.dispute.closed", "refund.created", "payment_method.attached"} {
		if types[typ] == 0 {
			t.Errorf("no %s in the mix", typ)
		}
	}
	ds := Shuffle(js, 0.1, 7)
	if len(ds) != 2200 {
		t.Fatalf("deliveries = %d, want 2200", len(ds))
	}
	inOrder := 0
	for i := 1; i < len(ds); i++ {
		if ds[i-1].Event.Customer == ds[i].Event.Customer && ds[i-1].Event.Created.Before(ds[i].Event.Created) {
			inOrder++
		}
	}
	if inOrder > len(ds)/10 {
		t.Fatalf("shuffle left %d neighbours in order", inOrder)
	}
	if n := len(InOrder(js)); n != 2000 {
		t.Fatalf("in-order events = %d", n)
	}
}
