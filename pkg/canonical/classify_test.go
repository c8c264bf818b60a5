package canonical

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/launchready/launchready/pkg/stripeevent/stripeeventtest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit"
)

var update = flag.Bool("update", false, "rewrite testdata/fixture_kinds.tsv from the fixtures")

const fixtureKinds = "testdata/fixture_kinds.tsv"

// TestClassifyEveryFixture routes every Stripe envelope in the shared
// fixtures and compares the kinds with testdata/fixture_kinds.tsv, the
// reviewed table of how billing-state and crm-sync take each one in (both
// route through Classify). Run with -update after a deliberate change and
// review the diff.
func TestClassifyEveryFixture(t *testing.T) {
	dir := testkit.FixturesDir(t)
	var got []string
	kinds := map[Kind]int{}
	for _, e := range stripeeventtest.Envelopes(t, dir) {
		k := Classify(e.Event).Kind
		kinds[k]++
		got = append(got, fmt.Sprintf("%s\t%s\t%s\t%s", e.Name, e.Event.GetType(), ObjectOf(e.Event), k))
	}
	slices.Sort(got)
	body := "# file\tevent type\tobject\tkind\n" + strings.Join(got, "\n") + "\n"
	if *update {
		if err := os.WriteFile(fixtureKinds, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	wantBody, err := os.ReadFile(fixtureKinds)
	if err != nil {
		t.Fatalf("%v (go test -run TestClassifyEveryFixture -update writes it)", err)
	}
	want := strings.Split(strings.TrimSuffix(string(wantBody), "\n"), "\n")[1:]
	if len(got) < 170 {
		t.Fatalf("only %d envelopes found in %s", len(got), dir)
	}
	for _, l := range got {
		if !slices.Contains(want, l) {
			t.Errorf("routed differently or new: %s", l)
		}
	}
	for _, l := range want {
		if !slices.Contains(got, l) {
			t.Errorf("expected, not routed so: %s", l)
		}
	}
	// The fixtures hold an event of every kind a consumer handles, so the
	// services' tests over the same fixtures exercise each of their rules.
	for _, k := range Kinds() {
		if kinds[k] == 0 {
			t.Errorf("no fixture of kind %s", k)
		}
	}
}

func TestClassifyFacts(t *testing.T) {
	ev := func(typ, obj string, set func(*billingv1.BillingEvent)) *billingv1.BillingEvent {
		e := &billingv1.BillingEvent{EventId: "evt_1", Type: typ, ObjectType: obj}
		if set != nil {
			set(e)
		}
		return e
	}
	for _, c := range []struct {
		name string
		ev   *billingv1.BillingEvent
		want Facts
	}{
		{"customer update", ev("customer.updated", "customer", nil), Facts{Kind: KindCustomer}},
		{"customer deleted", ev("customer.deleted", "customer", nil), Facts{Kind: KindCustomer, CustomerDeleted: true}},
		{"customer sub-object", ev("customer.tax_id.created", "tax_id", nil), Facts{}},
		{"subscription without object field", ev("customer.subscription.paused", "", nil), Facts{Kind: KindSubscription}},
		{"subscription schedule", ev("subscription_schedule.updated", "subscription_schedule", nil), Facts{}},
		{"subscription checkout teaches its payment intent only",
			ev("checkout.session.completed", "checkout.session", func(e *billingv1.BillingEvent) {
				e.CheckoutMode, e.CheckoutSessionId, e.PaymentIntentId, e.PaymentStatus = "subscription", "cs_1", "pi_1", "paid"
			}),
			Facts{Kind: KindCheckout, Link: ChargeLink{PaymentIntentID: "pi_1"}}},
		{"paid one-time checkout, keyed by payment intent",
			ev("checkout.session.completed", "checkout.session", func(e *billingv1.BillingEvent) {
				e.CheckoutMode, e.CheckoutSessionId, e.PaymentIntentId, e.PaymentStatus = "payment", "cs_1", "pi_1", "paid"
			}),
			Facts{Kind: KindCheckout, Link: ChargeLink{PaymentIntentID: "pi_1"}, Payment: Payment{Key: "pi_1", FromCheckout: true, Paid: true}}},
		{"async checkout without payment intent, keyed by session",
			ev("checkout.session.completed", "checkout.session", func(e *billingv1.BillingEvent) {
				e.CheckoutMode, e.CheckoutSessionId, e.PaymentStatus = "payment", "cs_2", "unpaid"
			}),
			Facts{Kind: KindCheckout, Payment: Payment{Key: "cs_2", FromCheckout: true, AwaitingAsync: true}}},
		{"async checkout failed",
			ev("checkout.session.async_payment_failed", "checkout.session", func(e *billingv1.BillingEvent) {
				e.CheckoutMode, e.CheckoutSessionId, e.PaymentStatus = "payment", "cs_3", "unpaid"
			}),
			Facts{Kind: KindCheckout, Payment: Payment{Key: "cs_3", FromCheckout: true, AsyncFailed: true}}},
		{"succeeded charge of a payment intent",
			ev("charge.succeeded", "charge", func(e *billingv1.BillingEvent) { e.ChargeId, e.PaymentIntentId, e.Status = "ch_1", "pi_1", "succeeded" }),
			Facts{Kind: KindCharge, Link: ChargeLink{"ch_1", "pi_1"}, Payment: Payment{Key: "pi_1", Paid: true}}},
		{"failed charge without payment intent, keyed by charge",
			ev("charge.failed", "charge", func(e *billingv1.BillingEvent) { e.ChargeId, e.Status = "ch_2", "failed" }),
			Facts{Kind: KindCharge, Link: ChargeLink{ChargeID: "ch_2"}, Payment: Payment{Key: "ch_2"}}},
		{"payment intent",
			ev("payment_intent.succeeded", "", func(e *billingv1.BillingEvent) { e.ChargeId, e.PaymentIntentId, e.Status = "ch_1", "pi_1", "succeeded" }),
			Facts{Kind: KindPaymentIntent, Link: ChargeLink{"ch_1", "pi_1"}, Payment: Payment{Key: "pi_1", Paid: true}}},
		{"invoice payment under an invoice type: the object decides",
			ev("invoice.updated", "invoice_payment", func(e *billingv1.BillingEvent) { e.PaymentIntentId, e.InvoiceId, e.Status = "pi_1", "in_1", "paid" }),
			Facts{Kind: KindInvoicePayment, Link: ChargeLink{PaymentIntentID: "pi_1"}, Payment: Payment{Key: "pi_1"}}},
		{"failed invoice payment",
			ev("invoice.payment_failed", "invoice", func(e *billingv1.BillingEvent) { e.InvoiceId, e.ChargeId = "in_1", "ch_1" }),
			Facts{Kind: KindInvoice, PaymentFailed: true, Link: ChargeLink{ChargeID: "ch_1"}}},
		{"upcoming invoice preview", ev("invoice.upcoming", "invoice", nil), Facts{}},
		{"open dispute", ev("charge.dispute.created", "dispute", func(e *billingv1.BillingEvent) { e.ChargeId, e.Status = "ch_1", "needs_response" }),
			Facts{Kind: KindDispute, Link: ChargeLink{ChargeID: "ch_1"}}},
		{"lost dispute", ev("charge.dispute.updated", "dispute", func(e *billingv1.BillingEvent) { e.ChargeId, e.Status = "ch_1", "lost" }),
			Facts{Kind: KindDispute, Link: ChargeLink{ChargeID: "ch_1"}, Dispute: Dispute{Closed: true, Lost: true}}},
		{"dispute closed by its type", ev("charge.dispute.closed", "", func(e *billingv1.BillingEvent) { e.Status = "under_review" }),
			Facts{Kind: KindDispute, Dispute: Dispute{Closed: true}}},
		{"refund", ev("charge.refund.updated", "refund", func(e *billingv1.BillingEvent) { e.ChargeId, e.PaymentIntentId = "ch_1", "pi_1" }),
			Facts{Kind: KindRefund, Link: ChargeLink{"ch_1", "pi_1"}}},
		{"plan", ev("plan.created", "plan", nil), Facts{}},
	} {
		if got := Classify(c.ev); got != c.want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, c.want)
		}
	}
}

func TestKinds(t *testing.T) {
	ks := Kinds()
	if len(ks) != 9 || slices.Contains(ks, KindIgnored) {
		t.Fatalf("Kinds() = %v: every kind but ignored", ks)
	}
	names := map[string]bool{KindIgnored.String(): true}
	for _, k := range ks {
		if names[k.String()] || k.String() == "unknown" {
			t.Errorf("kind %d named %q twice or not at all", int(k), k)
		}
		names[k.String()] = true
	}
	if Kind(-1).String() != "unknown" || Kind(len(ks)+1).String() != "unknown" {
		t.Error("out-of-range kinds must not borrow a name")
	}
	if !KindDispute.NamesOnlyCharge() || !KindRefund.NamesOnlyCharge() || KindCharge.NamesOnlyCharge() {
		t.Error("only disputes and refunds name only a charge")
	}
	if got := (ChargeLink{PaymentIntentID: "pi_1"}).Refs(); !slices.Equal(got, []string{"pi_1"}) {
		t.Errorf("Refs = %v", got)
	}
	if got := (ChargeLink{"ch_1", "pi_1"}).Refs(); !slices.Equal(got, []string{"ch_1", "pi_1"}) {
		t.Errorf("Refs = %v", got)
	}
}
