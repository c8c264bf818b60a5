package journey

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Gen and B build Stripe webhook deliveries as raw bodies, with the ids
// each event names, and return errors rather than failing a test: the
// process-level tests and the load benchmark, which runs outside any test,
// use them. Every event is a real payload from shared/fixtures/stripe (see
// its PROVENANCE.md) rewritten to tell one customer's story, as Stripe
// would send it: subscription lifecycles with same-second ties ordered by
// previous_attributes, one-time purchases, refunds, disputes that name
// only a charge, and the noise a real account produces. Each event also
// knows which consumer acts on it (consumers.go).

// Event is one Stripe event as Stripe delivers it, plus the ids it names.
type Event struct {
	ID       string
	Type     string
	Customer string
	Created  time.Time
	// Raw is the exact body Stripe would POST.
	Raw []byte

	Invoice, Subscription, Charge, PaymentIntent, Dispute, Checkout string
	// CancellationReason is cancellation_details.reason of a subscription.
	CancellationReason string
	// OutsideInvoice marks a payment that belongs to no invoice.
	OutsideInvoice bool
}

// Want is a customer's canonical state once every event is applied.
type Want struct {
	Status      billingv1.BillingStatus
	Entitled    bool
	DisputeOpen bool
}

// Journey is one customer's events in Stripe's order.
type Journey struct {
	Name          string
	Customer      string
	Email         string
	UserID        string
	Subscriptions []string
	Events        []*Event
	Want          Want
	// MustTicket lists support objects ("invoice:in_...", "dispute:dp_...")
	// whose problem nothing resolves: each must end with exactly one ticket.
	MustTicket []string
}

// Gen reads fixtures once and numbers what it builds.
type Gen struct {
	dir string
	tag string
	// DaySeconds is how long a journey's day is (86400 unless set). A
	// run delivered all at once sets it to an hour so that a two-month
	// lifecycle fits in the last few days, as a burst of live Stripe
	// traffic would: support-notify rightly ignores problems days old.
	DaySeconds int

	mu    sync.Mutex
	files map[string][]byte
}

// NewGen returns a generator over the fixtures in dir. tag (letters and
// digits) goes into every id, so two runs never share one.
func NewGen(dir, tag string) (*Gen, error) {
	for _, r := range tag {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return nil, fmt.Errorf("journey: tag %q must be letters and digits", tag)
		}
	}
	return &Gen{dir: dir, tag: tag, files: map[string][]byte{}, DaySeconds: Day}, nil
}

// Tag is the run tag.
func (g *Gen) Tag() string { return g.tag }

func (g *Gen) fixture(name string) ([]byte, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b, ok := g.files[name]; ok {
		return b, nil
	}
	b, err := os.ReadFile(filepath.Join(g.dir, name)) // #nosec G304 -- reads the repository's own fixture tree in tests
	if err != nil {
		return nil, fmt.Errorf("journey: %w", err)
	}
	g.files[name] = b
	return b, nil
}

// Customer returns a journey builder for a customer whose second 0 is base.
// suffix (letters and digits) makes the ids: cus_<tag><suffix>, sub_..., in_...
func (g *Gen) Customer(suffix string, base time.Time) *B {
	id := g.tag + suffix
	j := &Journey{Customer: "cus_" + id, Email: strings.ToLower(id) + "@example.com", UserID: "user_" + id}
	day := g.DaySeconds
	if day <= 0 {
		day = Day
	}
	return &B{g: g, J: j, id: id, Base: base.Truncate(time.Second), Day: day}
}

// B builds one customer's journey. Methods append an event and return it;
// the first error sticks and is returned by Err.
type B struct {
	g    *Gen
	J    *Journey
	id   string
	Base time.Time
	// Day is the length of a journey day in seconds (Gen.DaySeconds).
	Day int
	seq int
	err error
}

// Err is the first error met while building.
func (b *B) Err() error { return b.err }

// ID derives an object id for this customer: ID("sub") = sub_<tag><suffix>.
func (b *B) ID(prefix string, n ...int) string {
	s := prefix + "_" + b.id
	for _, x := range n {
		s += "x" + strconv.Itoa(x)
	}
	return s
}

// Day is a calendar day in seconds, for offsets.
const Day = 24 * 3600

