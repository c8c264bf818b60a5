// Package eventgen builds Stripe webhook bodies for tests and runs them
// through stripeevent.Normalize, so tests feed crm-sync the same
// BillingEvents ingress would publish, raw_json included.
package eventgen

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Obj is a Stripe object as JSON-ready values.
type Obj = map[string]any

// Gen numbers events.
type Gen struct {
	Prefix string
	n      int
}

// Event builds and normalises one event. previous, when not nil, becomes
// data.previous_attributes.
func (g *Gen) Event(typ string, at time.Time, object Obj, previous Obj) (*billingv1.BillingEvent, error) {
	g.n++
	data := Obj{"object": object}
	if previous != nil {
		data["previous_attributes"] = previous
	}
	env := Obj{
		"id":               fmt.Sprintf("evt_%s%04d", g.Prefix, g.n),
		"object":           "event",
		"api_version":      "2023-10-16",
		"created":          at.Unix(),
		"livemode":         false,
		"pending_webhooks": 1,
		"request":          Obj{"id": nil, "idempotency_key": nil},
		"type":             typ,
		"data":             data,
	}
	raw, err := json.Marshal(env)
	if err != nil {
		return nil, err
	}
	return stripeevent.Normalize(raw)
}

// Customer is a customer object.
func Customer(id, email, name, userID string) Obj {
	o := Obj{"id": id, "object": "customer", "name": name, "metadata": Obj{}}
	if email != "" {
		o["email"] = email
	} else {
		o["email"] = nil
	}
	if userID != "" {
		o["metadata"] = Obj{"user_id": userID}
	}
	return o
}

// Price is a recurring price.
type Price struct {
	ID         string
	UnitAmount int64
	Interval   string
	Currency   string
}

// Sub describes a subscription snapshot.
type Sub struct {
	ID, Customer, Status string
	Price                Price
	Quantity             int64
	Created, PeriodEnd   time.Time
	CancelAtPeriodEnd    bool
}

// Subscription is a subscription object in the 2023-10-16 shape.
func Subscription(s Sub) Obj {
	q := s.Quantity
	if q == 0 {
		q = 1
	}
	return Obj{
		"id": s.ID, "object": "subscription", "customer": s.Customer, "status": s.Status,
		"created": s.Created.Unix(), "current_period_end": s.PeriodEnd.Unix(),
		"cancel_at_period_end": s.CancelAtPeriodEnd, "currency": s.Price.Currency, "metadata": Obj{},
		"items": Obj{"object": "list", "data": []Obj{{
			"id": "si_" + s.ID, "object": "subscription_item", "quantity": q,
			"price": Obj{"id": s.Price.ID, "object": "price", "unit_amount": s.Price.UnitAmount, "currency": s.Price.Currency,
				"recurring": Obj{"interval": s.Price.Interval, "interval_count": 1}},
		}}},
	}
}

// Checkout is a completed checkout session.
func Checkout(id, customer, mode, paymentStatus, paymentIntent, subscription, email string, amount int64, currency string) Obj {
	o := Obj{
		"id": id, "object": "checkout.session", "mode": mode, "payment_status": paymentStatus, "status": "complete",
		"amount_total": amount, "currency": currency, "customer": customer,
		"customer_details": Obj{"email": email}, "metadata": Obj{},
	}
	if paymentIntent != "" {
		o["payment_intent"] = paymentIntent
	}
	if subscription != "" {
		o["subscription"] = subscription
	}
	return o
}

// Invoice is an invoice for a subscription.
func Invoice(id, customer, subscription, charge, paymentIntent, status string, amount int64, currency string) Obj {
	return Obj{
		"id": id, "object": "invoice", "customer": customer, "subscription": subscription, "status": status,
		"total": amount, "amount_due": amount, "amount_paid": map[bool]int64{true: amount}[status == "paid"],
		"currency": currency, "charge": charge, "payment_intent": paymentIntent, "billing_reason": "subscription_cycle",
	}
}

// Charge is a charge; invoice may be "".
func Charge(id, customer, paymentIntent, invoice string, amount, refunded int64, currency string) Obj {
	o := Obj{
		"id": id, "object": "charge", "customer": customer, "payment_intent": paymentIntent,
		"amount": amount, "amount_refunded": refunded, "refunded": refunded >= amount && amount > 0,
		"status": "succeeded", "paid": true, "currency": currency,
	}
	if invoice != "" {
		o["invoice"] = invoice
	}
	return o
}

// Dispute is a dispute on a charge.
func Dispute(id, charge, paymentIntent, status string, amount int64, currency string) Obj {
	return Obj{
		"id": id, "object": "dispute", "charge": charge, "payment_intent": paymentIntent,
		"status": status, "amount": amount, "currency": currency, "reason": "fraudulent",
	}
}
