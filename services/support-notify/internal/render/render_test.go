package render

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit"
)

func TestMoney(t *testing.T) {
	cases := []struct {
		amount int64
		cur    string
		want   string
	}{
		{4900, "usd", "49.00 USD"},
		{5, "eur", "0.05 EUR"},
		{0, "gbp", "0.00 GBP"},
		{5000, "jpy", "5000 JPY"},
		{12345, "kwd", "12.345 KWD"},
		{-250, "usd", "-2.50 USD"},
		{100, "", ""},
	}
	for _, c := range cases {
		if got := Money(c.amount, c.cur); got != c.want {
			t.Errorf("Money(%d, %q) = %q, want %q", c.amount, c.cur, got, c.want)
		}
	}
}

func TestDashboardLinksHonourLivemode(t *testing.T) {
	ev := &billingv1.BillingEvent{InvoiceId: "in_1", PaymentIntentId: "pi_1", ChargeId: "ch_1", SubscriptionId: "sub_1", CustomerId: "cus_1"}
	want := []Link{
		{"Invoice", "https://dashboard.stripe.com/test/invoices/in_1"},
		{"Payment", "https://dashboard.stripe.com/test/payments/pi_1"},
		{"Subscription", "https://dashboard.stripe.com/test/subscriptions/sub_1"},
		{"Customer", "https://dashboard.stripe.com/test/customers/cus_1"},
	}
	if got := Links(ev); !slices.Equal(got, want) {
		t.Fatalf("test mode links = %v", got)
	}
	ev.Livemode = true
	ev.PaymentIntentId = ""
	if got := Links(ev); got[1].URL != "https://dashboard.stripe.com/payments/ch_1" || got[0].URL != "https://dashboard.stripe.com/invoices/in_1" {
		t.Fatalf("live links = %v", got)
	}
}

func TestKeys(t *testing.T) {
	subDeleted := readFixture(t, "stripe-ruby-mock/customer.subscription.deleted.json")
	cases := []struct {
		ev      *billingv1.BillingEvent
		primary string
		related []string
	}{
		{&billingv1.BillingEvent{Type: "invoice.payment_failed", InvoiceId: "in_1", SubscriptionId: "sub_1"}, "invoice:in_1", nil},
		{&billingv1.BillingEvent{Type: "invoice.paid", ObjectId: "in_2"}, "invoice:in_2", nil},
		{&billingv1.BillingEvent{Type: "charge.dispute.created", DisputeId: "dp_1", ChargeId: "ch_1"}, "dispute:dp_1", nil},
		{&billingv1.BillingEvent{Type: "customer.subscription.deleted", SubscriptionId: "sub_1", RawJson: subDeleted}, "subscription:sub_1", []string{"invoice:in_000000000000000000000000"}},
		{&billingv1.BillingEvent{Type: "payment_intent.payment_failed", PaymentIntentId: "pi_1"}, "payment_intent:pi_1", nil},
		{&billingv1.BillingEvent{Type: "checkout.session.async_payment_failed", CheckoutSessionId: "cs_1", PaymentIntentId: "pi_1"}, "checkout:cs_1", []string{"payment_intent:pi_1"}},
		{&billingv1.BillingEvent{Type: "charge.refunded", ChargeId: "ch_1", PaymentIntentId: "pi_1", InvoiceId: "in_1"}, "charge:ch_1", []string{"payment_intent:pi_1", "invoice:in_1"}},
		{&billingv1.BillingEvent{Type: "something.else", EventId: "evt_1"}, "event:evt_1", nil},
	}
	for _, c := range cases {
		p, r := Keys(c.ev)
		if p != c.primary || !slices.Equal(r, c.related) {
			t.Errorf("Keys(%s) = %q %v, want %q %v", c.ev.GetType(), p, r, c.primary, c.related)
		}
	}
}

func failedInvoice() *billingv1.BillingEvent {
	return &billingv1.BillingEvent{
		EventId: "evt_1", Type: "invoice.payment_failed", Created: timestamppb.New(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)),
		CustomerId: "cus_1", SubscriptionId: "sub_1", InvoiceId: "in_1", PaymentIntentId: "pi_1",
		AmountDue: 4900, Currency: "usd", AttemptCount: 2,
		NextPaymentAttempt: timestamppb.New(time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)),
		FailureCode:        "card_declined", FailureMessage: "Your card was declined.",
		Email: "ada@example.com", CustomerName: "Ada", PriceId: "price_1", Interval: "month",
		RawJson: []byte(`{"data":{"object":{"lines":{"data":[{"price":{"nickname":"Pro","product":"prod_1"}}]}}}}`),
	}
}