// raw loads file and rewrites it with Rewrite: a fresh event id,
// typ, created = Base+at seconds, apiVersion when set, obj applied to
// data.object (nil writes JSON null; Delete removes) and prev as
// data.previous_attributes.
func (b *B) raw(file, typ string, at int, apiVersion string, obj map[string]any, prev map[string]any) (string, []byte) {
	if b.err != nil {
		return "", nil
	}
	body, err := b.g.fixture(file)
	if err != nil {
		b.err = err
		return "", nil
	}
	b.seq++
	id := fmt.Sprintf("evt_%sx%02d", b.id, b.seq)
	out, err := Rewrite(body, Envelope{ID: id, Type: typ, Created: b.Base.Unix() + int64(at), APIVersion: apiVersion}, obj, prev)
	if err != nil {
		b.err = fmt.Errorf("journey: %s: %w", file, err)
		return "", nil
	}
	return id, out
}

func (b *B) add(ev Event, file, apiVersion string, at int, obj, prev map[string]any) *Event {
	id, raw := b.raw(file, ev.Type, at, apiVersion, obj, prev)
	if b.err != nil {
		return &ev
	}
	ev.ID, ev.Raw = id, raw
	ev.Customer = b.J.Customer
	ev.Created = b.Base.Add(time.Duration(at) * time.Second)
	e := &ev
	b.J.Events = append(b.J.Events, e)
	return e
}

// CustomerEvent is customer.created, .updated or .deleted.
func (b *B) CustomerEvent(typ string, at int) *Event {
	var prev map[string]any
	if typ == "customer.updated" {
		prev = map[string]any{"description": "(created by Stripe CLI)"}
	}
	return b.add(Event{Type: typ}, "stripe-ruby-mock/customer.created.json", "", at, map[string]any{
		"id": b.J.Customer, "email": b.J.Email, "name": "Customer " + b.id, "description": nil,
		"metadata": map[string]any{"user_id": b.J.UserID},
	}, prev)
}

// SubOpts shapes a subscription snapshot.
type SubOpts struct {
	Cancel        bool   // cancel_at_period_end
	Trial         bool   // trialing: trial_end 14 days after Base
	LatestInvoice string // latest_invoice
	Reason        string // cancellation_details.reason (deleted)
	Basil         bool   // API 2025-03-31.basil: the period lives on the items
	Prev          map[string]any
}

// Subscription is a customer.subscription.* event from a real subscription
// payload (API 2020-03-02), $15/month, created at Base.
func (b *B) Subscription(typ string, at int, sub, status string, o SubOpts) *Event {
	start := b.Base.Unix()
	obj := map[string]any{
		"id": sub, "customer": b.J.Customer, "status": status, "created": start, "start_date": start,
		"billing_cycle_anchor": start, "current_period_start": start, "current_period_end": start + 30*int64(b.Day),
		"cancel_at_period_end": o.Cancel, "metadata": map[string]any{"user_id": b.J.UserID},
		"items.data.0.price.unit_amount": 1500, "items.data.0.plan.amount": 1500,
		"items.data.0.id": "si_" + strings.TrimPrefix(sub, "sub_") + "a", "items.data.1.id": "si_" + strings.TrimPrefix(sub, "sub_") + "b",
		"items.data.0.subscription": sub, "items.data.1.subscription": sub,
	}
	if o.LatestInvoice != "" {
		obj["latest_invoice"] = o.LatestInvoice
	}
	if o.Trial {
		obj["trial_start"] = start
		obj["trial_end"] = start + 14*int64(b.Day)
	}
	if typ == "customer.subscription.deleted" {
		obj["canceled_at"] = start + int64(at)
		obj["ended_at"] = start + int64(at)
	}
	if o.Reason != "" {
		obj["cancellation_details"] = map[string]any{"reason": o.Reason, "comment": nil, "feedback": nil}
	}
	api := ""
	if o.Basil {
		api = "2025-03-31.basil"
		obj["current_period_start"] = Delete
		obj["current_period_end"] = Delete
		for _, i := range []string{"0", "1"} {
			obj["items.data."+i+".current_period_start"] = start
			obj["items.data."+i+".current_period_end"] = start + 30*int64(b.Day)
		}
	}
	if !slices.Contains(b.J.Subscriptions, sub) {
		b.J.Subscriptions = append(b.J.Subscriptions, sub)
	}
	return b.add(Event{Type: typ, Subscription: sub, CancellationReason: o.Reason}, "stripe-sync-engine/subscription_created.json", api, at, obj, o.Prev)
}

