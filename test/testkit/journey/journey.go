// Package journey is the one home of the tests' Stripe events. Every
// Stripe body built here goes through Rewrite, and most start from a real
// payload in shared/fixtures/stripe:
//
//   - Builder makes one customer's events, normalised exactly as ingress
//     does, for a test (it fails the test on a bad fixture); Step and the
//     Journeys map pair them with the status they must leave.
//   - Gen and B make raw webhook bodies with the ids each event names,
//     returning errors instead, for the process-level tests and the load
//     benchmark; Templates are the journeys those runs cycle through, and
//     each Event knows which consumer acts on it.
//   - ObjectGen wraps objects a test shapes whole (Stories, for crm-sync),
//     and Customer makes normalised events with no payload behind them.
//   - Fold is the in-order oracle a consumer's test derives its expected
//     documents from.
package journey

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit"
)

// Builder makes events for one customer.
type Builder struct {
	t          testing.TB
	dir        string
	CustomerID string
	// Base is the time of second 0 of the journey.
	Base time.Time
	seq  int
}

// New returns a builder for customer, with second 0 at base.
func New(t testing.TB, customer string, base time.Time) *Builder {
	return &Builder{t: t, dir: testkit.FixturesDir(t), CustomerID: customer, Base: base}
}

// Raw loads a fixture, sets the envelope (a fresh event id, typ, created =
// Base+at seconds), applies obj to data.object (dotted paths; "items.data.0.x"
// indexes arrays; a nil value writes JSON null) and sets
// data.previous_attributes to prev (removed when prev is nil). It returns
// the JSON body as Stripe would send it.
func (b *Builder) Raw(file, typ string, at int, obj, prev map[string]any) []byte {
	b.t.Helper()
	return b.raw(file, typ, at, "", obj, prev)
}

// raw is Raw with the envelope's api_version set to apiVersion unless empty.
func (b *Builder) raw(file, typ string, at int, apiVersion string, obj, prev map[string]any) []byte {
	b.t.Helper()
	body, err := os.ReadFile(filepath.Join(b.dir, file)) // #nosec G304 -- reads the repository's own fixture tree in tests
	if err != nil {
		b.t.Fatalf("journey: %v", err)
	}
	b.seq++
	out, err := Rewrite(body, Envelope{
		ID:         fmt.Sprintf("evt_%s_%03d", strings.TrimPrefix(b.CustomerID, "cus_"), b.seq),
		Type:       typ,
		Created:    b.Base.Unix() + int64(at),
		APIVersion: apiVersion,
	}, obj, prev)
	if err != nil {
		b.t.Fatalf("journey: %s: %v", file, err)
	}
	return out
}

// Envelope is what Rewrite writes around an event's object.
type Envelope struct {
	ID, Type string
	Created  int64 // unix seconds
	// APIVersion replaces the body's api_version unless empty.
	APIVersion string
}

// Rewrite takes body, a Stripe event, and returns it with env in its
// envelope (livemode false), obj applied to data.object (dotted paths, see
// SetPath) and data.previous_attributes set to prev (removed when prev is
// nil). Every builder of Stripe bodies in the tests goes through it.
func Rewrite(body []byte, env Envelope, obj, prev map[string]any) ([]byte, error) {
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, err
	}
	m["id"] = env.ID
	m["type"] = env.Type
	m["created"] = env.Created
	m["livemode"] = false
	if env.APIVersion != "" {
		m["api_version"] = env.APIVersion
	}
	data, _ := m["data"].(map[string]any)
	o, _ := data["object"].(map[string]any)
	if o == nil {
		return nil, errors.New("no data.object")
	}
	for path, v := range obj {
		if err := SetPath(o, strings.Split(path, "."), v); err != nil {
			return nil, fmt.Errorf("set %s: %w", path, err)
		}
	}
	if prev != nil {
		data["previous_attributes"] = prev
	} else {
		delete(data, "previous_attributes")
	}
	return json.Marshal(m)
}