func TestTicketContent(t *testing.T) {
	tk := NewTicket(failedInvoice())
	if tk.Subject != "Invoice payment failed: 49.00 USD (Ada <ada@example.com>)" {
		t.Fatalf("subject %q", tk.Subject)
	}
	for _, want := range []string{
		"Amount: 49.00 USD", "Plan: Pro (monthly)", "Attempt: 2", "Next retry: 2026-03-04 10:00:00 UTC",
		"Reason: Your card was declined. (card_declined)",
		"https://dashboard.stripe.com/test/invoices/in_1", "https://dashboard.stripe.com/test/customers/cus_1",
		"evt_1",
	} {
		if !strings.Contains(tk.Body, want) {
			t.Errorf("body lacks %q:\n%s", want, tk.Body)
		}
	}
	if !slices.Contains(tk.Tags, "invoice_payment_failed") || !slices.Contains(tk.Tags, "stripe_test") {
		t.Errorf("tags %v", tk.Tags)
	}
	// Idempotency-Key replays need the same payload: rendering is pure.
	if again := NewTicket(failedInvoice()); again.Body != tk.Body || again.Subject != tk.Subject {
		t.Fatal("rendering is not deterministic")
	}
}

func TestDisputeTicket(t *testing.T) {
	ev := &billingv1.BillingEvent{EventId: "evt_d", Type: "charge.dispute.created", Created: timestamppb.Now(), Livemode: true,
		DisputeId: "dp_1", ChargeId: "ch_1", Amount: 12000, Currency: "eur", DisputeReason: "fraudulent", Status: "needs_response", CustomerId: "cus_9"}
	tk := NewTicket(ev)
	for _, want := range []string{"Dispute reason: fraudulent", "Amount: 120.00 EUR", "Dispute status: needs response", "https://dashboard.stripe.com/payments/ch_1"} {
		if !strings.Contains(tk.Body, want) {
			t.Errorf("body lacks %q:\n%s", want, tk.Body)
		}
	}
	if !strings.Contains(tk.Subject, "120.00 EUR") {
		t.Errorf("subject %q", tk.Subject)
	}
}

func TestPlanFromRealFixture(t *testing.T) {
	raw := readFixture(t, "stripe-ruby-mock/invoice.payment_failed.json")
	ev := &billingv1.BillingEvent{RawJson: raw}
	// The sample invoice's price has no nickname; its line's description names it.
	if got := Plan(ev); got != "(created by Stripe CLI)" {
		t.Fatalf("Plan = %q", got)
	}
	if got := Plan(&billingv1.BillingEvent{PriceId: "price_9", Interval: "year", IntervalCount: 2}); got != "price_9 (every 2 years)" {
		t.Fatalf("Plan = %q", got)
	}
}

func TestResolvedComment(t *testing.T) {
	ev := failedInvoice()
	ev.Type, ev.EventId, ev.AmountPaid = "invoice.paid", "evt_2", 4900
	got := Resolved(ev)
	if !strings.HasPrefix(got, "Resolved: the invoice is paid.") || !strings.Contains(got, "49.00 USD") || !strings.Contains(got, "evt_2") {
		t.Fatalf("resolved comment:\n%s", got)
	}
}

func TestSlackAlert(t *testing.T) {
	ev := failedInvoice()
	ev.CustomerName = "Ada <script>"
	msg := Alert(ev, Lateness{})
	b, err := json.Marshal(msg)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"type":"header"`, `"type":"section"`, `"type":"actions"`, `"type":"context"`, "49.00 USD", "Your card was declined.", "https://dashboard.stripe.com/test/invoices/in_1", `Ada \u0026lt;script\u0026gt;`} {
		if !strings.Contains(s, want) {
			t.Errorf("message lacks %q: %s", want, s)
		}
	}
	if strings.Contains(s, "LATE") {
		t.Errorf("on-time alert marked late: %s", s)
	}
	late := Alert(ev, Lateness{Late: true, Age: 3*time.Minute + 400*time.Millisecond, SLO: 2 * time.Minute})
	if !strings.HasPrefix(late.Text, "LATE: ") || !strings.Contains(late.Blocks[len(late.Blocks)-1].Elements[0].Text.(string), "3m0s after the event (SLO 2m0s)") {
		t.Fatalf("late alert: %+v", late)
	}
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testkit.FixturesDir(t), name))
	if err != nil {
		t.Fatalf("fixture %s: %v", name, err)
	}
	return b
}