// CheckoutSubscription is checkout.session.completed in subscription mode.
func (b *B) CheckoutSubscription(at int, session, sub string) *Event {
	return b.add(Event{Type: "checkout.session.completed", Checkout: session, Subscription: sub},
		"stripe-ruby-mock/checkout.session.completed.json", "", at, map[string]any{
			"id": session, "customer": b.J.Customer, "mode": "subscription", "subscription": sub, "payment_intent": nil,
			"payment_status": "paid", "amount_total": 1500, "customer_details": map[string]any{"email": b.J.Email, "name": "Customer " + b.id},
			"customer_email": b.J.Email, "client_reference_id": b.J.UserID,
		}, nil)
}

// CheckoutPayment is a checkout session in payment mode (a one-time
// purchase) for pi; typ is completed or async_payment_succeeded/failed.
func (b *B) CheckoutPayment(typ string, at int, session, pi string, amount int64, paymentStatus string) *Event {
	return b.add(Event{Type: typ, Checkout: session, PaymentIntent: pi, OutsideInvoice: true},
		"stripe-ruby-mock/checkout.session.completed.json", "", at, map[string]any{
			"id": session, "customer": b.J.Customer, "mode": "payment", "subscription": nil, "payment_intent": pi,
			"payment_status": paymentStatus, "amount_total": amount, "customer_email": b.J.Email,
			"customer_details":    map[string]any{"email": b.J.Email, "name": "Customer " + b.id},
			"client_reference_id": b.J.UserID,
		}, nil)
}

// InvoiceOpts shapes an invoice.
type InvoiceOpts struct {
	Attempt     int
	NextAttempt int // seconds after Base of the next retry, 0 for none
	Reason      string
	// Basil: API 2025-03-31.basil, the subscription under
	// parent.subscription_details and no charge or payment_intent.
	Basil bool
}

// Invoice is an invoice.* event for a $15 subscription invoice paid by
// charge/pi.
func (b *B) Invoice(typ string, at int, invoice, sub, charge, pi, status string, o InvoiceOpts) *Event {
	paid := int64(0)
	if status == "paid" {
		paid = 1500
	}
	reason := o.Reason
	if reason == "" {
		reason = "subscription_cycle"
	}
	obj := map[string]any{
		"id": invoice, "customer": b.J.Customer, "subscription": sub, "charge": charge, "payment_intent": pi,
		"status": status, "paid": status == "paid", "amount_due": 1500, "amount_paid": paid, "amount_remaining": 1500 - paid,
		"total": 1500, "subtotal": 1500, "billing_reason": reason, "customer_email": b.J.Email,
		"created": b.Base.Unix() + int64(at), "attempt_count": o.Attempt, "attempted": o.Attempt > 0,
		"description": nil,
	}
	if o.NextAttempt > 0 {
		obj["next_payment_attempt"] = b.Base.Unix() + int64(o.NextAttempt)
	} else {
		obj["next_payment_attempt"] = nil
	}
	api := ""
	ev := Event{Type: typ, Invoice: invoice, Subscription: sub, Charge: charge, PaymentIntent: pi}
	if o.Basil {
		api = "2025-03-31.basil"
		obj["subscription"] = Delete
		obj["charge"] = Delete
		obj["payment_intent"] = Delete
		obj["paid"] = Delete
		obj["parent"] = map[string]any{"type": "subscription_details", "quote_details": nil,
			"subscription_details": map[string]any{"metadata": map[string]any{}, "subscription": sub}}
		ev.Charge, ev.PaymentIntent = "", ""
	}
	return b.add(ev, "stripe-ruby-mock/invoice.payment_failed.json", api, at, obj, nil)
}

