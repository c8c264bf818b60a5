package render

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

func failed(i int, customer, email string, amount int64, code, msg string, at time.Time) *billingv1.BillingEvent {
	return &billingv1.BillingEvent{
		EventId: fmt.Sprintf("evt_digest%04d", i), Type: "invoice.payment_failed", Created: timestamppb.New(at),
		CustomerId: customer, Email: email, InvoiceId: fmt.Sprintf("in_%04d", i), AmountDue: amount, Currency: "usd",
		FailureCode: code, FailureMessage: msg,
	}
}

func TestDigestCountsTotalsAndTopCustomers(t *testing.T) {
	at := time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)
	var evs []*billingv1.BillingEvent
	// cus_big fails three times, nine others once each; one dispute in EUR.
	for i := range 3 {
		evs = append(evs, failed(i, "cus_big", "big@example.com", 10000, "card_declined", "Your card was declined.", at))
	}
	for i := 3; i < 12; i++ {
		code, msg := "card_declined", "Your card was declined."
		if i%3 == 0 {
			code, msg = "expired_card", "Your card has expired."
		}
		evs = append(evs, failed(i, fmt.Sprintf("cus_%02d", i), "", 1500, code, msg, at.Add(time.Duration(i)*time.Second)))
	}
	evs = append(evs, &billingv1.BillingEvent{EventId: "evt_digestdp", Type: "charge.dispute.created", Created: timestamppb.New(at),
		CustomerId: "cus_eu", Amount: 5000, Currency: "eur", DisputeReason: "fraudulent", Livemode: true})

	s := Summarize(evs)
	if s.Count != 13 || s.Groups[0].Count != 9 || s.Groups[0].Reason != "Your card was declined. (card_declined)" {
		t.Fatalf("groups %+v", s.Groups)
	}
	if strings.Join(s.Totals, " + ") != "435.00 USD + 50.00 EUR" {
		t.Fatalf("totals %v", s.Totals)
	}
	if len(s.Customers) != TopCustomers || s.Customers[0].Name != "big@example.com" || s.Customers[0].Count != 3 ||
		s.Customers[0].Amount != "300.00 USD" || s.Customers[0].URL != "https://dashboard.stripe.com/test/customers/cus_big" {
		t.Fatalf("top customers %+v", s.Customers)
	}
	if !s.First.Equal(at) || !s.Last.Equal(at.Add(11*time.Second)) {
		t.Fatalf("span %s .. %s", s.First, s.Last)
	}

	msg := Digest(evs, Lateness{})
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(msg); err != nil {
		t.Fatal(err)
	}
	raw := buf.String()
	if msg.Text != "Digest: 13 billing alerts, 435.00 USD + 50.00 EUR" {
		t.Fatalf("text %q", msg.Text)
	}
	ids := regexp.MustCompile(`evt_digest\w+`).FindAllString(raw, -1)
	if len(ids) != 13 {
		t.Fatalf("digest names %d event ids, want 13", len(ids))
	}
	for _, want := range []string{"*By type and reason*", "Your card has expired. (expired_card): *3*", "<https://dashboard.stripe.com/test/customers/cus_big|big@example.com>: 300.00 USD (3 alerts)", "*Total*"} {
		if !strings.Contains(raw, want) {
			t.Errorf("digest lacks %q: %s", want, raw)
		}
	}
	if late := Digest(evs, Lateness{Late: true, Age: 3 * time.Minute, SLO: 2 * time.Minute}); !strings.HasPrefix(late.Text, "LATE: Digest") {
		t.Fatalf("late digest text %q", late.Text)
	}
}

// A digest of the most events one message carries stays inside Block
// Kit's limits: 50 blocks, 10 elements per context block, 3,000
// characters per text.
func TestLargestDigestFitsBlockKit(t *testing.T) {
	at := time.Now()
	var evs []*billingv1.BillingEvent
	for i := range MaxDigest {
		evs = append(evs, failed(i, fmt.Sprintf("cus_%04d", i), "", 1500, fmt.Sprintf("code_%d", i), "Declined.", at))
	}
	msg := Digest(evs, Lateness{})
	if len(msg.Blocks) > 50 {
		t.Fatalf("%d blocks", len(msg.Blocks))
	}
	ids := 0
	for _, b := range msg.Blocks {
		if b.Text != nil && len(b.Text.Text) > 3000 {
			t.Fatalf("%s block text of %d characters", b.Type, len(b.Text.Text))
		}
		if len(b.Elements) > 10 {
			t.Fatalf("context block with %d elements", len(b.Elements))
		}
		for _, e := range b.Elements {
			if s, ok := e.Text.(string); ok {
				if len(s) > 3000 {
					t.Fatalf("context element of %d characters", len(s))
				}
				ids += strings.Count(s, "evt_digest")
			}
		}
	}
	if ids != MaxDigest {
		t.Fatalf("digest names %d of %d events", ids, MaxDigest)
	}
	if !strings.Contains(msg.Blocks[1].Text.Text, "… and ") {
		t.Fatalf("500 distinct reasons should be cut short: %.200s", msg.Blocks[1].Text.Text)
	}
}
