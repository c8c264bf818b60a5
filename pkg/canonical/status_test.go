package canonical

import (
	"testing"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

const (
	stNone       = billingv1.BillingStatus_BILLING_STATUS_NONE
	stTrialing   = billingv1.BillingStatus_BILLING_STATUS_TRIALING
	stActive     = billingv1.BillingStatus_BILLING_STATUS_ACTIVE
	stPastDue    = billingv1.BillingStatus_BILLING_STATUS_PAST_DUE
	stUnpaid     = billingv1.BillingStatus_BILLING_STATUS_UNPAID
	stPaused     = billingv1.BillingStatus_BILLING_STATUS_PAUSED
	stIncomplete = billingv1.BillingStatus_BILLING_STATUS_INCOMPLETE
	stCanceled   = billingv1.BillingStatus_BILLING_STATUS_CANCELED
	stRefunded   = billingv1.BillingStatus_BILLING_STATUS_REFUNDED
	stUnknown    = billingv1.BillingStatus_BILLING_STATUS_UNSPECIFIED
)

// TestSubscriptionMapping covers the subscription rows of DESIGN.md's
// mapping table, under both past_due policies.
func TestSubscriptionMapping(t *testing.T) {
	tests := []struct {
		stripe         string
		want           billingv1.BillingStatus
		entitled       bool // PAST_DUE_ENTITLED=true
		entitledStrict bool // PAST_DUE_ENTITLED=false
	}{
		{"trialing", stTrialing, true, true},
		{"active", stActive, true, true},
		{"past_due", stPastDue, true, false},
		{"unpaid", stUnpaid, false, false},
		{"paused", stPaused, false, false},
		{"incomplete", stIncomplete, false, false},
		{"incomplete_expired", stCanceled, false, false},
		{"canceled", stCanceled, false, false},
		{" Active ", stActive, true, true},
		{"", stUnknown, false, false},
		{"something_new", stUnknown, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.stripe, func(t *testing.T) {
			got := SubscriptionStatus(tt.stripe)
			if got != tt.want {
				t.Fatalf("SubscriptionStatus(%q) = %v, want %v", tt.stripe, got, tt.want)
			}
			if e := Entitled(got, Policy{PastDueEntitled: true}); e != tt.entitled {
				t.Errorf("Entitled(%v, grace) = %v, want %v", got, e, tt.entitled)
			}
			if e := Entitled(got, Policy{PastDueEntitled: false}); e != tt.entitledStrict {
				t.Errorf("Entitled(%v, strict) = %v, want %v", got, e, tt.entitledStrict)
			}
		})
	}
}

func TestDefaultPolicyGivesPastDueGrace(t *testing.T) {
	if !DefaultPolicy().PastDueEntitled {
		t.Fatal("default policy must keep past_due customers entitled")
	}
}

func TestEntitledNeverForEndedStatuses(t *testing.T) {
	for _, st := range []billingv1.BillingStatus{stNone, stCanceled, stRefunded, stUnknown, stUnpaid, stPaused, stIncomplete} {
		if Entitled(st, Policy{PastDueEntitled: true}) {
			t.Errorf("Entitled(%v) = true", st)
		}
	}
}

func TestStatusNameRoundTrip(t *testing.T) {
	for v := range billingv1.BillingStatus_name {
		st := billingv1.BillingStatus(v)
		name := StatusName(st)
		if st == stUnknown {
			if name != "unknown" {
				t.Errorf("StatusName(UNSPECIFIED) = %q", name)
			}
			continue
		}
		if got := ParseStatusName(name); got != st {
			t.Errorf("ParseStatusName(%q) = %v, want %v", name, got, st)
		}
	}
	if StatusName(stPastDue) != "past_due" {
		t.Errorf("StatusName(PAST_DUE) = %q", StatusName(stPastDue))
	}
	if ParseStatusName("bogus") != stUnknown {
		t.Error("ParseStatusName(bogus) should be UNSPECIFIED")
	}
}

// TestCheckoutPayment covers the checkout rows of the mapping table.
func TestCheckoutPayment(t *testing.T) {
	tests := []struct {
		eventType, paymentStatus string
		paid, awaiting           bool
	}{
		{"checkout.session.completed", "paid", true, false},
		{"checkout.session.completed", "no_payment_required", true, false},
		{"checkout.session.completed", "unpaid", false, true},
		{"checkout.session.async_payment_succeeded", "paid", true, false},
		{"checkout.session.async_payment_succeeded", "unpaid", true, false},
		{"checkout.session.async_payment_failed", "unpaid", false, false},
		{"checkout.session.expired", "unpaid", false, false},
	}
	for _, tt := range tests {
		paid, awaiting := CheckoutPayment(tt.eventType, tt.paymentStatus)
		if paid != tt.paid || awaiting != tt.awaiting {
			t.Errorf("CheckoutPayment(%s, %s) = %v, %v; want %v, %v", tt.eventType, tt.paymentStatus, paid, awaiting, tt.paid, tt.awaiting)
		}
	}
}
