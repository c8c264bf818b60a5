package canonical

import (
	"cmp"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Kind is what an event is about, for billing: the Stripe object it
// carries. Every consumer routes an event by its kind, so billing-state
// and crm-sync take in the same events and read each the same way.
type Kind int

const (
	// KindIgnored: nothing billing derives from (accounts, plans,
	// products, payment methods, invoice.upcoming previews, ...).
	KindIgnored Kind = iota
	// KindCustomer: customer.created, .updated and .deleted.
	KindCustomer
	// KindSubscription: a customer.subscription.* snapshot.
	KindSubscription
	// KindCheckout: a checkout.session.* event.
	KindCheckout
	// KindCharge: a charge.* event that carries the charge itself.
	KindCharge
	// KindPaymentIntent: a payment_intent.* event.
	KindPaymentIntent
	// KindInvoice: an invoice.* event about a real invoice (one with an id).
	KindInvoice
	// KindInvoicePayment: an invoice_payment object (API 2025-03-31.basil
	// and later), which ties an invoice to the payment that paid it.
	KindInvoicePayment
	// KindDispute: a charge.dispute.* event.
	KindDispute
	// KindRefund: a refund object (refund.*, charge.refund.updated).
	KindRefund
)

var kindNames = [...]string{
	KindIgnored:        "ignored",
	KindCustomer:       "customer",
	KindSubscription:   "subscription",
	KindCheckout:       "checkout",
	KindCharge:         "charge",
	KindPaymentIntent:  "payment_intent",
	KindInvoice:        "invoice",
	KindInvoicePayment: "invoice_payment",
	KindDispute:        "dispute",
	KindRefund:         "refund",
}

func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return "unknown"
	}
	return kindNames[k]
}

// Kinds are the kinds a consumer must handle: every kind but KindIgnored.
func Kinds() []Kind {
	out := make([]Kind, 0, len(kindNames)-1)
	for k := KindIgnored + 1; int(k) < len(kindNames); k++ {
		out = append(out, k)
	}
	return out
}

// NamesOnlyCharge reports whether events of this kind name a charge rather
// than a customer (disputes and refunds): their customer is found through
// the charge → customer link that earlier events taught, and may not be
// known yet.
func (k Kind) NamesOnlyCharge() bool { return k == KindDispute || k == KindRefund }

// Facts is what one event says about billing, read the same way by every
// consumer: each stores them its own way.
type Facts struct {
	Kind Kind
	// CustomerDeleted: the event is customer.deleted. Its object is the
	// customer's last state; it ends the customer rather than update its
	// profile.
	CustomerDeleted bool
	// PaymentFailed: the event is invoice.payment_failed, the customer's
	// latest failed payment.
	PaymentFailed bool
	// Link is the charge → customer link the event teaches: the charge and
	// payment intent it names, which later disputes and refunds (naming
	// only the charge) find their customer through. Zero for customer and
	// subscription events.
	Link ChargeLink
	// Payment is the payment the event is about. Zero unless it is a
	// charge, a payment intent, an invoice payment or a one-time purchase
	// through Checkout.
	Payment Payment
	// Dispute is where a dispute stands; zero for other kinds.
	Dispute Dispute
}

// ChargeLink names a charge and its payment intent; either may be empty.
type ChargeLink struct {
	ChargeID, PaymentIntentID string
}

// Refs are the link's non-empty ids, the charge first.
func (l ChargeLink) Refs() []string {
	var refs []string
	for _, r := range [...]string{l.ChargeID, l.PaymentIntentID} {
		if r != "" {
			refs = append(refs, r)
		}
	}
	return refs
}

