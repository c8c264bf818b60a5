package stripeapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/form"
)

// ActionMetadataKey is the metadata key that carries a staff action's id on
// the object the action changes, so the webhook the change causes can be
// matched to the action exactly.
const ActionMetadataKey = "launchready_action_id"

// ActionTraceMetadataKey carries the W3C traceparent of the span that made
// the action, so the webhook the change causes can link its trace to the
// action's.
const ActionTraceMetadataKey = "launchready_traceparent"

type traceParentKey struct{}

// ActionTrace is the traceparent WithActionTrace put in ctx, or "".
func ActionTrace(ctx context.Context) string {
	tp, _ := ctx.Value(traceParentKey{}).(string)
	return tp
}

// WithActionTrace makes the action requests made with ctx carry
// traceparent in the changed object's metadata. It must be the same on
// every retry of an action: Stripe refuses an idempotency key reused with
// other parameters.
func WithActionTrace(ctx context.Context, traceparent string) context.Context {
	return context.WithValue(ctx, traceParentKey{}, traceparent)
}

// IdempotencyKey is the Idempotency-Key of the Stripe request made for a
// staff action: the same action id always makes the same request, so a
// retry or a double submit changes nothing twice.
func IdempotencyKey(actionID string) string { return "launchready-action-" + actionID }

// ErrSeveralItems: a plan change names no item, and the subscription has
// more than one, so which one to change is not clear.
var ErrSeveralItems = errors.New("the subscription has several items")

// RefundRequest is a full or partial refund of one payment.
type RefundRequest struct {
	ActionID string
	// PaymentIntent (pi_...) or Charge (ch_...): exactly one.
	PaymentIntent string
	Charge        string
	// Amount in the smallest currency unit; 0 refunds what is left.
	Amount int64
	// Reason is Stripe's: duplicate, fraudulent, requested_by_customer, or
	// empty. The staff member's own words belong in the action record.
	Reason string
}

// Refund creates a refund.
func (c *Client) Refund(ctx context.Context, r RefundRequest) (Object, error) {
	if (r.PaymentIntent == "") == (r.Charge == "") {
		return Object{}, errors.New("refund: name exactly one of a payment intent and a charge")
	}
	v := &form.Values{}
	if r.PaymentIntent != "" {
		v.Add("payment_intent", r.PaymentIntent)
	} else {
		v.Add("charge", r.Charge)
	}
	if r.Amount > 0 {
		v.Add("amount", strconv.FormatInt(r.Amount, 10))
	}
	if r.Reason != "" {
		v.Add("reason", r.Reason)
	}
	return c.write(ctx, "refund for action "+r.ActionID, http.MethodPost, "/v1/refunds", r.ActionID, "", v)
}

// CancelSubscription cancels a subscription now, or at the end of its
// current period. Stripe's cancel call takes no metadata, so a cancel now
// first tags the subscription with the action id (its own idempotent
// request), then cancels it; the deletion's webhook carries the tag.
func (c *Client) CancelSubscription(ctx context.Context, actionID, subscription string, atPeriodEnd bool) (Object, error) {
	path := "/v1/subscriptions/" + url.PathEscape(subscription)
	op := "cancel subscription for action " + actionID
	if atPeriodEnd {
		v := &form.Values{}
		v.Add("cancel_at_period_end", "true")
		return c.write(ctx, op, http.MethodPost, path, actionID, "", v)
	}
	if _, err := c.write(ctx, op, http.MethodPost, path, actionID, "-tag", &form.Values{}); err != nil {
		return Object{}, err
	}
	return c.write(ctx, op, http.MethodDelete, path, actionID, "", nil)
}

// PlanChange moves a subscription to another price.
type PlanChange struct {
	ActionID     string
	Subscription string
	// Item is the subscription item to change; empty means the only one.
	Item  string
	Price string
	// Proration is Stripe's proration_behavior: create_prorations,
	// always_invoice or none; empty leaves Stripe's default.
	Proration string
}

// ChangeSubscriptionPlan sets the price of one item of a subscription.
func (c *Client) ChangeSubscriptionPlan(ctx context.Context, p PlanChange) (Object, error) {
	op := "change plan for action " + p.ActionID
	item := p.Item
	if item == "" {
		sub, err := c.GetSubscription(ctx, p.Subscription)
		if err != nil {
			return Object{}, fmt.Errorf("%s: %w", op, err)
		}
		var s struct {
			Items struct {
				Data []struct {
					ID string `json:"id"`
				} `json:"data"`
			} `json:"items"`
		}
		if err := json.Unmarshal(sub.Raw, &s); err != nil || len(s.Items.Data) == 0 {
			return Object{}, fmt.Errorf("%s: subscription %s lists no items", op, p.Subscription)
		}
		if len(s.Items.Data) > 1 {
			return Object{}, fmt.Errorf("%s: %w", op, ErrSeveralItems)
		}
		item = s.Items.Data[0].ID
	}
	v := &form.Values{}
	v.Add("items[0][id]", item)
	v.Add("items[0][price]", p.Price)
	if p.Proration != "" {
		v.Add("proration_behavior", p.Proration)
	}
	return c.write(ctx, op, http.MethodPost, "/v1/subscriptions/"+url.PathEscape(p.Subscription), p.ActionID, "", v)
}

// write sends one change for a staff action with the action's idempotency
// key (plus suffix, for a second request of the same action) and, on a POST,
// the action id in the object's metadata.
func (c *Client) write(ctx context.Context, op, method, path, actionID, suffix string, v *form.Values) (Object, error) {
	if actionID == "" {
		return Object{}, fmt.Errorf("%s: no action id", op)
	}
	if method == http.MethodPost {
		v.Add("metadata["+ActionMetadataKey+"]", actionID)
		if tp := ActionTrace(ctx); tp != "" {
			v.Add("metadata["+ActionTraceMetadataKey+"]", tp)
		}
	}
	key := IdempotencyKey(actionID) + suffix
	params := &stripe.Params{Context: ctx, IdempotencyKey: &key}
	var out rawObject
	if err := c.call(ctx, op, method, path, v, params, &out); err != nil {
		return Object{}, err
	}
	return out.object(op)
}
