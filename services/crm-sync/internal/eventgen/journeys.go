package eventgen

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/launchready/launchready/pkg/canonical"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/crm-sync/internal/crm"
	"github.com/launchready/launchready/services/crm-sync/internal/syncer"
)

// Journey is one customer's events in Stripe's order.
type Journey struct {
	Name       string
	CustomerID string
	// Subscriptions the journey creates, each of which must become one deal.
	Subscriptions []string
	Events        []*billingv1.BillingEvent
}

// Journeys builds the standard journeys for one run; tag keeps ids apart
// between runs sharing a database and a CRM.
func Journeys(tag string, t0 time.Time) ([]Journey, error) {
	g := &Gen{Prefix: tag}
	var out []Journey
	var err error
	add := func(j Journey, e error) {
		if err == nil && e != nil {
			err = e
		}
		out = append(out, j)
	}
	add(lifecycle(g, tag, t0))
	add(trialToActive(g, tag, t0))
	add(oneTimeRefunded(g, tag, t0))
	add(disputeOpenClosed(g, tag, t0))
	add(twoSubscriptions(g, tag, t0))
	return out, err
}

type builder struct {
	g   *Gen
	evs []*billingv1.BillingEvent
	err error
}

func (b *builder) add(typ string, at time.Time, o, prev Obj) {
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

// lifecycle: checkout → subscription created (incomplete) → invoice paid →
// active (same second, ordered by previous_attributes) → payment failed →
// past_due → paid again → active → cancel_at_period_end → deleted.
func lifecycle(g *Gen, tag string, t0 time.Time) (Journey, error) {
	cus, sub := "cus_"+tag+"life", "sub_"+tag+"life"
	price := Price{ID: "price_" + tag + "pro", UnitAmount: 2900, Interval: "month", Currency: "usd"}
	b := &builder{g: g}
	at := t0
	s := Sub{ID: sub, Customer: cus, Status: "incomplete", Price: price, Created: at.Add(time.Minute), PeriodEnd: at.Add(31 * 24 * time.Hour)}
	b.add("customer.created", at, Customer(cus, "life-"+tag+"@example.com", "Ada Lovelace", "user-"+tag+"-1"), nil)
	b.add("checkout.session.completed", at.Add(time.Minute), Checkout("cs_"+tag+"life", cus, "subscription", "paid", "", sub, "life-"+tag+"@example.com", 2900, "usd"), nil)
	b.add("customer.subscription.created", at.Add(time.Minute), Subscription(s), nil)
	b.add("invoice.paid", at.Add(time.Minute+time.Second), Invoice("in_"+tag+"life1", cus, sub, "ch_"+tag+"life1", "pi_"+tag+"life1", "paid", 2900, "usd"), nil)
	s.Status = "active"
	b.add("customer.subscription.updated", at.Add(time.Minute+time.Second), Subscription(s), Obj{"status": "incomplete"})
	at = at.Add(31 * 24 * time.Hour)
	b.add("invoice.payment_failed", at, Invoice("in_"+tag+"life2", cus, sub, "ch_"+tag+"life2", "pi_"+tag+"life2", "open", 2900, "usd"), nil)
	s.Status = "past_due"
	b.add("customer.subscription.updated", at, Subscription(s), Obj{"status": "active"})
	at = at.Add(3 * 24 * time.Hour)
	b.add("invoice.paid", at, Invoice("in_"+tag+"life2", cus, sub, "ch_"+tag+"life3", "pi_"+tag+"life2", "paid", 2900, "usd"), nil)
	s.Status = "active"
	s.PeriodEnd = at.Add(31 * 24 * time.Hour)
	b.add("customer.subscription.updated", at, Subscription(s), Obj{"status": "past_due"})
	at = at.Add(10 * 24 * time.Hour)
	s.CancelAtPeriodEnd = true
	b.add("customer.subscription.updated", at, Subscription(s), Obj{"cancel_at_period_end": false})
	at = s.PeriodEnd
	s.Status = "canceled"
	b.add("customer.subscription.deleted", at, Subscription(s), nil)
	return Journey{Name: "lifecycle", CustomerID: cus, Subscriptions: []string{sub}, Events: b.evs}, b.err
}

// trialToActive: a customer without an email (contact keyed by
// stripe_customer_id), a trial that converts, then the email arrives.
func trialToActive(g *Gen, tag string, t0 time.Time) (Journey, error) {
	cus, sub := "cus_"+tag+"trial", "sub_"+tag+"trial"
	price := Price{ID: "price_" + tag + "annual", UnitAmount: 24000, Interval: "year", Currency: "usd"}
	b := &builder{g: g}
	at := t0.Add(time.Hour)
	s := Sub{ID: sub, Customer: cus, Status: "trialing", Price: price, Created: at, PeriodEnd: at.Add(14 * 24 * time.Hour)}
	b.add("customer.created", at, Customer(cus, "", "", ""), nil)
	b.add("customer.subscription.created", at, Subscription(s), nil)
	at = at.Add(14 * 24 * time.Hour)
	s.Status = "active"
	s.PeriodEnd = at.Add(365 * 24 * time.Hour)
	b.add("customer.subscription.updated", at, Subscription(s), Obj{"status": "trialing"})
	b.add("invoice.paid", at, Invoice("in_"+tag+"trial1", cus, sub, "ch_"+tag+"trial1", "pi_"+tag+"trial1", "paid", 24000, "usd"), nil)
	b.add("customer.updated", at.Add(time.Hour), Customer(cus, "trial-"+tag+"@example.com", "Grace Hopper", ""), Obj{"email": nil})
	return Journey{Name: "trial", CustomerID: cus, Subscriptions: []string{sub}, Events: b.evs}, b.err
}

// oneTimeRefunded: a paid checkout in payment mode, fully refunded.
func oneTimeRefunded(g *Gen, tag string, t0 time.Time) (Journey, error) {
	cus, pi, ch := "cus_"+tag+"once", "pi_"+tag+"once", "ch_"+tag+"once"
	b := &builder{g: g}
	at := t0.Add(2 * time.Hour)
	b.add("customer.created", at, Customer(cus, "once-"+tag+"@example.com", "Alan Turing", ""), nil)
	b.add("checkout.session.completed", at.Add(time.Minute), Checkout("cs_"+tag+"once", cus, "payment", "paid", pi, "", "once-"+tag+"@example.com", 5000, "usd"), nil)
	b.add("charge.succeeded", at.Add(time.Minute), Charge(ch, cus, pi, "", 5000, 0, "usd"), nil)
	b.add("charge.refunded", at.Add(48*time.Hour), Charge(ch, cus, pi, "", 5000, 5000, "usd"), Obj{"amount_refunded": 0, "refunded": false})
	return Journey{Name: "refund", CustomerID: cus, Events: b.evs}, b.err
}

// disputeOpenClosed: a one-time purchase disputed, then the dispute won.
func disputeOpenClosed(g *Gen, tag string, t0 time.Time) (Journey, error) {
	cus, pi, ch, dp := "cus_"+tag+"disp", "pi_"+tag+"disp", "ch_"+tag+"disp", "dp_"+tag+"disp"
	b := &builder{g: g}
	at := t0.Add(3 * time.Hour)
	b.add("customer.created", at, Customer(cus, "disp-"+tag+"@example.com", "Edsger Dijkstra", ""), nil)
	b.add("checkout.session.completed", at.Add(time.Minute), Checkout("cs_"+tag+"disp", cus, "payment", "paid", pi, "", "disp-"+tag+"@example.com", 9900, "usd"), nil)
	b.add("charge.succeeded", at.Add(time.Minute), Charge(ch, cus, pi, "", 9900, 0, "usd"), nil)
	b.add("charge.dispute.created", at.Add(10*24*time.Hour), Dispute(dp, ch, pi, "needs_response", 9900, "usd"), nil)
	b.add("charge.dispute.closed", at.Add(40*24*time.Hour), Dispute(dp, ch, pi, "won", 9900, "usd"), Obj{"status": "under_review"})
	return Journey{Name: "dispute", CustomerID: cus, Events: b.evs}, b.err
}

// twoSubscriptions: one subscription ends, another stays active: two
// deals, and the customer is active.
func twoSubscriptions(g *Gen, tag string, t0 time.Time) (Journey, error) {
	cus, s1, s2 := "cus_"+tag+"two", "sub_"+tag+"two1", "sub_"+tag+"two2"
	basic := Price{ID: "price_" + tag + "basic", UnitAmount: 900, Interval: "month", Currency: "usd"}
	team := Price{ID: "price_" + tag + "team", UnitAmount: 1500, Interval: "month", Currency: "usd"}
	b := &builder{g: g}
	at := t0.Add(4 * time.Hour)
	a := Sub{ID: s1, Customer: cus, Status: "active", Price: basic, Created: at, PeriodEnd: at.Add(30 * 24 * time.Hour)}
	c := Sub{ID: s2, Customer: cus, Status: "active", Price: team, Quantity: 3, Created: at.Add(time.Hour), PeriodEnd: at.Add(30 * 24 * time.Hour)}
	b.add("customer.created", at, Customer(cus, "two-"+tag+"@example.com", "Barbara Liskov", ""), nil)
	b.add("customer.subscription.created", at, Subscription(a), nil)
	b.add("customer.subscription.created", at.Add(time.Hour), Subscription(c), nil)
	a.Status = "canceled"
	b.add("customer.subscription.deleted", at.Add(2*time.Hour), Subscription(a), nil)
	b.add("invoice.payment_failed", at.Add(3*time.Hour), Invoice("in_"+tag+"two", cus, s2, "ch_"+tag+"two", "pi_"+tag+"two", "open", 4500, "usd"), nil)
	return Journey{Name: "two-subscriptions", CustomerID: cus, Subscriptions: []string{s1, s2}, Events: b.evs}, b.err
}

// Expected is what the CRM must show after a journey, computed from the
// events in Stripe's order with pkg/canonical (through the same
// DeriveContact and DeriveDeal the service uses to shape documents): the
// fold here is the naive one (last snapshot wins), which is right because
// the events are in order.
type Expected struct {
	Contact crm.Contact
	Deals   map[string]crm.Deal
}

type rawCreated struct {
	Data struct {
		Object struct {
			Created int64 `json:"created"`
		} `json:"object"`
	} `json:"data"`
}

// Expect folds events in order.
func Expect(customerID string, events []*billingv1.BillingEvent, p canonical.Policy) Expected {
	subs := map[string]canonical.Subscription{}
	purchases := map[string]*canonical.Purchase{}
	chargePI := map[string]string{}
	disputes := map[string]string{} // id -> last status
	disputePI := map[string]string{}
	var email, name, userID string
	var failed time.Time
	deleted := false
	for _, ev := range events {
		at := ev.GetCreated().AsTime().UTC()
		switch t := ev.GetType(); {
		case t == "customer.created" || t == "customer.updated":
			email, name = first(ev.GetEmail(), email), first(ev.GetCustomerName(), name)
			userID = first(ev.GetUserId(), userID)
		case t == "customer.deleted":
			deleted = true
		case len(t) > 22 && t[:22] == "customer.subscription.":
			var rc rawCreated
			_ = json.Unmarshal(ev.GetRawJson(), &rc)
			prev := subs[ev.GetSubscriptionId()]
			subs[ev.GetSubscriptionId()] = canonical.Subscription{
				ID: ev.GetSubscriptionId(), CustomerID: ev.GetCustomerId(), Status: ev.GetStatus(), PriceID: ev.GetPriceId(),
				Created: time.Unix(rc.Data.Object.Created, 0).UTC(), CurrentPeriodEnd: ev.GetCurrentPeriodEnd().AsTime().UTC(),
				CancelAtPeriodEnd: ev.GetCancelAtPeriodEnd(), Deleted: prev.Deleted || t == "customer.subscription.deleted",
				Quantity: ev.GetQuantity(), UnitAmount: ev.GetUnitAmount(), Interval: ev.GetInterval(),
				IntervalCount: ev.GetIntervalCount(), Currency: ev.GetCurrency(),
				LastEventCreated: at,
			}
		case t == "checkout.session.completed":
			if email == "" {
				email = ev.GetEmail()
			}
			if ev.GetCheckoutMode() == "payment" {
				paid, awaiting := canonical.CheckoutPayment(t, ev.GetPaymentStatus())
				purchases[ev.GetPaymentIntentId()] = &canonical.Purchase{ID: ev.GetPaymentIntentId(), Paid: paid,
					AwaitingAsync: awaiting, Amount: ev.GetAmount(), Currency: ev.GetCurrency(), Created: at}
			}
		case t == "invoice.payment_failed":
			failed = at
		case t == "charge.succeeded" || t == "charge.refunded":
			chargePI[ev.GetChargeId()] = ev.GetPaymentIntentId()
			if pu := purchases[ev.GetPaymentIntentId()]; pu != nil {
				pu.AmountRefunded = max(pu.AmountRefunded, ev.GetAmountRefunded())
				pu.Refunded = pu.Refunded || ev.GetRefunded()
			}
		case len(t) > 15 && t[:15] == "charge.dispute.":
			disputes[ev.GetDisputeId()] = ev.GetStatus()
			disputePI[ev.GetDisputeId()] = first(ev.GetPaymentIntentId(), chargePI[ev.GetChargeId()])
		}
	}
	open := false
	for id, st := range disputes {
		switch st {
		case "won", "lost", "warning_closed":
			if st == "lost" {
				if pu := purchases[disputePI[id]]; pu != nil {
					pu.DisputeLost = true
				}
			}
		default:
			open = true
		}
	}
	var subList []canonical.Subscription
	ids := make([]string, 0, len(subs))
	for id := range subs {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		subList = append(subList, subs[id])
	}
	var pList []canonical.Purchase
	for _, pu := range purchases {
		pList = append(pList, *pu)
	}
	sort.Slice(pList, func(i, j int) bool { return pList[i].ID < pList[j].ID })
	exp := Expected{
		Contact: syncer.DeriveContact(customerID, email, name, userID, deleted, false, failed, open, subList, pList, p),
		Deals:   map[string]crm.Deal{},
	}
	for _, s := range subList {
		if d, ok := syncer.DeriveDeal(s, exp.Contact.Email); ok {
			exp.Deals[s.ID] = d
		}
	}
	return exp
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
