package canonical

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// IsSubscriptionSnapshot reports whether an event type carries a whole
// subscription as data.object (customer.subscription.created, .updated,
// .deleted, .paused, .resumed, .trial_will_end, .pending_update_*).
func IsSubscriptionSnapshot(eventType string) bool {
	return strings.HasPrefix(eventType, "customer.subscription.")
}

// ObjectOf names the Stripe object an event describes: data.object.object,
// or, for older payloads that lack it, the object its type implies. Routing
// by object rather than by type matters because a few real payloads carry an
// object their type does not suggest, and the object is what the fields
// describe. Every consumer routes with this one function.
func ObjectOf(ev *billingv1.BillingEvent) string {
	t, obj := ev.GetType(), ev.GetObjectType()
	if obj != "" {
		return obj
	}
	switch {
	case IsSubscriptionSnapshot(t):
		return "subscription"
	case strings.HasPrefix(t, "checkout.session."):
		return "checkout.session"
	case strings.HasPrefix(t, "charge.dispute."):
		return "dispute"
	case strings.HasPrefix(t, "charge.refund.") || strings.HasPrefix(t, "refund."):
		return "refund"
	case strings.HasPrefix(t, "charge."):
		return "charge"
	case strings.HasPrefix(t, "invoice."):
		return "invoice"
	case strings.HasPrefix(t, "payment_intent."):
		return "payment_intent"
	case t == "customer.created" || t == "customer.updated" || t == "customer.deleted":
		return "customer"
	}
	return ""
}

// SubscriptionFromEvent reads the subscription snapshot a
// customer.subscription.* event carries. Normalised fields come from the
// BillingEvent; the few it does not carry (the subscription's own created
// time and the previous_attributes values) are read from raw_json, which
// holds the same shape in every API version.
func SubscriptionFromEvent(ev *billingv1.BillingEvent) (Subscription, error) {
	if ev == nil || !IsSubscriptionSnapshot(ev.GetType()) {
		return Subscription{}, fmt.Errorf("subscription from event: %q is not a subscription event", ev.GetType())
	}
	id := ev.GetSubscriptionId()
	if id == "" {
		id = ev.GetObjectId()
	}
	if id == "" {
		return Subscription{}, fmt.Errorf("subscription from event %s: no subscription id", ev.GetEventId())
	}
	raw, err := parseRaw(ev.GetRawJson())
	if err != nil {
		return Subscription{}, fmt.Errorf("subscription from event %s: %w", ev.GetEventId(), err)
	}
	s := Subscription{
		ID:                id,
		CustomerID:        ev.GetCustomerId(),
		Status:            ev.GetStatus(),
		PriceID:           ev.GetPriceId(),
		CurrentPeriodEnd:  timeOrZero(ev.GetCurrentPeriodEnd()),
		TrialEnd:          timeOrZero(ev.GetTrialEnd()),
		CancelAtPeriodEnd: ev.GetCancelAtPeriodEnd(),
		Deleted:           ev.GetType() == "customer.subscription.deleted",
		Quantity:          ev.GetQuantity(),
		UnitAmount:        ev.GetUnitAmount(),
		Interval:          ev.GetInterval(),
		IntervalCount:     ev.GetIntervalCount(),
		Currency:          ev.GetCurrency(),
		UserID:            ev.GetUserId(),
		Livemode:          ev.GetLivemode(),
		LastEventID:       ev.GetEventId(),
		LastEventType:     ev.GetType(),
		LastEventCreated:  timeOrZero(ev.GetCreated()),
		Previous:          raw.previous(),
	}
	if s.Status == "" {
		s.Status = raw.Data.Object.Status
	}
	if s.Currency == "" {
		// Subscriptions carry a currency only since 2020; before that it is
		// the price's (or plan's).
		o := raw.Data.Object
		if len(o.Items.Data) > 0 {
			s.Currency = o.Items.Data[0].Price.Currency
			if s.Currency == "" {
				s.Currency = o.Items.Data[0].Plan.Currency
			}
		}
		if s.Currency == "" {
			s.Currency = o.Plan.Currency
		}
	}
	if raw.Data.Object.Created > 0 {
		s.Created = time.Unix(raw.Data.Object.Created, 0).UTC()
	}
	if s.Previous.Status == nil && ev.GetPreviousStatus() != "" {
		ps := ev.GetPreviousStatus()
		s.Previous.Status = &ps
	}
	return s, nil
}

// SnapshotFromEvent is SubscriptionFromEvent(ev).Snapshot().
func SnapshotFromEvent(ev *billingv1.BillingEvent) (Snapshot, error) {
	s, err := SubscriptionFromEvent(ev)
	if err != nil {
		return Snapshot{}, err
	}
	return s.Snapshot(), nil
}

// timeOrZero is t in UTC, or the zero time when the event leaves it out.
func timeOrZero(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime().UTC()
}

type rawEvent struct {
	Data struct {
		Object struct {
			Created int64  `json:"created"`
			Status  string `json:"status"`
			Items   struct {
				Data []struct {
					Price struct {
						Currency string `json:"currency"`
					} `json:"price"`
					Plan struct {
						Currency string `json:"currency"`
					} `json:"plan"`
				} `json:"data"`
			} `json:"items"`
			Plan struct {
				Currency string `json:"currency"`
			} `json:"plan"`
		} `json:"object"`
		PreviousAttributes map[string]json.RawMessage `json:"previous_attributes"`
	} `json:"data"`
}

func parseRaw(b []byte) (rawEvent, error) {
	var r rawEvent
	if len(b) == 0 {
		return r, nil
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("parse raw event: %w", err)
	}
	return r, nil
}

// previous reads the tracked fields of previous_attributes. The price moved
// from plan (old API versions) to items (all current ones); either names it.
func (r rawEvent) previous() Previous {
	var p Previous
	pa := r.Data.PreviousAttributes
	if v, ok := pa["status"]; ok {
		var s string
		if json.Unmarshal(v, &s) == nil {
			p.Status = &s
		}
	}
	if v, ok := pa["cancel_at_period_end"]; ok {
		var b bool
		if json.Unmarshal(v, &b) == nil {
			p.CancelAtPeriodEnd = &b
		}
	}
	if v, ok := pa["items"]; ok {
		var items struct {
			Data []struct {
				Price struct {
					ID string `json:"id"`
				} `json:"price"`
				Plan struct {
					ID string `json:"id"`
				} `json:"plan"`
			} `json:"data"`
		}
		if json.Unmarshal(v, &items) == nil && len(items.Data) > 0 {
			id := items.Data[0].Price.ID
			if id == "" {
				id = items.Data[0].Plan.ID
			}
			if id != "" {
				p.PriceID = &id
			}
		}
	}
	if v, ok := pa["plan"]; ok && p.PriceID == nil {
		var plan struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(v, &plan) == nil && plan.ID != "" {
			p.PriceID = &plan.ID
		}
	}
	return p
}
