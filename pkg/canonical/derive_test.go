package canonical

import (
	"testing"
	"time"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func sub(id, status string, created time.Time) Subscription {
	return Subscription{ID: id, CustomerID: "cus_1", Status: status, Created: created, PriceID: "price_" + id,
		UnitAmount: 1000, Interval: "month", IntervalCount: 1, Currency: "usd", Quantity: 1}
}

func TestDerive(t *testing.T) {
	grace := Policy{PastDueEntitled: true}
	strict := Policy{PastDueEntitled: false}
	deleted := sub("sub_del", "active", t0.Add(3*time.Hour))
	deleted.Deleted = true
	tests := []struct {
		name      string
		subs      []Subscription
		purchases []Purchase
		policy    Policy
		want      billingv1.BillingStatus
		entitled  bool
		primary   string // subscription or purchase id; "" for none
		mrr       int64
	}{
		{name: "nothing", policy: grace, want: stNone},
		{name: "one active", subs: []Subscription{sub("sub_a", "active", t0)}, policy: grace, want: stActive, entitled: true, primary: "sub_a", mrr: 1000},
		{name: "trialing", subs: []Subscription{sub("sub_a", "trialing", t0)}, policy: grace, want: stTrialing, entitled: true, primary: "sub_a"},
		{name: "past_due grace", subs: []Subscription{sub("sub_a", "past_due", t0)}, policy: grace, want: stPastDue, entitled: true, primary: "sub_a", mrr: 1000},
		{name: "past_due strict", subs: []Subscription{sub("sub_a", "past_due", t0)}, policy: strict, want: stPastDue, entitled: false, primary: "sub_a", mrr: 1000},
		{name: "unpaid", subs: []Subscription{sub("sub_a", "unpaid", t0)}, policy: grace, want: stUnpaid, primary: "sub_a"},
		{name: "paused", subs: []Subscription{sub("sub_a", "paused", t0)}, policy: grace, want: stPaused, primary: "sub_a"},
		{name: "incomplete", subs: []Subscription{sub("sub_a", "incomplete", t0)}, policy: grace, want: stIncomplete, primary: "sub_a"},
		{name: "incomplete_expired", subs: []Subscription{sub("sub_a", "incomplete_expired", t0)}, policy: grace, want: stCanceled, primary: "sub_a"},
		{name: "canceled", subs: []Subscription{sub("sub_a", "canceled", t0)}, policy: grace, want: stCanceled, primary: "sub_a"},
		{name: "deleted wins over stale raw status", subs: []Subscription{deleted}, policy: grace, want: stCanceled, primary: "sub_del"},
		{
			name:   "entitled before newer ended",
			subs:   []Subscription{sub("sub_old", "active", t0), sub("sub_new", "canceled", t0.Add(time.Hour))},
			policy: grace, want: stActive, entitled: true, primary: "sub_old", mrr: 1000,
		},
		{
			name:   "newest of two entitled",
			subs:   []Subscription{sub("sub_old", "active", t0), sub("sub_new", "trialing", t0.Add(time.Hour))},
			policy: grace, want: stTrialing, entitled: true, primary: "sub_new", mrr: 1000,
		},
		{
			name:   "open dunning before newer ended",
			subs:   []Subscription{sub("sub_old", "unpaid", t0), sub("sub_new", "canceled", t0.Add(time.Hour))},
			policy: grace, want: stUnpaid, primary: "sub_old",
		},
		{
			name:   "past_due strict beats ended",
			subs:   []Subscription{sub("sub_old", "past_due", t0), deleted},
			policy: strict, want: stPastDue, primary: "sub_old", mrr: 1000,
		},
		{
			name:      "paid one-time purchase is active",
			purchases: []Purchase{{ID: "cs_1", Paid: true, Amount: 5000, Created: t0}},
			policy:    grace, want: stActive, entitled: true, primary: "cs_1",
		},
		{
			name:      "partial refund leaves it active",
			purchases: []Purchase{{ID: "ch_1", Paid: true, Amount: 5000, AmountRefunded: 1000, Created: t0}},
			policy:    grace, want: stActive, entitled: true, primary: "ch_1",
		},
		{
			name:      "full refund by amount",
			purchases: []Purchase{{ID: "ch_1", Paid: true, Amount: 5000, AmountRefunded: 5000, Created: t0}},
			policy:    grace, want: stRefunded, primary: "ch_1",
		},
		{
			name:      "full refund by flag",
			purchases: []Purchase{{ID: "ch_1", Paid: true, Amount: 5000, Refunded: true, Created: t0}},
			policy:    grace, want: stRefunded, primary: "ch_1",
		},
		{
			name:      "lost dispute",
			purchases: []Purchase{{ID: "ch_1", Paid: true, Amount: 5000, DisputeLost: true, Created: t0}},
			policy:    grace, want: stRefunded, primary: "ch_1",
		},
		{
			name:      "async checkout pending",
			purchases: []Purchase{{ID: "cs_1", AwaitingAsync: true, Amount: 5000, Created: t0}},
			policy:    grace, want: stIncomplete, primary: "cs_1",
		},
		{
			name:      "failed purchase says nothing",
			purchases: []Purchase{{ID: "cs_1", Amount: 5000, Created: t0}},
			policy:    grace, want: stNone,
		},
		{
			name:      "canceled subscription but a paid purchase",
			subs:      []Subscription{sub("sub_a", "canceled", t0.Add(time.Hour))},
			purchases: []Purchase{{ID: "cs_1", Paid: true, Amount: 5000, Created: t0}},
			policy:    grace, want: stActive, entitled: true, primary: "cs_1",
		},
		{
			name:      "refund after the subscription ended",
			subs:      []Subscription{sub("sub_a", "canceled", t0)},
			purchases: []Purchase{{ID: "ch_1", Paid: true, Amount: 5000, Refunded: true, Created: t0.Add(time.Hour)}},
			policy:    grace, want: stRefunded, primary: "ch_1",
		},
		{
			name:      "refunded purchase does not hide an active subscription",
			subs:      []Subscription{sub("sub_a", "active", t0)},
			purchases: []Purchase{{ID: "ch_1", Paid: true, Amount: 5000, Refunded: true, Created: t0.Add(time.Hour)}},
			policy:    grace, want: stActive, entitled: true, primary: "sub_a", mrr: 1000,
		},
		{
			name:   "unknown raw status is ignored",
			subs:   []Subscription{sub("sub_a", "brand_new_status", t0)},
			policy: grace, want: stNone,
		},
		{
			name:   "mrr sums billing subscriptions",
			subs:   []Subscription{sub("sub_a", "active", t0), sub("sub_b", "past_due", t0.Add(time.Minute)), sub("sub_c", "trialing", t0)},
			policy: grace, want: stPastDue, entitled: true, primary: "sub_b", mrr: 2000,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := Derive(tt.subs, tt.purchases, tt.policy)
			if d.Status != tt.want || d.Entitled != tt.entitled {
				t.Fatalf("Derive = %v entitled=%v, want %v entitled=%v", d.Status, d.Entitled, tt.want, tt.entitled)
			}
			primary := ""
			switch {
			case d.Primary != nil:
				primary = d.Primary.ID
			case d.PrimaryPurchase != nil:
				primary = d.PrimaryPurchase.ID
			}
			if primary != tt.primary {
				t.Errorf("primary = %q, want %q", primary, tt.primary)
			}
			if d.MRR != tt.mrr {
				t.Errorf("MRR = %d, want %d", d.MRR, tt.mrr)
			}
		})
	}
}

