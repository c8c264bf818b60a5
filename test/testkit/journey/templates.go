package journey

import (
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Canonical statuses, for Want and Step.
const (
	StatusNone       = billingv1.BillingStatus_BILLING_STATUS_NONE
	StatusIncomplete = billingv1.BillingStatus_BILLING_STATUS_INCOMPLETE
	StatusTrialing   = billingv1.BillingStatus_BILLING_STATUS_TRIALING
	StatusActive     = billingv1.BillingStatus_BILLING_STATUS_ACTIVE
	StatusPastDue    = billingv1.BillingStatus_BILLING_STATUS_PAST_DUE
	StatusCanceled   = billingv1.BillingStatus_BILLING_STATUS_CANCELED
	StatusRefunded   = billingv1.BillingStatus_BILLING_STATUS_REFUNDED
)

// Template builds one customer's natural events.
type Template struct {
	Name  string
	Build func(b *B) (*Journey, error)
}

// Templates are the journeys a chaos or load run cycles through. Several
// put two or three events of one object in the same second, as Stripe
// does, so only previous_attributes can order them.
var Templates = []Template{
	{"subscription lifecycle", Lifecycle},
	{"trial converts", TrialConverts},
	{"one-time purchase refunded", PurchaseRefunded},
	{"dispute won", DisputeWon},
	{"renewal fails", RenewalFails},
	{"dispute lost", DisputeLost},
	{"dispute open", DisputeOpen},
	{"basil subscription", BasilSubscription},
	{"same-second chain", SameSecondChain},
}

// Lifecycle: checkout → subscription created (incomplete) → first invoice
// paid and active in the same second → renewal fails (past_due, same
// second as the invoice) → paid again → cancel at period end → deleted.
func Lifecycle(b *B) (*Journey, error) {
	sub, cs := b.ID("sub"), b.ID("cs")
	in1, in2 := b.ID("in", 1), b.ID("in", 2)
	renew := 30 * b.Day
	b.CustomerEvent("customer.created", 0)
	b.CheckoutSubscription(1, cs, sub)
	b.Subscription("customer.subscription.created", 1, sub, "incomplete", SubOpts{LatestInvoice: in1})
	b.Invoice("invoice.paid", 1, in1, sub, b.ID("ch", 1), b.ID("pi", 1), "paid", InvoiceOpts{Attempt: 1, Reason: "subscription_create"})
	b.Subscription("customer.subscription.updated", 1, sub, "active", SubOpts{LatestInvoice: in1, Prev: map[string]any{"status": "incomplete"}})
	b.Invoice("invoice.payment_failed", renew, in2, sub, b.ID("ch", 2), b.ID("pi", 2), "open", InvoiceOpts{Attempt: 1, NextAttempt: renew + 3*b.Day})
	b.Subscription("customer.subscription.updated", renew, sub, "past_due", SubOpts{LatestInvoice: in2, Prev: map[string]any{"status": "active"}})
	b.Invoice("invoice.paid", renew+3*b.Day, in2, sub, b.ID("ch", 3), b.ID("pi", 2), "paid", InvoiceOpts{Attempt: 2})
	b.Subscription("customer.subscription.updated", renew+3*b.Day, sub, "active", SubOpts{LatestInvoice: in2, Prev: map[string]any{"status": "past_due"}})
	b.Subscription("customer.subscription.updated", renew+10*b.Day, sub, "active", SubOpts{LatestInvoice: in2, Cancel: true, Prev: map[string]any{"cancel_at_period_end": false}})
	b.Subscription("customer.subscription.deleted", 2*renew, sub, "canceled", SubOpts{LatestInvoice: in2, Cancel: true, Reason: "cancellation_requested"})
	return b.Build("subscription lifecycle", Want{Status: StatusCanceled})
}

// TrialConverts: a trial starts, is warned about, then converts.
func TrialConverts(b *B) (*Journey, error) {
	sub, in1 := b.ID("sub"), b.ID("in", 1)
	b.CustomerEvent("customer.created", 0)
	b.Subscription("customer.subscription.created", 0, sub, "trialing", SubOpts{Trial: true})
	b.Subscription("customer.subscription.trial_will_end", 11*b.Day, sub, "trialing", SubOpts{Trial: true})
	b.Invoice("invoice.paid", 14*b.Day, in1, sub, b.ID("ch", 1), b.ID("pi", 1), "paid", InvoiceOpts{Attempt: 1})
	b.Subscription("customer.subscription.updated", 14*b.Day, sub, "active", SubOpts{Trial: true, LatestInvoice: in1, Prev: map[string]any{"status": "trialing"}})
	b.CustomerEvent("customer.updated", 14*b.Day+3600)
	return b.Build("trial converts", Want{Status: StatusActive, Entitled: true})
}

// purchase is a new customer's one-time Checkout purchase of $20 and its
// charge, a minute in; it returns the payment intent and the charge.
func (b *B) purchase() (pi, ch string) {
	pi, ch = b.ID("pi"), b.ID("ch")
	b.CustomerEvent("customer.created", 0)
	b.CheckoutPayment("checkout.session.completed", 60, b.ID("cs"), pi, 2000, "paid")
	b.Charge("charge.succeeded", 60, ch, pi, "", 2000, 0, 0)
	return pi, ch
}

// PurchaseRefunded: a one-time Checkout purchase, a partial refund, then a
// full refund and its refund object (which names only the charge).
func PurchaseRefunded(b *B) (*Journey, error) {
	pi, ch := b.purchase()
	b.PaymentIntent("payment_intent.succeeded", 60, pi, 2000, "succeeded")
	b.Charge("charge.refunded", 3600, ch, pi, "", 2000, 500, 0)
	b.Charge("charge.refunded", 7200, ch, pi, "", 2000, 2000, 500)
	b.Refund("refund.created", 7200, b.ID("re", 2), ch, 1500, "succeeded")
	return b.Build("one-time purchase refunded", Want{Status: StatusRefunded})
}

// DisputeWon: a paid purchase is disputed, reviewed, and won.
func DisputeWon(b *B) (*Journey, error) {
	_, ch := b.purchase()
	dp := b.ID("dp")
	b.Dispute("charge.dispute.created", b.Day, dp, ch, "needs_response", "", 2000)
	b.Dispute("charge.dispute.updated", 10*b.Day, dp, ch, "under_review", "needs_response", 2000)
	b.Dispute("charge.dispute.closed", 20*b.Day, dp, ch, "won", "under_review", 2000)
	return b.Build("dispute won", Want{Status: StatusActive, Entitled: true})
}

// RenewalFails: an active subscription whose renewal fails twice; nothing
// recovers it, so its invoice keeps one open ticket.
func RenewalFails(b *B) (*Journey, error) {
	sub, in1, in2 := b.ID("sub"), b.ID("in", 1), b.ID("in", 2)
	b.CustomerEvent("customer.created", 0)
	b.Subscription("customer.subscription.created", 0, sub, "active", SubOpts{LatestInvoice: in1})
	b.Invoice("invoice.paid", 0, in1, sub, b.ID("ch", 1), b.ID("pi", 1), "paid", InvoiceOpts{Attempt: 1, Reason: "subscription_create"})
	b.Invoice("invoice.payment_failed", 30*b.Day, in2, sub, b.ID("ch", 2), b.ID("pi", 2), "open", InvoiceOpts{Attempt: 1, NextAttempt: 33 * b.Day})
	b.Subscription("customer.subscription.updated", 30*b.Day, sub, "past_due", SubOpts{LatestInvoice: in2, Prev: map[string]any{"status": "active"}})
	b.Invoice("invoice.payment_failed", 33*b.Day, in2, sub, b.ID("ch", 3), b.ID("pi", 2), "open", InvoiceOpts{Attempt: 2, NextAttempt: 38 * b.Day})
	return b.Build("renewal fails", Want{Status: StatusPastDue, Entitled: true}, "invoice:"+in2)
}

// DisputeLost: a purchase disputed and lost, which refunds it.
func DisputeLost(b *B) (*Journey, error) {
	_, ch := b.purchase()
	dp := b.ID("dp")
	b.Dispute("charge.dispute.created", b.Day, dp, ch, "needs_response", "", 2000)
	b.Dispute("charge.dispute.updated", 5*b.Day, dp, ch, "under_review", "needs_response", 2000)
	b.Dispute("charge.dispute.closed", 30*b.Day, dp, ch, "lost", "under_review", 2000)
	return b.Build("dispute lost", Want{Status: StatusRefunded})
}

// DisputeOpen: a purchase disputed, still open: one urgent ticket.
func DisputeOpen(b *B) (*Journey, error) {
	pi, ch := b.purchase()
	dp := b.ID("dp")
	b.PaymentIntent("payment_intent.succeeded", 60, pi, 2000, "succeeded")
	b.Dispute("charge.dispute.created", 2*b.Day, dp, ch, "needs_response", "", 2000)
	return b.Build("dispute open", Want{Status: StatusActive, Entitled: true, DisputeOpen: true}, "dispute:"+dp)
}

// BasilSubscription: API 2025-03-31.basil shapes: the period on the
// subscription items, the invoice's subscription under parent.
func BasilSubscription(b *B) (*Journey, error) {
	sub, in1 := b.ID("sub"), b.ID("in", 1)
	b.CustomerEvent("customer.created", 0)
	b.Subscription("customer.subscription.created", 0, sub, "active", SubOpts{Basil: true, LatestInvoice: in1})
	b.Invoice("invoice.paid", 0, in1, sub, "", "", "paid", InvoiceOpts{Attempt: 1, Basil: true, Reason: "subscription_create"})
	b.Subscription("customer.subscription.updated", 20*b.Day, sub, "active", SubOpts{Basil: true, LatestInvoice: in1, Cancel: true, Prev: map[string]any{"cancel_at_period_end": false}})
	return b.Build("basil subscription", Want{Status: StatusActive, Entitled: true})
}

// SameSecondChain: in one second the customer schedules a cancellation and
// the renewal fails; the two snapshots are ordered only by their
// previous_attributes.
func SameSecondChain(b *B) (*Journey, error) {
	sub, in1, in2 := b.ID("sub"), b.ID("in", 1), b.ID("in", 2)
	s := 30 * b.Day
	b.CustomerEvent("customer.created", 0)
	b.Subscription("customer.subscription.created", 0, sub, "active", SubOpts{LatestInvoice: in1})
	b.Invoice("invoice.paid", 0, in1, sub, b.ID("ch", 1), b.ID("pi", 1), "paid", InvoiceOpts{Attempt: 1, Reason: "subscription_create"})
	b.Subscription("customer.subscription.updated", s, sub, "active", SubOpts{LatestInvoice: in1, Cancel: true, Prev: map[string]any{"cancel_at_period_end": false}})
	b.Subscription("customer.subscription.updated", s, sub, "past_due", SubOpts{LatestInvoice: in2, Cancel: true, Prev: map[string]any{"status": "active", "latest_invoice": in1}})
	b.Invoice("invoice.payment_failed", s, in2, sub, b.ID("ch", 2), b.ID("pi", 2), "open", InvoiceOpts{Attempt: 1, NextAttempt: s + 3*b.Day})
	return b.Build("same-second chain", Want{Status: StatusPastDue, Entitled: true}, "invoice:"+in2)
}
