package stripeapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/stripe/stripe-go/v76"
)

// PageSize is the limit of every list request: Stripe's largest.
const PageSize = 100

// MaxTypes is the most event types one events list may filter on.
const MaxTypes = 20

// rawPage is one list answer with its items kept as Stripe sent them.
type rawPage struct {
	stripe.APIResource
	HasMore bool              `json:"has_more"`
	Data    []json.RawMessage `json:"data"`
}

// rawObject is one object answer kept as Stripe sent it.
type rawObject struct {
	stripe.APIResource
}

type listParams interface {
	stripe.ParamsContainer
	GetListParams() *stripe.ListParams
}

// pages lists path page by page (newest first, as Stripe does), starting
// after the last item of each page until Stripe says there is no more.
func (c *Client) pages(ctx context.Context, op, path string, build func() listParams, fn func([]json.RawMessage) error) error {
	after := ""
	for {
		params := build()
		lp := params.GetListParams()
		lp.Limit = stripe.Int64(PageSize)
		if after != "" {
			lp.StartingAfter = stripe.String(after)
		}
		var page rawPage
		if err := c.get(ctx, op, path, params, func(ctx context.Context) { lp.Context = ctx }, &page); err != nil {
			return err
		}
		if len(page.Data) == 0 {
			return nil
		}
		var last struct {
			ID string `json:"id"`
		}
		if err := json.Unmarshal(page.Data[len(page.Data)-1], &last); err != nil || last.ID == "" {
			return fmt.Errorf("%s: a listed item has no id", op)
		}
		if last.ID == after {
			// Paging that does not move would loop for ever.
			return fmt.Errorf("%s: page after %s starts where it began", op, after)
		}
		if err := fn(page.Data); err != nil {
			return err
		}
		if !page.HasMore {
			return nil
		}
		after = last.ID
	}
}

// Event is one listed event. Raw is the event as a webhook would carry it.
type Event struct {
	ID      string
	Type    string
	Created time.Time
	Raw     json.RawMessage
}

// EventQuery selects events: created within [Since, Until] (either end
// open when zero; Stripe's created has one-second resolution) and of one
// of Types (any when empty, at most MaxTypes).
type EventQuery struct {
	Since, Until time.Time
	Types        []string
}

// ListEvents lists GET /v1/events newest first and hands fn each page. An
// error from fn stops the listing and is returned.
func (c *Client) ListEvents(ctx context.Context, q EventQuery, fn func([]Event) error) error {
	if len(q.Types) > MaxTypes {
		return fmt.Errorf("list events: %d types, Stripe takes at most %d", len(q.Types), MaxTypes)
	}
	build := func() listParams {
		p := &stripe.EventListParams{}
		if !q.Since.IsZero() || !q.Until.IsZero() {
			p.CreatedRange = &stripe.RangeQueryParams{}
			if !q.Since.IsZero() {
				p.CreatedRange.GreaterThanOrEqual = q.Since.Unix()
			}
			if !q.Until.IsZero() {
				p.CreatedRange.LesserThanOrEqual = q.Until.Unix()
			}
		}
		for _, t := range q.Types {
			p.Types = append(p.Types, stripe.String(t))
		}
		return p
	}
	return c.pages(ctx, "list events", "/v1/events", build, func(items []json.RawMessage) error {
		evs := make([]Event, 0, len(items))
		for _, raw := range items {
			var head struct {
				ID      string `json:"id"`
				Type    string `json:"type"`
				Created int64  `json:"created"`
			}
			if err := json.Unmarshal(raw, &head); err != nil || head.ID == "" {
				return fmt.Errorf("list events: a listed event is not one")
			}
			evs = append(evs, Event{ID: head.ID, Type: head.Type, Created: time.Unix(head.Created, 0).UTC(), Raw: raw})
		}
		return fn(evs)
	})
}

// Kind is a kind of Stripe object the client lists.
type Kind string

// The kinds of objects a backfill snapshots, in the order it lists them:
// customers first, so every later object finds its customer's profile.
const (
	Customers        Kind = "customers"
	Subscriptions    Kind = "subscriptions"
	Invoices         Kind = "invoices"
	CheckoutSessions Kind = "checkout_sessions"
	Charges          Kind = "charges"
	Refunds          Kind = "refunds"
	Disputes         Kind = "disputes"
)

// Kinds are every kind, in listing order.
func Kinds() []Kind {
	return []Kind{Customers, Subscriptions, Invoices, CheckoutSessions, Charges, Refunds, Disputes}
}