// Event is Raw, normalised.
func (b *Builder) Event(file, typ string, at int, obj, prev map[string]any) *billingv1.BillingEvent {
	b.t.Helper()
	raw := b.Raw(file, typ, at, obj, prev)
	ev, err := stripeevent.Normalize(raw)
	if err != nil {
		b.t.Fatalf("journey: normalise %s: %v", file, err)
	}
	return ev
}

// Delete, as the value SetPath sets, removes the key instead.
var Delete = deleteMarker{}

type deleteMarker struct{}

// SetPath sets the value at path (keys, and indexes into arrays) in m,
// making the objects on the way that are missing; v == Delete removes the
// last key.
func SetPath(m map[string]any, path []string, v any) error {
	if len(path) == 1 {
		if _, del := v.(deleteMarker); del {
			delete(m, path[0])
			return nil
		}
		m[path[0]] = v
		return nil
	}
	next := m[path[0]]
	if arr, ok := next.([]any); ok {
		i, err := strconv.Atoi(path[1])
		if err != nil || i >= len(arr) {
			return fmt.Errorf("bad index %s", path[1])
		}
		if len(path) == 2 {
			arr[i] = v
			return nil
		}
		sub, ok := arr[i].(map[string]any)
		if !ok {
			return fmt.Errorf("%s.%s is not an object", path[0], path[1])
		}
		return SetPath(sub, path[2:], v)
	}
	sub, ok := next.(map[string]any)
	if !ok {
		sub = map[string]any{}
		m[path[0]] = sub
	}
	return SetPath(sub, path[1:], v)
}

// Subscription is a customer.subscription.* event from a real subscription
// payload (API 2020-03-02), with a $15/month price.
func (b *Builder) Subscription(typ string, at int, sub, status string, cancelAtPeriodEnd bool, prev map[string]any) *billingv1.BillingEvent {
	start := b.Base.Unix()
	obj := map[string]any{
		"id": sub, "customer": b.CustomerID, "status": status, "created": start,
		"current_period_start": start, "current_period_end": start + 30*Day,
		"cancel_at_period_end": cancelAtPeriodEnd, "metadata": map[string]any{"user_id": "user_" + strings.TrimPrefix(b.CustomerID, "cus_")},
		"items.data.0.price.unit_amount": 1500, "items.data.0.plan.amount": 1500,
		"items.data.0.subscription": sub, "items.data.1.subscription": sub,
	}
	if status == "trialing" {
		obj["trial_end"] = start + 14*Day
	}
	if typ == "customer.subscription.deleted" {
		obj["canceled_at"] = start + int64(at)
		obj["ended_at"] = start + int64(at)
	}
	return b.Event("stripe-sync-engine/subscription_created.json", typ, at, obj, prev)
}

// BasilSubscription is the same subscription in the 2025-03-31.basil shape:
// no top-level current_period_end, the period on the item instead.
func (b *Builder) BasilSubscription(typ string, at int, sub, status string, periodEnd time.Time) *billingv1.BillingEvent {
	b.t.Helper()
	raw := b.raw("stripe-sync-engine/subscription_created.json", typ, at, "2025-03-31.basil", map[string]any{
		"id": sub, "customer": b.CustomerID, "status": status, "created": b.Base.Unix(),
		"current_period_end": Delete, "current_period_start": Delete,
		"items.data.0.current_period_end": periodEnd.Unix(), "items.data.0.price.unit_amount": 1500,
	}, nil)
	ev, err := stripeevent.Normalize(raw)
	if err != nil {
		b.t.Fatalf("journey: %v", err)
	}
	return ev
}

