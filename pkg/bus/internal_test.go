package bus

import (
	"errors"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

func TestBackoffBounds(t *testing.T) {
	base, maxDelay := 100*time.Millisecond, 2*time.Second
	for n := uint64(1); n <= 12; n++ {
		b := min(maxDelay, base<<(n-1))
		for range 200 {
			d := backoff(base, maxDelay, n)
			if d < b/2 || d > b {
				t.Fatalf("backoff(n=%d) = %s, want within [%s, %s]", n, d, b/2, b)
			}
		}
	}
	// A huge delivery count must not overflow into a negative delay.
	if d := backoff(base, maxDelay, 1<<40); d < maxDelay/2 || d > maxDelay {
		t.Fatalf("backoff(huge n) = %s", d)
	}
}

func TestRedactErrorBoundsAndKeepsUTF8(t *testing.T) {
	long := errors.New(strings.Repeat("é", 2000) + " sk_live_" + strings.Repeat("q", 30))
	got := redactError(long)
	if len(got) > maxErrorBytes || !utf8.ValidString(got) {
		t.Fatalf("len %d, valid UTF-8 %v", len(got), utf8.ValidString(got))
	}
	// Redaction happens before the cut: the secret's head is never kept.
	cut := errors.New(strings.Repeat("x", maxErrorBytes-12) + " sk_live_" + strings.Repeat("q", 30))
	if got := redactError(cut); strings.Contains(got, "qqq") {
		t.Fatalf("truncated error leaks part of a key: %q", got[len(got)-40:])
	}
}

func TestOutcomeErrors(t *testing.T) {
	base := errors.New("boom")
	if Permanent(nil) != nil {
		t.Fatal("Permanent(nil) should be nil")
	}
	p := Permanent(base)
	if !IsPermanent(p) || !errors.Is(p, base) || p.Error() != "boom" {
		t.Fatalf("Permanent = %v", p)
	}
	if IsPermanent(base) {
		t.Fatal("plain error reported permanent")
	}
	r := RetryAfter(base, 3*time.Second)
	if d, ok := retryAfter(r); !ok || d != 3*time.Second || !errors.Is(r, base) {
		t.Fatalf("RetryAfter = %v, %v, %v", r, d, ok)
	}
	if _, ok := retryAfter(base); ok {
		t.Fatal("plain error carries a retry delay")
	}
}

func TestEventTypeFromSubject(t *testing.T) {
	for subject, want := range map[string]struct {
		typ    string
		replay bool
	}{
		"billing.events.invoice.payment_failed":                 {"invoice.payment_failed", false},
		"billing.replay.crm-sync.customer.subscription.updated": {"customer.subscription.updated", true},
		"billing.dlq.crm-sync":                                  {"", false},
	} {
		typ, replay := eventTypeFromSubject(subject)
		if typ != want.typ || replay != want.replay {
			t.Errorf("%s -> %q %v, want %q %v", subject, typ, replay, want.typ, want.replay)
		}
	}
}

func TestCustomerOfReadsOnlyTheCustomerField(t *testing.T) {
	if n := (&billingv1.BillingEvent{}).ProtoReflect().Descriptor().Fields().ByName("customer_id").Number(); n != 10 {
		t.Fatalf("customer_id is field %d; customerOf reads field 10", n)
	}
	ev := &billingv1.BillingEvent{EventId: "evt_1", Type: "invoice.paid", CustomerId: "cus_Part1", RawJson: []byte(`{"id":"evt_1"}`),
		Email: "a@example.com", Amount: 1200}
	b, err := proto.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if got := customerOf(b); got != "cus_Part1" {
		t.Fatalf("customerOf = %q", got)
	}
	ev.CustomerId = ""
	b, _ = proto.Marshal(ev)
	if got := customerOf(b); got != "" {
		t.Fatalf("no customer: customerOf = %q", got)
	}
	if got := customerOf([]byte{0xff, 0xff, 0xff}); got != "" {
		t.Fatalf("garbage: customerOf = %q", got)
	}
}