// Payment is one event's view of a payment. Each flag only ever turns
// true for a payment, so services merge events' views in any order.
type Payment struct {
	// Key names the payment the same way in every service, so that
	// Derive breaks ties between purchases identically: the payment
	// intent, else the Checkout session (checkout events) or the charge.
	Key string
	// FromCheckout: a Checkout session in payment mode, a one-time
	// purchase. A subscription-mode session carries no payment of its own:
	// the subscription's events carry its status.
	FromCheckout bool
	// Paid: the money arrived (see CheckoutPayment for checkouts; a charge
	// or payment intent that succeeded).
	Paid bool
	// AwaitingAsync: a checkout completed unpaid by an asynchronous method
	// that settles days later.
	AwaitingAsync bool
	// AsyncFailed: checkout.session.async_payment_failed.
	AsyncFailed bool
}

// Dispute is where a dispute stands. Both facts only move one way: a
// dispute moves toward closed, and a lost one stays lost.
type Dispute struct {
	Closed, Lost bool
}

// Classify reads the billing facts of an event. It routes by the object
// the event carries rather than by its type alone (see ObjectOf): a few
// real payloads carry an object their type does not suggest, and the
// object is what the fields describe.
func Classify(ev *billingv1.BillingEvent) Facts {
	typ := ev.GetType()
	f := Facts{
		Kind:            kindOf(ev),
		CustomerDeleted: typ == "customer.deleted",
		PaymentFailed:   typ == "invoice.payment_failed",
	}
	link := ChargeLink{ChargeID: ev.GetChargeId(), PaymentIntentID: ev.GetPaymentIntentId()}
	switch f.Kind {
	case KindCheckout:
		// A session names its payment intent, never a charge.
		f.Link = ChargeLink{PaymentIntentID: ev.GetPaymentIntentId()}
		if ev.GetCheckoutMode() == "payment" {
			paid, awaiting := CheckoutPayment(typ, ev.GetPaymentStatus())
			f.Payment = Payment{
				Key:           cmp.Or(ev.GetPaymentIntentId(), ev.GetCheckoutSessionId()),
				FromCheckout:  true,
				Paid:          paid,
				AwaitingAsync: awaiting,
				AsyncFailed:   typ == "checkout.session.async_payment_failed",
			}
		}
	case KindCharge, KindPaymentIntent:
		f.Link = link
		f.Payment = Payment{Key: cmp.Or(link.PaymentIntentID, link.ChargeID), Paid: ev.GetStatus() == "succeeded"}
	case KindInvoicePayment:
		// An invoice payment's status is open, paid or canceled: what it
		// paid for shows in the invoice's own events.
		f.Link = link
		f.Payment = Payment{Key: cmp.Or(link.PaymentIntentID, link.ChargeID)}
	case KindInvoice:
		f.Link = link
	case KindDispute:
		f.Link = link
		f.Dispute = Dispute{Closed: disputeClosed(typ, ev.GetStatus()), Lost: ev.GetStatus() == "lost"}
	case KindRefund:
		f.Link = link
	}
	return f
}

func kindOf(ev *billingv1.BillingEvent) Kind {
	typ := ev.GetType()
	switch ObjectOf(ev) {
	case "customer":
		if typ == "customer.created" || typ == "customer.updated" || typ == "customer.deleted" {
			return KindCustomer
		}
	case "subscription":
		if IsSubscriptionSnapshot(typ) {
			return KindSubscription
		}
	case "checkout.session":
		return KindCheckout
	case "charge":
		return KindCharge
	case "payment_intent":
		return KindPaymentIntent
	case "invoice":
		if ev.GetInvoiceId() != "" { // invoice.upcoming previews have no id
			return KindInvoice
		}
	case "invoice_payment":
		return KindInvoicePayment
	case "dispute":
		return KindDispute
	case "refund":
		return KindRefund
	}
	return KindIgnored
}

// disputeClosed: after these nothing about the dispute changes.
func disputeClosed(eventType, status string) bool {
	if eventType == "charge.dispute.closed" {
		return true
	}
	switch status {
	case "won", "lost", "warning_closed", "prevented":
		return true
	}
	return false
}