// CheckoutSubscription is checkout.session.completed in subscription mode.
func (b *Builder) CheckoutSubscription(at int, session, sub string) *billingv1.BillingEvent {
	return b.Event("stripe-ruby-mock/checkout.session.completed.json", "checkout.session.completed", at, map[string]any{
		"id": session, "customer": b.CustomerID, "mode": "subscription", "subscription": sub, "payment_intent": nil,
		"payment_status": "paid", "amount_total": 1500, "customer_details": map[string]any{"email": b.Email(), "name": "Test Customer"},
		"customer_email": b.Email(), "client_reference_id": "user_" + strings.TrimPrefix(b.CustomerID, "cus_"),
	}, nil)
}

// CheckoutPayment is a checkout session in payment mode (a one-time
// purchase) for pi; typ is completed or async_payment_succeeded/failed.
func (b *Builder) CheckoutPayment(typ string, at int, session, pi string, amount int64, paymentStatus string) *billingv1.BillingEvent {
	return b.Event("stripe-ruby-mock/checkout.session.completed.json", typ, at, map[string]any{
		"id": session, "customer": b.CustomerID, "mode": "payment", "subscription": nil, "payment_intent": pi,
		"payment_status": paymentStatus, "amount_total": amount, "customer_email": b.Email(),
		"client_reference_id": "user_" + strings.TrimPrefix(b.CustomerID, "cus_"),
	}, nil)
}

// Invoice is an invoice event for a subscription, paid by charge/pi.
func (b *Builder) Invoice(typ string, at int, invoice, sub, charge, pi, status string) *billingv1.BillingEvent {
	paid := int64(0)
	if status == "paid" {
		paid = 1500
	}
	return b.Event("stripe-ruby-mock/invoice.payment_failed.json", typ, at, map[string]any{
		"id": invoice, "customer": b.CustomerID, "subscription": sub, "charge": charge, "payment_intent": pi,
		"status": status, "amount_due": 1500, "amount_paid": paid, "total": 1500, "billing_reason": "subscription_cycle",
		"customer_email": b.Email(), "created": b.Base.Unix() + int64(at),
	}, nil)
}

// SmokeInvoice is a failed invoice of smoke test run, as `launchready smoke
// --via webhook` sends it: the run in the invoice's metadata, so Normalize
// sets smoke_run, and no subscription of Stripe's behind it.
func (b *Builder) SmokeInvoice(at int, invoice, run string) *billingv1.BillingEvent {
	return b.Event("stripe-ruby-mock/invoice.payment_failed.json", "invoice.payment_failed", at, map[string]any{
		"id": invoice, "customer": b.CustomerID, "subscription": nil, "status": "open", "billing_reason": "subscription_cycle",
		"metadata." + stripeevent.SmokeMetadataKey: run, "customer_email": b.Email(), "created": b.Base.Unix() + int64(at),
	}, nil)
}

// Charge is a charge event.
func (b *Builder) Charge(typ string, at int, charge, pi string, amount, refunded int64, status string) *billingv1.BillingEvent {
	var prev map[string]any
	if typ == "charge.refunded" {
		prev = map[string]any{"amount_refunded": 0, "refunded": false}
	}
	return b.Event("stripe-ruby-mock/charge.succeeded.json", typ, at, map[string]any{
		"id": charge, "customer": b.CustomerID, "payment_intent": pi, "amount": amount, "amount_captured": amount,
		"amount_refunded": refunded, "refunded": refunded >= amount, "status": status, "invoice": nil,
		"created": b.Base.Unix() + int64(at),
	}, prev)
}

// Dispute is a charge.dispute.* event naming only the charge, as Stripe
// sends it: no customer.
func (b *Builder) Dispute(typ string, at int, dispute, charge, status string) *billingv1.BillingEvent {
	return b.Event("stripe-ruby-mock/charge.dispute.created.json", typ, at, map[string]any{
		"id": dispute, "charge": charge, "payment_intent": nil, "status": status, "amount": 2000,
		"created": b.Base.Unix() + int64(at),
	}, nil)
}

