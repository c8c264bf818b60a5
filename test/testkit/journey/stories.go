package journey

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Obj is a Stripe object as JSON-ready values.
type Obj = map[string]any

// ObjectGen builds events around objects it is given whole, in the 2023-10-16
// shape, rather than around a fixture: for tests that shape every field
// themselves. It numbers the events it makes.
type ObjectGen struct {
	Prefix string
	n      int
}

// Event builds and normalises one event. previous, when not nil, becomes
// data.previous_attributes.
func (g *ObjectGen) Event(typ string, at time.Time, object Obj, previous Obj) (*billingv1.BillingEvent, error) {
	g.n++
	body, err := json.Marshal(Obj{
		"object": "event", "pending_webhooks": 1, "request": Obj{"id": nil, "idempotency_key": nil},
		"data": Obj{"object": object},
	})
	if err != nil {
		return nil, err
	}
	raw, err := Rewrite(body, Envelope{ID: fmt.Sprintf("evt_%s%04d", g.Prefix, g.n), Type: typ, Created: at.Unix(), APIVersion: "2023-10-16"}, nil, previous)
	if err != nil {
		return nil, err
	}
	return stripeevent.Normalize(raw)
}

// CustomerObject is a customer object.
func CustomerObject(id, email, name, userID string) Obj {
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

// SubscriptionObject is a subscription object in the 2023-10-16 shape.
func SubscriptionObject(s Sub) Obj {
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

// CheckoutObject is a completed checkout session.
func CheckoutObject(id, customer, mode, paymentStatus, paymentIntent, subscription, email string, amount int64, currency string) Obj {
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

// InvoiceObject is an invoice for a subscription.
func InvoiceObject(id, customer, subscription, charge, paymentIntent, status string, amount int64, currency string) Obj {
	return Obj{
		"id": id, "object": "invoice", "customer": customer, "subscription": subscription, "status": status,
		"total": amount, "amount_due": amount, "amount_paid": map[bool]int64{true: amount}[status == "paid"],
		"currency": currency, "charge": charge, "payment_intent": paymentIntent, "billing_reason": "subscription_cycle",
	}
}

// ChargeObject is a charge; invoice may be "".
func ChargeObject(id, customer, paymentIntent, invoice string, amount, refunded int64, currency string) Obj {
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

// DisputeObject is a dispute on a charge.
func DisputeObject(id, charge, paymentIntent, status string, amount int64, currency string) Obj {
	return Obj{
		"id": id, "object": "dispute", "charge": charge, "payment_intent": paymentIntent,
		"status": status, "amount": amount, "currency": currency, "reason": "fraudulent",
	}
}

// Story is one customer's events in Stripe's order, built by Gen.
type Story struct {
	Name       string
	CustomerID string
	// Subscriptions the journey creates, each of which must become one deal.
	Subscriptions []string
	Events        []*billingv1.BillingEvent
}

// Stories builds the standard stories for one run; tag keeps ids apart
// between runs sharing a database and a CRM.
func Stories(tag string, t0 time.Time) ([]Story, error) {
	g := &ObjectGen{Prefix: tag}
	var out []Story
	var err error
	add := func(j Story, e error) {
		if err == nil && e != nil {
			err = e
		}
		out = append(out, j)
	}
	add(lifecycleStory(g, tag, t0))
	add(trialStory(g, tag, t0))
	add(refundStory(g, tag, t0))
	add(disputeStory(g, tag, t0))
	add(twoSubscriptionsStory(g, tag, t0))
	return out, err
}

type storyBuilder struct {
	g   *ObjectGen
	evs []*billingv1.BillingEvent
	err error
}

func (b *storyBuilder) add(typ string, at time.Time, o, prev Obj) {
	if b.err != nil {
		return
	}
	ev, err := b.g.Event(typ, at, o, prev)
	if err != nil {
		b.err = fmt.Errorf("%s: %w", typ, err)
		return
	}
	b.evs = append(b.evs, ev)
}

// lifecycleStory: checkout → subscription created (incomplete) → invoice paid →
// active (same second, ordered by previous_attributes) → payment failed →
// past_due → paid again → active → cancel_at_period_end → deleted.
func lifecycleStory(g *ObjectGen, tag string, t0 time.Time) (Story, error) {
	cus, sub := "cus_"+tag+"life", "sub_"+tag+"life"
	price := Price{ID: "price_" + tag + "pro", UnitAmount: 2900, Interval: "month", Currency: "usd"}
	b := &storyBuilder{g: g}
	at := t0
	s := Sub{ID: sub, Customer: cus, Status: "incomplete", Price: price, Created: at.Add(time.Minute), PeriodEnd: at.Add(31 * 24 * time.Hour)}
	b.add("customer.created", at, CustomerObject(cus, "life-"+tag+"@example.com", "Ada Lovelace", "user-"+tag+"-1"), nil)
	b.add("checkout.session.completed", at.Add(time.Minute), CheckoutObject("cs_"+tag+"life", cus, "subscription", "paid", "", sub, "life-"+tag+"@example.com", 2900, "usd"), nil)
	b.add("customer.subscription.created", at.Add(time.Minute), SubscriptionObject(s), nil)
	b.add("invoice.paid", at.Add(time.Minute+time.Second), InvoiceObject("in_"+tag+"life1", cus, sub, "ch_"+tag+"life1", "pi_"+tag+"life1", "paid", 2900, "usd"), nil)
	s.Status = "active"
	b.add("customer.subscription.updated", at.Add(time.Minute+time.Second), SubscriptionObject(s), Obj{"status": "incomplete"})
	at = at.Add(31 * 24 * time.Hour)
	b.add("invoice.payment_failed", at, InvoiceObject("in_"+tag+"life2", cus, sub, "ch_"+tag+"life2", "pi_"+tag+"life2", "open", 2900, "usd"), nil)
	s.Status = "past_due"
	b.add("customer.subscription.updated", at, SubscriptionObject(s), Obj{"status": "active"})
	at = at.Add(3 * 24 * time.Hour)
	b.add("invoice.paid", at, InvoiceObject("in_"+tag+"life2", cus, sub, "ch_"+tag+"life3", "pi_"+tag+"life2", "paid", 2900, "usd"), nil)
	s.Status = "active"
	s.PeriodEnd = at.Add(31 * 24 * time.Hour)
	b.add("customer.subscription.updated", at, SubscriptionObject(s), Obj{"status": "past_due"})
	at = at.Add(10 * 24 * time.Hour)
	s.CancelAtPeriodEnd = true
	b.add("customer.subscription.updated", at, SubscriptionObject(s), Obj{"cancel_at_period_end": false})
	at = s.PeriodEnd
	s.Status = "canceled"
	b.add("customer.subscription.deleted", at, SubscriptionObject(s), nil)
	return Story{Name: "lifecycle", CustomerID: cus, Subscriptions: []string{sub}, Events: b.evs}, b.err
}

// trialStory: a customer without an email (contact keyed by
// stripe_customer_id), a trial that converts, then the email arrives.
func trialStory(g *ObjectGen, tag string, t0 time.Time) (Story, error) {
	cus, sub := "cus_"+tag+"trial", "sub_"+tag+"trial"
	price := Price{ID: "price_" + tag + "annual", UnitAmount: 24000, Interval: "year", Currency: "usd"}
	b := &storyBuilder{g: g}
	at := t0.Add(time.Hour)
	s := Sub{ID: sub, Customer: cus, Status: "trialing", Price: price, Created: at, PeriodEnd: at.Add(14 * 24 * time.Hour)}
	b.add("customer.created", at, CustomerObject(cus, "", "", ""), nil)
	b.add("customer.subscription.created", at, SubscriptionObject(s), nil)
	at = at.Add(14 * 24 * time.Hour)
	s.Status = "active"
	s.PeriodEnd = at.Add(365 * 24 * time.Hour)
	b.add("customer.subscription.updated", at, SubscriptionObject(s), Obj{"status": "trialing"})
	b.add("invoice.paid", at, InvoiceObject("in_"+tag+"trial1", cus, sub, "ch_"+tag+"trial1", "pi_"+tag+"trial1", "paid", 24000, "usd"), nil)
	b.add("customer.updated", at.Add(time.Hour), CustomerObject(cus, "trial-"+tag+"@example.com", "Grace Hopper", ""), Obj{"email": nil})
	return Story{Name: "trial", CustomerID: cus, Subscriptions: []string{sub}, Events: b.evs}, b.err
}

// refundStory: a paid checkout in payment mode, fully refunded.
func refundStory(g *ObjectGen, tag string, t0 time.Time) (Story, error) {
	cus, pi, ch := "cus_"+tag+"once", "pi_"+tag+"once", "ch_"+tag+"once"
	b := &storyBuilder{g: g}
	at := t0.Add(2 * time.Hour)
	b.add("customer.created", at, CustomerObject(cus, "once-"+tag+"@example.com", "Alan Turing", ""), nil)
	b.add("checkout.session.completed", at.Add(time.Minute), CheckoutObject("cs_"+tag+"once", cus, "payment", "paid", pi, "", "once-"+tag+"@example.com", 5000, "usd"), nil)
	b.add("charge.succeeded", at.Add(time.Minute), ChargeObject(ch, cus, pi, "", 5000, 0, "usd"), nil)
	b.add("charge.refunded", at.Add(48*time.Hour), ChargeObject(ch, cus, pi, "", 5000, 5000, "usd"), Obj{"amount_refunded": 0, "refunded": false})
	return Story{Name: "refund", CustomerID: cus, Events: b.evs}, b.err
}

// disputeStory: a one-time purchase disputed, then the dispute won.
func disputeStory(g *ObjectGen, tag string, t0 time.Time) (Story, error) {
	cus, pi, ch, dp := "cus_"+tag+"disp", "pi_"+tag+"disp", "ch_"+tag+"disp", "dp_"+tag+"disp"
	b := &storyBuilder{g: g}
	at := t0.Add(3 * time.Hour)
	b.add("customer.created", at, CustomerObject(cus, "disp-"+tag+"@example.com", "Edsger Dijkstra", ""), nil)
	b.add("checkout.session.completed", at.Add(time.Minute), CheckoutObject("cs_"+tag+"disp", cus, "payment", "paid", pi, "", "disp-"+tag+"@example.com", 9900, "usd"), nil)
	b.add("charge.succeeded", at.Add(time.Minute), ChargeObject(ch, cus, pi, "", 9900, 0, "usd"), nil)
	b.add("charge.dispute.created", at.Add(10*24*time.Hour), DisputeObject(dp, ch, pi, "needs_response", 9900, "usd"), nil)
	b.add("charge.dispute.closed", at.Add(40*24*time.Hour), DisputeObject(dp, ch, pi, "won", 9900, "usd"), Obj{"status": "under_review"})
	return Story{Name: "dispute", CustomerID: cus, Events: b.evs}, b.err
}

// twoSubscriptionsStory: one subscription ends, another stays active: two
// deals, and the customer is active.
func twoSubscriptionsStory(g *ObjectGen, tag string, t0 time.Time) (Story, error) {
	cus, s1, s2 := "cus_"+tag+"two", "sub_"+tag+"two1", "sub_"+tag+"two2"
	basic := Price{ID: "price_" + tag + "basic", UnitAmount: 900, Interval: "month", Currency: "usd"}
	team := Price{ID: "price_" + tag + "team", UnitAmount: 1500, Interval: "month", Currency: "usd"}
	b := &storyBuilder{g: g}
	at := t0.Add(4 * time.Hour)
	a := Sub{ID: s1, Customer: cus, Status: "active", Price: basic, Created: at, PeriodEnd: at.Add(30 * 24 * time.Hour)}
	c := Sub{ID: s2, Customer: cus, Status: "active", Price: team, Quantity: 3, Created: at.Add(time.Hour), PeriodEnd: at.Add(30 * 24 * time.Hour)}
	b.add("customer.created", at, CustomerObject(cus, "two-"+tag+"@example.com", "Barbara Liskov", ""), nil)
	b.add("customer.subscription.created", at, SubscriptionObject(a), nil)
	b.add("customer.subscription.created", at.Add(time.Hour), SubscriptionObject(c), nil)
	a.Status = "canceled"
	b.add("customer.subscription.deleted", at.Add(2*time.Hour), SubscriptionObject(a), nil)
	b.add("invoice.payment_failed", at.Add(3*time.Hour), InvoiceObject("in_"+tag+"two", cus, s2, "ch_"+tag+"two", "pi_"+tag+"two", "open", 4500, "usd"), nil)
	return Story{Name: "two-subscriptions", CustomerID: cus, Subscriptions: []string{s1, s2}, Events: b.evs}, b.err
}
