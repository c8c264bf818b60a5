package canonical

import (
	"strings"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Stripe subscription statuses, as Stripe spells them.
const (
	StripeIncomplete        = "incomplete"
	StripeIncompleteExpired = "incomplete_expired"
	StripeTrialing          = "trialing"
	StripeActive            = "active"
	StripePastDue           = "past_due"
	StripeUnpaid            = "unpaid"
	StripePaused            = "paused"
	StripeCanceled          = "canceled"
)

// SubscriptionStatus maps a Stripe subscription status to the canonical
// status. incomplete_expired is a subscription whose first payment never
// succeeded; for the customer it is as over as a canceled one. An unknown or
// empty status maps to BILLING_STATUS_UNSPECIFIED, which never entitles.
func SubscriptionStatus(stripeStatus string) billingv1.BillingStatus {
	switch strings.ToLower(strings.TrimSpace(stripeStatus)) {
	case StripeTrialing:
		return billingv1.BillingStatus_BILLING_STATUS_TRIALING
	case StripeActive:
		return billingv1.BillingStatus_BILLING_STATUS_ACTIVE
	case StripePastDue:
		return billingv1.BillingStatus_BILLING_STATUS_PAST_DUE
	case StripeUnpaid:
		return billingv1.BillingStatus_BILLING_STATUS_UNPAID
	case StripePaused:
		return billingv1.BillingStatus_BILLING_STATUS_PAUSED
	case StripeIncomplete:
		return billingv1.BillingStatus_BILLING_STATUS_INCOMPLETE
	case StripeIncompleteExpired, StripeCanceled:
		return billingv1.BillingStatus_BILLING_STATUS_CANCELED
	}
	return billingv1.BillingStatus_BILLING_STATUS_UNSPECIFIED
}

// Policy holds the entitlement settings a business may choose.
type Policy struct {
	// PastDueEntitled keeps access during dunning: while a subscription is
	// past_due, Stripe's Smart Retries are still trying the card and most
	// customers recover. PAST_DUE_ENTITLED, default true.
	PastDueEntitled bool
}

// DefaultPolicy is the policy when nothing is configured.
func DefaultPolicy() Policy { return Policy{PastDueEntitled: true} }

// Entitled reports whether a customer in status may use the paid product now.
func Entitled(status billingv1.BillingStatus, p Policy) bool {
	switch status {
	case billingv1.BillingStatus_BILLING_STATUS_TRIALING, billingv1.BillingStatus_BILLING_STATUS_ACTIVE:
		return true
	case billingv1.BillingStatus_BILLING_STATUS_PAST_DUE:
		return p.PastDueEntitled
	}
	return false
}

// StatusName is the lower-case canonical name ("active", "past_due", ...),
// as DESIGN.md and the CRM spell it. UNSPECIFIED is "unknown".
func StatusName(s billingv1.BillingStatus) string {
	name, ok := billingv1.BillingStatus_name[int32(s)]
	if !ok || s == billingv1.BillingStatus_BILLING_STATUS_UNSPECIFIED {
		return "unknown"
	}
	return strings.ToLower(strings.TrimPrefix(name, "BILLING_STATUS_"))
}

// ParseStatusName is the inverse of StatusName; unknown names give
// UNSPECIFIED.
func ParseStatusName(name string) billingv1.BillingStatus {
	v, ok := billingv1.BillingStatus_value["BILLING_STATUS_"+strings.ToUpper(strings.TrimSpace(name))]
	if !ok {
		return billingv1.BillingStatus_BILLING_STATUS_UNSPECIFIED
	}
	return billingv1.BillingStatus(v)
}

// CheckoutPayment says what a checkout session event means for a one-time
// purchase: paid (the money arrived), or awaiting an asynchronous payment
// method (bank debits and transfers complete the session unpaid and settle
// days later). Neither means the purchase failed or expired.
func CheckoutPayment(eventType, paymentStatus string) (paid, awaitingAsync bool) {
	switch eventType {
	case "checkout.session.async_payment_succeeded":
		return true, false
	case "checkout.session.async_payment_failed", "checkout.session.expired":
		return false, false
	}
	switch paymentStatus {
	case "paid", "no_payment_required":
		return true, false
	case "unpaid":
		return false, true
	}
	return false, false
}