// Refund is a refund.* event naming only the charge.
func (b *Builder) Refund(typ string, at int, refund, charge string, amount int64, status string) *billingv1.BillingEvent {
	return b.Event("stripe-sync-engine/refund_created.json", typ, at, map[string]any{
		"id": refund, "charge": charge, "payment_intent": nil, "amount": amount, "status": status,
		"created": b.Base.Unix() + int64(at),
	}, nil)
}

// Customer is customer.created/updated/deleted.
func (b *Builder) Customer(typ string, at int) *billingv1.BillingEvent {
	return b.Event("stripe-ruby-mock/customer.created.json", typ, at, map[string]any{
		"id": b.CustomerID, "email": b.Email(), "name": "Test Customer",
		"metadata": map[string]any{"user_id": "user_" + strings.TrimPrefix(b.CustomerID, "cus_")},
	}, nil)
}

// Email is the customer's address in every event.
func (b *Builder) Email() string {
	return strings.ToLower(strings.TrimPrefix(b.CustomerID, "cus_")) + "@example.com"
}

// UserID is the app's user id in the events' metadata.
func (b *Builder) UserID() string { return "user_" + strings.TrimPrefix(b.CustomerID, "cus_") }

// Step is one moment of a journey: the events Stripe sends for it and the
// customer's status once they are applied.
type Step struct {
	Name        string
	Events      []*billingv1.BillingEvent
	Status      billingv1.BillingStatus
	Entitled    bool
	DisputeOpen bool
	Cancel      bool
}

// Events flattens steps in order.
func Events(steps []Step) []*billingv1.BillingEvent {
	var out []*billingv1.BillingEvent
	for _, s := range steps {
		out = append(out, s.Events...)
	}
	return out
}

func ptrs(m map[string]any) map[string]any { return m }

// SubscriptionLifecycle: checkout → subscription created (incomplete) →
// first invoice paid (active, same second as created) → renewal fails
// (past_due) → paid again (active) → cancel at period end → deleted.
// Several steps put two events in one second, as Stripe does.
func SubscriptionLifecycle(b *Builder) []Step {
	sub := "sub_" + strings.TrimPrefix(b.CustomerID, "cus_")
	renew := 30 * Day
	return []Step{
		{Name: "checkout completed", Events: []*billingv1.BillingEvent{b.CheckoutSubscription(0, "cs_"+sub, sub)}, Status: StatusNone},
		{Name: "subscription created", Events: []*billingv1.BillingEvent{
			b.Subscription("customer.subscription.created", 1, sub, "incomplete", false, nil),
		}, Status: StatusIncomplete},
		{Name: "invoice paid", Events: []*billingv1.BillingEvent{
			b.Invoice("invoice.paid", 1, "in_1"+sub, sub, "ch_1"+sub, "pi_1"+sub, "paid"),
			b.Subscription("customer.subscription.updated", 1, sub, "active", false, ptrs(map[string]any{"status": "incomplete"})),
		}, Status: StatusActive, Entitled: true},
		{Name: "renewal payment failed", Events: []*billingv1.BillingEvent{
			b.Invoice("invoice.payment_failed", renew, "in_2"+sub, sub, "ch_2"+sub, "pi_2"+sub, "open"),
			b.Subscription("customer.subscription.updated", renew, sub, "past_due", false, ptrs(map[string]any{"status": "active"})),
		}, Status: StatusPastDue, Entitled: true},
		{Name: "paid again", Events: []*billingv1.BillingEvent{
			b.Invoice("invoice.paid", renew+3*Day, "in_2"+sub, sub, "ch_3"+sub, "pi_2"+sub, "paid"),
			b.Subscription("customer.subscription.updated", renew+3*Day, sub, "active", false, ptrs(map[string]any{"status": "past_due"})),
		}, Status: StatusActive, Entitled: true},
		{Name: "cancel at period end", Events: []*billingv1.BillingEvent{
			b.Subscription("customer.subscription.updated", renew+10*Day, sub, "active", true, ptrs(map[string]any{"cancel_at_period_end": false})),
		}, Status: StatusActive, Entitled: true, Cancel: true},
		{Name: "deleted", Events: []*billingv1.BillingEvent{
			b.Subscription("customer.subscription.deleted", 2*renew, sub, "canceled", true, nil),
		}, Status: StatusCanceled, Cancel: true},
	}
}

