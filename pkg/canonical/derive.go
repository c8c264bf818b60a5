package canonical

import (
	"sort"
	"time"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Subscription is the stored state of one Stripe subscription: the latest
// snapshot applied, plus what is needed to order the next one.
type Subscription struct {
	ID         string
	CustomerID string
	// Status is Stripe's raw status ("active", "past_due", ...).
	Status  string
	PriceID string
	// Created is the subscription's own creation time, not the event's.
	Created           time.Time
	CurrentPeriodEnd  time.Time
	TrialEnd          time.Time
	CancelAtPeriodEnd bool
	// Deleted is set by customer.subscription.deleted and never cleared.
	Deleted bool
	// Quantity is the item quantity; 0 is read as 1 (Stripe's default).
	Quantity int64
	// UnitAmount, Interval ("day", "week", "month", "year"), IntervalCount
	// and Currency describe the recurring price, for MRR.
	UnitAmount    int64
	Interval      string
	IntervalCount int64
	Currency      string
	UserID        string
	Livemode      bool

	// The event whose snapshot this is, for ordering the next one.
	LastEventID      string
	LastEventType    string
	LastEventCreated time.Time
	// Previous holds the previous_attributes of that event.
	Previous Previous
}

// CanonicalStatus is the subscription's canonical status; a deleted
// subscription is canceled whatever its last raw status said.
func (s Subscription) CanonicalStatus() billingv1.BillingStatus {
	if s.Deleted {
		return billingv1.BillingStatus_BILLING_STATUS_CANCELED
	}
	return SubscriptionStatus(s.Status)
}

// Snapshot is the stored subscription seen as the snapshot it came from.
func (s Subscription) Snapshot() Snapshot {
	return Snapshot{
		EventID:           s.LastEventID,
		EventType:         s.LastEventType,
		Created:           s.LastEventCreated,
		Status:            s.Status,
		CancelAtPeriodEnd: s.CancelAtPeriodEnd,
		PriceID:           s.PriceID,
		Deleted:           s.Deleted,
		Previous:          s.Previous,
	}
}

// Purchase is a one-time payment: a checkout session in payment mode, or a
// charge that belongs to no invoice. Refund and dispute facts only move one
// way, so they need no ordering.
type Purchase struct {
	// ID is the checkout session id, or the charge id.
	ID string
	// Paid: the money arrived (payment_status paid, or the async payment
	// succeeded, or the charge succeeded).
	Paid bool
	// AwaitingAsync: the checkout completed with an asynchronous method that
	// has not settled yet.
	AwaitingAsync  bool
	Amount         int64
	AmountRefunded int64
	// Refunded is Stripe's charge.refunded: fully refunded.
	Refunded bool
	// DisputeLost: a dispute on the payment was lost, so the money is gone.
	DisputeLost bool
	Currency    string
	Created     time.Time
}

// FullyRefunded reports whether the buyer got all of the money back, by
// refund or by losing a dispute.
func (p Purchase) FullyRefunded() bool {
	return p.Refunded || p.DisputeLost || (p.Amount > 0 && p.AmountRefunded >= p.Amount)
}

// CanonicalStatus is what the purchase alone says about the customer:
// active while paid and not fully refunded, refunded once it is, incomplete
// while an async payment is pending, and UNSPECIFIED when it says nothing
// (failed, expired, or not yet paid by a synchronous method).
func (p Purchase) CanonicalStatus() billingv1.BillingStatus {
	switch {
	case p.Paid && p.FullyRefunded():
		return billingv1.BillingStatus_BILLING_STATUS_REFUNDED
	case p.Paid:
		return billingv1.BillingStatus_BILLING_STATUS_ACTIVE
	case p.AwaitingAsync:
		return billingv1.BillingStatus_BILLING_STATUS_INCOMPLETE
	}
	return billingv1.BillingStatus_BILLING_STATUS_UNSPECIFIED
}

// Derived is a customer's canonical state.
type Derived struct {
	Status   billingv1.BillingStatus
	Entitled bool
	// Primary is the subscription the status derives from; nil when it
	// derives from a purchase or from nothing.
	Primary *Subscription
	// PrimaryPurchase is the purchase the status derives from, if any.
	PrimaryPurchase *Purchase
	// MRR is the sum of MRR(sub) over subscriptions in Currency.
	MRR      int64
	Currency string
	// AmountRefunded sums refunds over all one-time purchases.
	AmountRefunded int64
}

// Relevance tiers, most relevant first.
const (
	tierEntitled = iota // gives access now
	tierOpen            // a live relationship that needs attention: past_due (policy off), unpaid, paused, incomplete, async pending
	tierEnded           // canceled or deleted subscriptions, refunded purchases
)

type candidate struct {
	tier    int
	at      time.Time
	id      string
	status  billingv1.BillingStatus
	sub     *Subscription
	payment *Purchase
}

// Derive computes a customer's status from all of its subscriptions and
// one-time purchases.
//
// The status comes from the most relevant item: anything that entitles comes
// first (newest first), then open subscriptions and pending async payments
// (a customer in dunning must not look canceled because an old subscription
// ended), then ended subscriptions and refunded purchases, newest first.
// So a paid checkout is active until fully refunded, a customer whose only
// payment was fully refunded or lost in a dispute is refunded, an unpaid
// async checkout is incomplete, and a customer with nothing is none.
// Ties in time break on the id so the result never depends on input order.
func Derive(subs []Subscription, purchases []Purchase, p Policy) Derived {
	var cands []candidate
	for i := range subs {
		s := &subs[i]
		st := s.CanonicalStatus()
		if st == billingv1.BillingStatus_BILLING_STATUS_UNSPECIFIED {
			continue // a status this code does not know gives no access and no signal
		}
		at := s.Created
		if at.IsZero() {
			at = s.LastEventCreated
		}
		c := candidate{at: at, id: s.ID, status: st, sub: s}
		switch {
		case Entitled(st, p):
			c.tier = tierEntitled
		case st == billingv1.BillingStatus_BILLING_STATUS_CANCELED:
			c.tier = tierEnded
		default:
			c.tier = tierOpen
		}
		cands = append(cands, c)
	}
	var refunded int64
	for i := range purchases {
		pu := &purchases[i]
		refunded += pu.AmountRefunded
		st := pu.CanonicalStatus()
		c := candidate{at: pu.Created, id: pu.ID, status: st, payment: pu}
		switch st {
		case billingv1.BillingStatus_BILLING_STATUS_ACTIVE:
			c.tier = tierEntitled
		case billingv1.BillingStatus_BILLING_STATUS_INCOMPLETE:
			c.tier = tierOpen
		case billingv1.BillingStatus_BILLING_STATUS_REFUNDED:
			c.tier = tierEnded
		default:
			continue
		}
		cands = append(cands, c)
	}
	sort.SliceStable(cands, func(i, j int) bool {
		a, b := cands[i], cands[j]
		if a.tier != b.tier {
			return a.tier < b.tier
		}
		if !a.at.Equal(b.at) {
			return a.at.After(b.at)
		}
		return a.id > b.id
	})

	d := Derived{Status: billingv1.BillingStatus_BILLING_STATUS_NONE, AmountRefunded: refunded}
	if len(cands) > 0 {
		top := cands[0]
		d.Status = top.status
		d.Entitled = Entitled(top.status, p)
		d.Primary = top.sub
		d.PrimaryPurchase = top.payment
		if top.sub != nil {
			d.Currency = top.sub.Currency
		} else {
			d.Currency = top.payment.Currency
		}
	}
	for i := range subs {
		m := MRR(subs[i])
		if m == 0 {
			continue
		}
		if d.Currency == "" {
			d.Currency = subs[i].Currency
		}
		// Amounts in different currencies do not add up; MRR is reported
		// in the customer's primary currency only.
		if subs[i].Currency == "" || subs[i].Currency == d.Currency {
			d.MRR += m
		}
	}
	return d
}
