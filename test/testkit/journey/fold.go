package journey

import (
	"encoding/json"
	"sort"
	"time"

	"github.com/launchready/launchready/pkg/canonical"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Facts are what a customer's events, folded in order, say about the
// customer: the oracle a consumer's tests derive the expected documents
// from with the consumer's own derivation. The fold is the naive one (the
// last snapshot wins), which is right because the events are in order.
type Facts struct {
	Email, Name, UserID string
	Deleted             bool
	LastFailed          time.Time // the last invoice.payment_failed
	DisputeOpen         bool
	Subscriptions       []canonical.Subscription // by id
	Purchases           []canonical.Purchase     // by id
}

type rawCreated struct {
	Data struct {
		Object struct {
			Created int64 `json:"created"`
		} `json:"object"`
	} `json:"data"`
}

// Fold folds events, in Stripe's order, into the facts a consumer
// derives a customer's documents from.
func Fold(events []*billingv1.BillingEvent) Facts {
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
	return Facts{Email: email, Name: name, UserID: userID, Deleted: deleted, LastFailed: failed, DisputeOpen: open,
		Subscriptions: subList, Purchases: pList}
}

func first(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}
