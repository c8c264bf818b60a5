package render

import (
	"strings"
	"testing"
	"time"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/test/testkit/journey"
)

func TestSmokeEventsAreMarkedAsTestsOnEveryChannel(t *testing.T) {
	t.Parallel()
	ev := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, time.Now())
	ev.SmokeRun = "run_1"
	plain := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, time.Now())
	for name, got := range map[string]string{
		"slack":          Alert(ev, Lateness{}).Text,
		"slack digest":   Digest([]*billingv1.BillingEvent{ev, plain}, Lateness{}).Text,
		"email":          AlertText(ev, Lateness{}).Subject,
		"email digest":   DigestText([]*billingv1.BillingEvent{plain, ev}, Lateness{}).Subject,
		"sms":            SMS([]*billingv1.BillingEvent{ev}, Lateness{}),
		"customer email": CustomerEmail([]*billingv1.BillingEvent{ev}).Subject,
		"ticket":         NewTicket(ev).Subject,
	} {
		if !strings.HasPrefix(got, TestMark) {
			t.Errorf("%s: %q is not marked %q", name, got, TestMark)
		}
	}
	if got := AlertText(plain, Lateness{}).Subject; strings.Contains(got, TestMark) {
		t.Errorf("a real alert marked as a test: %q", got)
	}
}

func TestSMSStaysShortAndDigestCounts(t *testing.T) {
	t.Parallel()
	var evs []*billingv1.BillingEvent
	for range 600 {
		ev := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, time.Now())
		ev.CustomerName = strings.Repeat("Long Name ", 40)
		evs = append(evs, ev)
	}
	one := SMS(evs[:1], Lateness{})
	if n := len([]rune(one)); n > MaxSMS || !strings.Contains(one, "Invoice payment failed") {
		t.Errorf("single text (%d runes): %q", n, one)
	}
	digest := SMS(evs, Lateness{Late: true})
	if n := len([]rune(digest)); n > MaxSMS || !strings.HasPrefix(digest, "LATE Digest: 600 billing alerts, 29400.00 USD") {
		t.Errorf("digest text (%d runes): %q", n, digest)
	}
	body := DigestText(evs, Lateness{}).Body
	for _, ev := range evs {
		if !strings.Contains(body, ev.GetEventId()) {
			t.Fatalf("digest e-mail lacks %s", ev.GetEventId())
		}
	}
}
