package stripeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Subscription is what a subscription says about its state, read from its
// raw body: from API version basil on, the period lives on the items,
// which stripe-go v76 does not decode.
type Subscription struct {
	ID                string
	Customer          string
	Status            string
	PriceID           string
	CancelAtPeriodEnd bool
	Livemode          bool
	CurrentPeriodEnd  time.Time
	TrialEnd          time.Time
}

// Subscription reads a subscription as Stripe has it now.
func (c *Client) Subscription(ctx context.Context, id string) (Subscription, error) {
	o, err := c.GetSubscription(ctx, id)
	if err != nil {
		return Subscription{}, err
	}
	var raw struct {
		Customer          string `json:"customer"`
		Status            string `json:"status"`
		CancelAtPeriodEnd bool   `json:"cancel_at_period_end"`
		Livemode          bool   `json:"livemode"`
		TrialEnd          int64  `json:"trial_end"`
		CurrentPeriodEnd  int64  `json:"current_period_end"`
		Items             struct {
			Data []struct {
				CurrentPeriodEnd int64 `json:"current_period_end"`
				Price            struct {
					ID string `json:"id"`
				} `json:"price"`
			} `json:"data"`
		} `json:"items"`
	}
	if err := json.Unmarshal(o.Raw, &raw); err != nil {
		return Subscription{}, fmt.Errorf("get subscription %s: unreadable answer", id)
	}
	s := Subscription{ID: o.ID, Customer: raw.Customer, Status: raw.Status, CancelAtPeriodEnd: raw.CancelAtPeriodEnd, Livemode: raw.Livemode}
	if raw.TrialEnd > 0 {
		s.TrialEnd = time.Unix(raw.TrialEnd, 0).UTC()
	}
	end := raw.CurrentPeriodEnd
	for _, it := range raw.Items.Data {
		end = max(end, it.CurrentPeriodEnd)
	}
	if end > 0 {
		s.CurrentPeriodEnd = time.Unix(end, 0).UTC()
	}
	if len(raw.Items.Data) > 0 {
		s.PriceID = raw.Items.Data[0].Price.ID
	}
	return s, nil
}
