package journey

import (
	"crypto/rand"
	"encoding/hex"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Customer builds BillingEvents as ingress publishes them, without a Stripe
// payload behind them, for tests of the consumers that read only the
// normalised fields. Journeys that must read like Stripe's use Builder.

// ID returns a fresh Stripe-style id with prefix, so tests sharing a stream
// never collide.
func ID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + "_" + hex.EncodeToString(b)
}

// Customer is who the events are about.
type Customer struct {
	ID, Email, Name, Subscription string
}

// NewCustomer returns a customer with fresh ids.
func NewCustomer() Customer {
	id := ID("cus")
	return Customer{ID: id, Email: id + "@example.com", Name: "Test Customer", Subscription: ID("sub")}
}

func (c Customer) base(typ string, created time.Time) *billingv1.BillingEvent {
	return &billingv1.BillingEvent{
		EventId: ID("evt"), Type: typ, Created: timestamppb.New(created), ApiVersion: "2025-03-31.basil",
		CustomerId: c.ID, Email: c.Email, CustomerName: c.Name, SubscriptionId: c.Subscription,
		ReceivedAt: timestamppb.New(created.Add(200 * time.Millisecond)),
	}
}

// InvoiceFailed is a renewal that could not be charged; attempt counts up.
func (c Customer) InvoiceFailed(invoice string, attempt int64, created time.Time) *billingv1.BillingEvent {
	ev := c.base("invoice.payment_failed", created)
	ev.ObjectType, ev.ObjectId, ev.InvoiceId = "invoice", invoice, invoice
	ev.PaymentIntentId = "pi_" + invoice[3:]
	ev.AmountDue, ev.Currency, ev.Status = 4900, "usd", "open"
	ev.BillingReason, ev.AttemptCount = "subscription_cycle", attempt
	ev.NextPaymentAttempt = timestamppb.New(created.Add(72 * time.Hour).Truncate(time.Second))
	ev.FailureCode, ev.FailureMessage = "card_declined", "Your card was declined."
	ev.PriceId, ev.Interval, ev.IntervalCount, ev.UnitAmount = "price_pro_monthly", "month", 1, 4900
	return ev
}

// InvoicePaid settles the invoice (type invoice.paid or invoice.payment_succeeded).
func (c Customer) InvoicePaid(typ, invoice string, created time.Time) *billingv1.BillingEvent {
	ev := c.base(typ, created)
	ev.ObjectType, ev.ObjectId, ev.InvoiceId = "invoice", invoice, invoice
	ev.AmountPaid, ev.Currency, ev.Status = 4900, "usd", "paid"
	return ev
}

// CheckoutPaid is a successful one-time purchase.
func (c Customer) CheckoutPaid(created time.Time) *billingv1.BillingEvent {
	ev := c.base("checkout.session.completed", created)
	cs := ID("cs")
	ev.ObjectType, ev.ObjectId, ev.CheckoutSessionId = "checkout.session", cs, cs
	ev.CheckoutMode, ev.PaymentStatus, ev.Status = "payment", "paid", "complete"
	ev.Amount, ev.Currency, ev.SubscriptionId = 9900, "usd", ""
	return ev
}

// Dispute opens a chargeback on a charge.
func (c Customer) Dispute(amount int64, reason string, created time.Time) *billingv1.BillingEvent {
	ev := c.base("charge.dispute.created", created)
	dp := ID("dp")
	ev.ObjectType, ev.ObjectId, ev.DisputeId, ev.ChargeId = "dispute", dp, dp, ID("ch")
	ev.Amount, ev.Currency, ev.DisputeReason, ev.Status = amount, "eur", reason, "needs_response"
	return ev
}

// SubscriptionDeleted ends the subscription for reason; latestInvoice, when
// set, is carried in the raw JSON like Stripe's latest_invoice.
func (c Customer) SubscriptionDeleted(reason, latestInvoice string, created time.Time) *billingv1.BillingEvent {
	ev := c.base("customer.subscription.deleted", created)
	ev.ObjectType, ev.ObjectId, ev.Status, ev.CancellationReason = "subscription", c.Subscription, "canceled", reason
	if latestInvoice != "" {
		ev.RawJson = []byte(`{"data":{"object":{"id":"` + c.Subscription + `","object":"subscription","latest_invoice":"` + latestInvoice + `"}}}`)
	}
	return ev
}

// ChargeSucceeded is the customer's charge ch (with its payment intent)
// succeeding: the event that teaches support-notify whose charge it is.
// A customer with no ID is a guest: the charge carries only the billing
// e-mail.
func (c Customer) ChargeSucceeded(ch string, created time.Time) *billingv1.BillingEvent {
	ev := c.base("charge.succeeded", created)
	ev.ObjectType, ev.ObjectId, ev.ChargeId, ev.PaymentIntentId = "charge", ch, ch, "pi_"+ch[3:]
	ev.Amount, ev.Currency, ev.Status, ev.SubscriptionId = 15000, "eur", "succeeded", ""
	return ev
}

// DisputeOnCharge opens a chargeback on charge ch as Stripe sends it: the
// dispute names the charge and its payment intent, never the customer.
func DisputeOnCharge(ch string, amount int64, reason string, created time.Time) *billingv1.BillingEvent {
	dp := ID("dp")
	return &billingv1.BillingEvent{
		EventId: ID("evt"), Type: "charge.dispute.created", Created: timestamppb.New(created), ApiVersion: "2025-03-31.basil",
		ObjectType: "dispute", ObjectId: dp, DisputeId: dp, ChargeId: ch, PaymentIntentId: "pi_" + ch[3:],
		Amount: amount, Currency: "eur", DisputeReason: reason, Status: "needs_response",
		ReceivedAt: timestamppb.New(created.Add(200 * time.Millisecond)),
	}
}