func TestDeriveIsOrderIndependent(t *testing.T) {
	subs := []Subscription{sub("sub_b", "active", t0), sub("sub_a", "active", t0), sub("sub_c", "canceled", t0)}
	purchases := []Purchase{{ID: "cs_2", Paid: true, Created: t0}, {ID: "cs_1", Paid: true, Created: t0}}
	want := Derive(subs, purchases, DefaultPolicy())
	rev := []Subscription{subs[2], subs[1], subs[0]}
	got := Derive(rev, []Purchase{purchases[1], purchases[0]}, DefaultPolicy())
	if got.Primary == nil || want.Primary == nil || got.Primary.ID != want.Primary.ID {
		t.Fatalf("primary depends on input order: %+v vs %+v", got.Primary, want.Primary)
	}
	if want.Primary.ID != "sub_b" {
		t.Errorf("tie should break on the greater id, got %s", want.Primary.ID)
	}
}

func TestDeriveRefundTotalsAndCurrency(t *testing.T) {
	eur := sub("sub_eur", "active", t0)
	eur.Currency = "eur"
	usd := sub("sub_usd", "active", t0.Add(time.Hour))
	d := Derive([]Subscription{eur, usd}, []Purchase{
		{ID: "ch_1", Paid: true, Amount: 100, AmountRefunded: 30},
		{ID: "ch_2", Paid: true, Amount: 100, AmountRefunded: 100},
	}, DefaultPolicy())
	if d.AmountRefunded != 130 {
		t.Errorf("AmountRefunded = %d, want 130", d.AmountRefunded)
	}
	if d.Currency != "usd" || d.MRR != 1000 {
		t.Errorf("MRR = %d %s, want 1000 usd (eur not added to usd)", d.MRR, d.Currency)
	}
}

func TestMRR(t *testing.T) {
	tests := []struct {
		name string
		s    Subscription
		want int64
	}{
		{"monthly", Subscription{Status: "active", UnitAmount: 999, Quantity: 1, Interval: "month", IntervalCount: 1}, 999},
		{"quantity", Subscription{Status: "active", UnitAmount: 999, Quantity: 3, Interval: "month", IntervalCount: 1}, 2997},
		{"quantity zero is one", Subscription{Status: "active", UnitAmount: 999, Interval: "month"}, 999},
		{"yearly", Subscription{Status: "active", UnitAmount: 12000, Quantity: 1, Interval: "year", IntervalCount: 1}, 1000},
		{"yearly rounds", Subscription{Status: "active", UnitAmount: 9999, Quantity: 1, Interval: "year", IntervalCount: 1}, 833},
		{"quarterly", Subscription{Status: "active", UnitAmount: 3000, Quantity: 1, Interval: "month", IntervalCount: 3}, 1000},
		{"weekly", Subscription{Status: "active", UnitAmount: 1200, Quantity: 1, Interval: "week", IntervalCount: 1}, 5200},
		{"daily", Subscription{Status: "active", UnitAmount: 12, Quantity: 1, Interval: "day", IntervalCount: 1}, 365},
		{"past_due counts", Subscription{Status: "past_due", UnitAmount: 500, Interval: "month"}, 500},
		{"trial is zero", Subscription{Status: "trialing", UnitAmount: 500, Interval: "month"}, 0},
		{"canceled is zero", Subscription{Status: "canceled", UnitAmount: 500, Interval: "month"}, 0},
		{"deleted is zero", Subscription{Status: "active", Deleted: true, UnitAmount: 500, Interval: "month"}, 0},
		{"unpaid is zero", Subscription{Status: "unpaid", UnitAmount: 500, Interval: "month"}, 0},
		{"no interval is zero", Subscription{Status: "active", UnitAmount: 500}, 0},
	}
	for _, tt := range tests {
		if got := MRR(tt.s); got != tt.want {
			t.Errorf("%s: MRR = %d, want %d", tt.name, got, tt.want)
		}
	}
}
