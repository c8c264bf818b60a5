package journey

import "strings"

// Consumers, by durable name.
const (
	BillingState = "billing-state"
	CRMSync      = "crm-sync"
	Tickets      = "support-notify"
	Alerts       = "support-notify-alerts"
)

// HandledBy reports whether the durable acts on the event and so records it
// as processed: billing-state.processed_events, crm.processed_events,
// support.processed_events (tickets) and support.alerts_sent (alerts).
// It restates each service's contract for the event types this package
// builds; a change in a service's scope shows up as a mismatch here.
func (e *Event) HandledBy(durable string) bool {
	t := e.Type
	switch durable {
	case BillingState:
		switch {
		case t == "customer.created", t == "customer.updated", t == "customer.deleted":
			return true
		case strings.HasPrefix(t, "customer.subscription."), strings.HasPrefix(t, "checkout.session."),
			strings.HasPrefix(t, "charge."), strings.HasPrefix(t, "refund."), strings.HasPrefix(t, "payment_intent."):
			return true
		case strings.HasPrefix(t, "invoice."):
			return e.Invoice != ""
		}
		return false
	case CRMSync:
		switch t {
		case "customer.created", "customer.updated", "customer.deleted",
			"checkout.session.completed", "checkout.session.async_payment_succeeded", "checkout.session.async_payment_failed",
			"invoice.paid", "invoice.payment_succeeded", "invoice.payment_failed",
			"charge.refund.updated", "refund.created", "refund.updated", "refund.failed",
			"charge.succeeded", "charge.refunded", "charge.captured", "charge.updated",
			"charge.dispute.created", "charge.dispute.updated", "charge.dispute.closed",
			"charge.dispute.funds_withdrawn", "charge.dispute.funds_reinstated",
			"payment_intent.succeeded":
			return true
		}
		return strings.HasPrefix(t, "customer.subscription.")
	case Tickets:
		return e.TicketAction() != ""
	case Alerts:
		return e.Alerts()
	}
	return false
}

// TicketAction is what support-notify's default rules do with the event on
// the ticket side: "ticket", "resolve" or "".
func (e *Event) TicketAction() string {
	switch e.Type {
	case "invoice.payment_failed", "charge.dispute.created", "checkout.session.async_payment_failed",
		"invoice.payment_action_required":
		return "ticket"
	case "customer.subscription.deleted":
		if e.CancellationReason == "payment_failed" {
			return "ticket"
		}
	case "payment_intent.payment_failed":
		if e.OutsideInvoice {
			return "ticket"
		}
	case "invoice.paid", "invoice.payment_succeeded", "checkout.session.async_payment_succeeded",
		"payment_intent.succeeded", "charge.dispute.closed":
		return "resolve"
	}
	return ""
}

// Alerts reports whether the default rules send an ops alert.
func (e *Event) Alerts() bool {
	switch e.Type {
	case "invoice.payment_failed", "charge.dispute.created", "customer.subscription.deleted", "charge.refunded":
		return true
	}
	return false
}

// TicketObject is the support object the event is about
// ("invoice:in_...", "dispute:dp_...").
func (e *Event) TicketObject() string {
	switch {
	case strings.HasPrefix(e.Type, "charge.dispute."):
		return "dispute:" + e.Dispute
	case strings.HasPrefix(e.Type, "invoice."):
		return "invoice:" + e.Invoice
	case strings.HasPrefix(e.Type, "customer.subscription."):
		return "subscription:" + e.Subscription
	case strings.HasPrefix(e.Type, "checkout.session."):
		return "checkout:" + e.Checkout
	case strings.HasPrefix(e.Type, "payment_intent."):
		return "payment_intent:" + e.PaymentIntent
	}
	return ""
}