// Charge is a charge event; invoice is "" for a one-time purchase.
// refunded is amount_refunded; prevRefunded is its value before (for
// charge.refunded's previous_attributes).
func (b *B) Charge(typ string, at int, charge, pi, invoice string, amount, refunded, prevRefunded int64) *Event {
	var prev map[string]any
	if typ == "charge.refunded" {
		prev = map[string]any{"amount_refunded": prevRefunded, "refunded": false}
	}
	var inv any
	if invoice != "" {
		inv = invoice
	}
	desc := "One-time purchase"
	if invoice != "" {
		desc = "Subscription update"
	}
	return b.add(Event{Type: typ, Charge: charge, PaymentIntent: pi, Invoice: invoice, OutsideInvoice: invoice == ""},
		"stripe-ruby-mock/charge.succeeded.json", "", at, map[string]any{
			"id": charge, "customer": b.J.Customer, "payment_intent": pi, "amount": amount, "amount_captured": amount,
			"amount_refunded": refunded, "refunded": refunded >= amount, "status": "succeeded", "paid": true, "invoice": inv,
			"created": b.Base.Unix() + int64(at), "description": desc,
			"billing_details.email": b.J.Email,
		}, prev)
}

// PaymentIntent is a payment_intent.* event for a one-time purchase.
func (b *B) PaymentIntent(typ string, at int, pi string, amount int64, status string) *Event {
	received := int64(0)
	if status == "succeeded" {
		received = amount
	}
	return b.add(Event{Type: typ, PaymentIntent: pi, OutsideInvoice: true},
		"stripe-ruby-mock/payment_intent.succeeded.json", "", at, map[string]any{
			"id": pi, "customer": b.J.Customer, "amount": amount, "amount_received": received, "status": status,
			"invoice": nil, "description": "One-time purchase", "created": b.Base.Unix() + int64(at),
		}, nil)
}

// Dispute is a charge.dispute.* event naming only the charge, as Stripe
// sends it: no customer. prevStatus, when set, goes into
// previous_attributes.
func (b *B) Dispute(typ string, at int, dispute, charge, status, prevStatus string, amount int64) *Event {
	var prev map[string]any
	if prevStatus != "" {
		prev = map[string]any{"status": prevStatus}
	}
	return b.add(Event{Type: typ, Dispute: dispute, Charge: charge},
		"stripe-ruby-mock/charge.dispute.created.json", "", at, map[string]any{
			"id": dispute, "charge": charge, "payment_intent": nil, "status": status, "amount": amount,
			"created": b.Base.Unix() + int64(at), "reason": "fraudulent",
		}, prev)
}

// Refund is a refund.* event naming only the charge.
func (b *B) Refund(typ string, at int, refund, charge string, amount int64, status string) *Event {
	return b.add(Event{Type: typ, Charge: charge},
		"stripe-sync-engine/refund_created.json", "", at, map[string]any{
			"id": refund, "charge": charge, "payment_intent": nil, "amount": amount, "status": status,
			"created": b.Base.Unix() + int64(at),
		}, nil)
}

// PaymentMethodAttached is noise every consumer ignores.
func (b *B) PaymentMethodAttached(at int) *Event {
	return b.add(Event{Type: "payment_method.attached"}, "stripe-ruby-mock/payment_method.attached.json", "", at, map[string]any{
		"id": b.ID("pm", b.seq+1), "customer": b.J.Customer, "created": b.Base.Unix() + int64(at),
		"billing_details.email": b.J.Email,
	}, nil)
}

// InvoiceCreated is an invoice.created draft for sub.
func (b *B) InvoiceCreated(at int, invoice, sub string) *Event {
	return b.add(Event{Type: "invoice.created", Invoice: invoice, Subscription: sub},
		"stripe-ruby-mock/invoice.payment_failed.json", "", at, map[string]any{
			"id": invoice, "customer": b.J.Customer, "subscription": sub, "charge": nil, "payment_intent": nil,
			"status": "draft", "paid": false, "amount_due": 1500, "amount_paid": 0, "amount_remaining": 1500,
			"total": 1500, "subtotal": 1500, "billing_reason": "subscription_cycle", "customer_email": b.J.Email,
			"created": b.Base.Unix() + int64(at), "attempt_count": 0, "attempted": false, "next_payment_attempt": nil,
			"description": nil,
		}, nil)
}

// Build returns the journey, or the first error met.
func (b *B) Build(name string, want Want, mustTicket ...string) (*Journey, error) {
	if b.err != nil {
		return nil, b.err
	}
	if len(b.J.Events) == 0 {
		return nil, errors.New("journey: empty journey")
	}
	b.J.Name, b.J.Want, b.J.MustTicket = name, want, mustTicket
	return b.J, nil
}