// TrialToActive: a trial starts, then converts to a paid subscription.
func TrialToActive(b *Builder) []Step {
	sub := "sub_" + strings.TrimPrefix(b.CustomerID, "cus_")
	return []Step{
		{Name: "customer created", Events: []*billingv1.BillingEvent{b.Customer("customer.created", 0)}, Status: StatusNone},
		{Name: "trial started", Events: []*billingv1.BillingEvent{
			b.Subscription("customer.subscription.created", 0, sub, "trialing", false, nil),
		}, Status: StatusTrialing, Entitled: true},
		{Name: "trial converted", Events: []*billingv1.BillingEvent{
			b.Invoice("invoice.paid", 14*Day, "in_1"+sub, sub, "ch_1"+sub, "pi_1"+sub, "paid"),
			b.Subscription("customer.subscription.updated", 14*Day, sub, "active", false, ptrs(map[string]any{"status": "trialing"})),
		}, Status: StatusActive, Entitled: true},
	}
}

// checkoutPaid is a one-time Checkout purchase of $20 paid by charge ch.
func checkoutPaid(b *Builder, id, pi, ch string) Step {
	return Step{Name: "checkout paid", Events: []*billingv1.BillingEvent{
		b.CheckoutPayment("checkout.session.completed", 0, "cs_"+id, pi, 2000, "paid"),
		b.Charge("charge.succeeded", 0, ch, pi, 2000, 0, "succeeded"),
	}, Status: StatusActive, Entitled: true}
}

// OneTimeRefunded: a one-time Checkout purchase, a partial refund, then a
// full refund.
func OneTimeRefunded(b *Builder) []Step {
	id := strings.TrimPrefix(b.CustomerID, "cus_")
	pi, ch := "pi_"+id, "ch_"+id
	return []Step{
		checkoutPaid(b, id, pi, ch),
		{Name: "partial refund", Events: []*billingv1.BillingEvent{
			b.Charge("charge.refunded", 3600, ch, pi, 2000, 500, "succeeded"),
		}, Status: StatusActive, Entitled: true},
		{Name: "fully refunded", Events: []*billingv1.BillingEvent{
			b.Charge("charge.refunded", 7200, ch, pi, 2000, 2000, "succeeded"),
		}, Status: StatusRefunded},
	}
}

// DisputeOpenedClosed: a paid purchase is disputed (the dispute names only
// the charge), then the dispute is won.
func DisputeOpenedClosed(b *Builder) []Step {
	id := strings.TrimPrefix(b.CustomerID, "cus_")
	pi, ch, dp := "pi_"+id, "ch_"+id, "dp_"+id
	return []Step{
		checkoutPaid(b, id, pi, ch),
		{Name: "dispute opened", Events: []*billingv1.BillingEvent{
			b.Dispute("charge.dispute.created", Day, dp, ch, "needs_response"),
		}, Status: StatusActive, Entitled: true, DisputeOpen: true},
		{Name: "dispute closed", Events: []*billingv1.BillingEvent{
			b.Dispute("charge.dispute.updated", 10*Day, dp, ch, "under_review"),
			b.Dispute("charge.dispute.closed", 20*Day, dp, ch, "won"),
		}, Status: StatusActive, Entitled: true},
	}
}

// Journeys lists every journey by name.
var Journeys = map[string]func(*Builder) []Step{
	"subscription lifecycle": SubscriptionLifecycle,
	"trial to active":        TrialToActive,
	"one-time refunded":      OneTimeRefunded,
	"dispute opened closed":  DisputeOpenedClosed,
}
