// Package canonical is the one definition of a customer's billing truth.
//
// It reads what an event means for billing (Classify: its kind, the payment
// it is about, the charge it ties to a customer), turns Stripe objects into
// the canonical status and entitlement (DESIGN.md, "Canonical billing
// state"), derives a customer's status from all of its subscriptions and
// one-time purchases, computes MRR, and decides whether an incoming
// subscription snapshot may replace the stored one when Stripe delivers
// events out of order.
//
// Everything here is a pure function of its arguments: no I/O, no clock, no
// globals. billing-state and crm-sync both call these functions, so the CRM
// and the gRPC API can never disagree about a customer.
package canonical