// ParseKind reads a kind's name.
func ParseKind(s string) (Kind, bool) {
	for _, k := range Kinds() {
		if string(k) == s {
			return k, true
		}
	}
	return "", false
}

// Object is one listed object.
type Object struct {
	ID string
	// Object is Stripe's name of its type ("subscription", "checkout.session").
	Object  string
	Created time.Time
	Raw     json.RawMessage
}

// ObjectQuery narrows an object list. Subscriptions are always listed with
// status=all: without it Stripe leaves canceled ones out.
type ObjectQuery struct {
	// Customer lists only this customer's objects (not for refunds and
	// disputes, which Stripe does not filter by customer).
	Customer string
	// Since lists only objects created at or after it (zero: all).
	Since time.Time
}

// ListObjects lists one kind of object newest first and hands fn each page.
func (c *Client) ListObjects(ctx context.Context, kind Kind, q ObjectQuery, fn func([]Object) error) error {
	var created *stripe.RangeQueryParams
	if !q.Since.IsZero() {
		created = &stripe.RangeQueryParams{GreaterThanOrEqual: q.Since.Unix()}
	}
	var cus *string
	if q.Customer != "" {
		cus = stripe.String(q.Customer)
	}
	var path string
	var build func() listParams
	switch kind {
	case Customers:
		path = "/v1/customers"
		build = func() listParams { return &stripe.CustomerListParams{CreatedRange: created} }
	case Subscriptions:
		path = "/v1/subscriptions"
		build = func() listParams {
			return &stripe.SubscriptionListParams{Status: stripe.String("all"), Customer: cus, CreatedRange: created}
		}
	case Invoices:
		path = "/v1/invoices"
		build = func() listParams { return &stripe.InvoiceListParams{Customer: cus, CreatedRange: created} }
	case CheckoutSessions:
		path = "/v1/checkout/sessions"
		build = func() listParams { return &stripe.CheckoutSessionListParams{Customer: cus, CreatedRange: created} }
	case Charges:
		path = "/v1/charges"
		build = func() listParams { return &stripe.ChargeListParams{Customer: cus, CreatedRange: created} }
	case Refunds:
		path = "/v1/refunds"
		build = func() listParams { return &stripe.RefundListParams{CreatedRange: created} }
	case Disputes:
		path = "/v1/disputes"
		build = func() listParams { return &stripe.DisputeListParams{CreatedRange: created} }
	default:
		return fmt.Errorf("list %q: not a kind of object this client lists", kind)
	}
	op := "list " + string(kind)
	return c.pages(ctx, op, path, build, func(items []json.RawMessage) error {
		objs := make([]Object, 0, len(items))
		for _, raw := range items {
			o, err := readObject(raw)
			if err != nil {
				return fmt.Errorf("%s: %w", op, err)
			}
			objs = append(objs, o)
		}
		return fn(objs)
	})
}

// GetSubscription reads one subscription as Stripe has it now.
func (c *Client) GetSubscription(ctx context.Context, id string) (Object, error) {
	return c.getObject(ctx, "get subscription "+id, "/v1/subscriptions/"+url.PathEscape(id))
}

// GetCharge reads one charge as Stripe has it now.
func (c *Client) GetCharge(ctx context.Context, id string) (Object, error) {
	return c.getObject(ctx, "get charge "+id, "/v1/charges/"+url.PathEscape(id))
}

func (c *Client) getObject(ctx context.Context, op, path string) (Object, error) {
	p := &stripe.Params{}
	var v rawObject
	if err := c.get(ctx, op, path, p, func(ctx context.Context) { p.Context = ctx }, &v); err != nil {
		return Object{}, err
	}
	return v.object(op)
}

// object reads the one object an answer holds; op names the call in errors.
func (v *rawObject) object(op string) (Object, error) {
	if v.LastResponse == nil {
		return Object{}, fmt.Errorf("%s: no answer body", op)
	}
	o, err := readObject(v.LastResponse.RawJSON)
	if err != nil {
		return Object{}, fmt.Errorf("%s: %w", op, err)
	}
	return o, nil
}

func readObject(raw json.RawMessage) (Object, error) {
	var head struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
	}
	if err := json.Unmarshal(raw, &head); err != nil || head.ID == "" {
		return Object{}, fmt.Errorf("an object without an id")
	}
	return Object{ID: head.ID, Object: head.Object, Created: time.Unix(head.Created, 0).UTC(), Raw: raw}, nil
}
