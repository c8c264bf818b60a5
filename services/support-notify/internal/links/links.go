// Package links finds the customer of an event that names only a charge.
//
// A dispute names a charge, not a customer. support-notify keeps its own
// charge → customer map (support.charge_customers), learned from the
// charge, invoice, payment and checkout events it sees, read through
// canonical.Classify like every other consumer reads them. A dispute that
// arrives before its charge waits for the link (SUPPORT_LINK_WAIT); if it is
// still unknown and a Stripe key is set, the charge is read from Stripe's
// API. Otherwise the ticket opens without the customer and is completed
// when the link arrives.
package links

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/stripeapi"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/services/support-notify/internal/store"
)

// Types are the event types that teach charge → customer links: the ticket
// consumer receives them besides the types its rules act on, and records
// the links in the transaction of its own work. The alert consumer only
// reads them, so an alert costs no extra round trip.
var Types = []string{
	"charge.succeeded", "charge.failed", "charge.captured", "charge.updated", "charge.pending",
	"payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.processing",
	"invoice.paid", "invoice.payment_succeeded", "invoice.payment_failed", "invoice.finalized",
	"invoice_payment.paid", "checkout.session.completed",
}

// Learned returns the links ev teaches: each charge and payment intent it
// names, with its customer (or, for a guest payment, the billing e-mail).
func Learned(ev *billingv1.BillingEvent) []store.ChargeCustomer {
	f := canonical.Classify(ev)
	if f.Kind.NamesOnlyCharge() || (ev.GetCustomerId() == "" && ev.GetEmail() == "") {
		return nil
	}
	var out []store.ChargeCustomer
	for _, ref := range f.Link.Refs() {
		out = append(out, store.ChargeCustomer{Ref: ref, CustomerID: ev.GetCustomerId(), Email: ev.GetEmail(),
			Name: ev.GetCustomerName(), Source: ev.GetEventId()})
	}
	return out
}

// Needs reports whether ev names only a charge and does not name its
// customer: its ticket and alert need the link.
func Needs(ev *billingv1.BillingEvent) bool {
	return canonical.Classify(ev).Kind.NamesOnlyCharge() && ev.GetCustomerId() == "" && len(refs(ev)) > 0
}

func refs(ev *billingv1.BillingEvent) []string {
	return canonical.Classify(ev).Link.Refs()
}

// Resolver fills in the customer of events that name only a charge.
type Resolver struct {
	Pool *pgxpool.Pool
	// Wait is SUPPORT_LINK_WAIT: how long an event waits for the link to
	// be learned before the API is asked or the event goes on without it.
	Wait time.Duration
	// Poll is how often the map is read while waiting (0: 250 ms).
	Poll time.Duration
	// Stripe reads the charge when the link is still unknown; nil means no
	// STRIPE_API_KEY.
	Stripe *stripeapi.Client
}

// Outcome says how Name found the customer.
type Outcome string

const (
	NotNeeded Outcome = "not_needed" // the event names its customer
	Learnt    Outcome = "learned"    // from support.charge_customers
	Fetched   Outcome = "fetched"    // from Stripe's API
	Guest     Outcome = "guest"      // the charge has no customer
	Unknown   Outcome = "unknown"    // not known yet: the ticket waits for it
)

// Name returns ev with the customer of its charge filled in (a copy; ev is
// not changed) and how it was found. It waits up to Wait for the link.
func (r *Resolver) Name(ctx context.Context, ev *billingv1.BillingEvent) (*billingv1.BillingEvent, Outcome, error) {
	if !Needs(ev) {
		return ev, NotNeeded, nil
	}
	rs := refs(ev)
	poll := r.Poll
	if poll <= 0 {
		poll = 250 * time.Millisecond
	}
	deadline := time.Now().Add(r.Wait)
	for {
		c, ok, err := store.ChargeCustomerOf(ctx, r.Pool, rs)
		if err != nil {
			return ev, Unknown, err
		}
		if ok {
			return fill(ev, c), outcomeOf(c, Learnt), nil
		}
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		t := time.NewTimer(min(poll, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return ev, Unknown, fmt.Errorf("wait for the customer of %s: %w", rs[0], context.Cause(ctx))
		case <-t.C:
		}
	}
	if r.Stripe == nil || ev.GetChargeId() == "" {
		return ev, Unknown, nil
	}
	c, err := r.fetch(ctx, ev.GetChargeId())
	if err != nil {
		return ev, Unknown, err
	}
	if err := store.LearnChargeCustomers(ctx, r.Pool, []store.ChargeCustomer{c}); err != nil {
		return ev, Unknown, err
	}
	return fill(ev, c), outcomeOf(c, Fetched), nil
}

func outcomeOf(c store.ChargeCustomer, found Outcome) Outcome {
	if c.CustomerID == "" {
		return Guest
	}
	return found
}

// fetch reads the charge from Stripe: its customer (an id, or an expanded
// object) and its billing e-mail.
func (r *Resolver) fetch(ctx context.Context, charge string) (store.ChargeCustomer, error) {
	obj, err := r.Stripe.GetCharge(ctx, charge)
	if err != nil {
		return store.ChargeCustomer{}, fmt.Errorf("read charge %s from Stripe: %w", charge, err)
	}
	return ChargeCustomerFromAPI(obj.Raw)
}

// ChargeCustomerFromAPI reads a charge object as the API returns it.
func ChargeCustomerFromAPI(raw []byte) (store.ChargeCustomer, error) {
	var ch struct {
		ID             string          `json:"id"`
		Customer       json.RawMessage `json:"customer"`
		ReceiptEmail   string          `json:"receipt_email"`
		PaymentIntent  json.RawMessage `json:"payment_intent"`
		BillingDetails struct {
			Email string `json:"email"`
			Name  string `json:"name"`
		} `json:"billing_details"`
	}
	if err := json.Unmarshal(raw, &ch); err != nil || ch.ID == "" {
		return store.ChargeCustomer{}, fmt.Errorf("read charge: not a charge object")
	}
	c := store.ChargeCustomer{Ref: ch.ID, Email: ch.BillingDetails.Email, Name: ch.BillingDetails.Name, Source: "stripe_api"}
	if c.Email == "" {
		c.Email = ch.ReceiptEmail
	}
	var id string
	var cus struct {
		ID    string `json:"id"`
		Email string `json:"email"`
		Name  string `json:"name"`
	}
	switch {
	case len(ch.Customer) == 0 || string(ch.Customer) == "null":
	case json.Unmarshal(ch.Customer, &id) == nil:
		c.CustomerID = id
	case json.Unmarshal(ch.Customer, &cus) == nil:
		c.CustomerID = cus.ID
		if cus.Email != "" {
			c.Email = cus.Email
		}
		if cus.Name != "" {
			c.Name = cus.Name
		}
	}
	return c, nil
}

// fill copies c into a copy of ev.
func fill(ev *billingv1.BillingEvent, c store.ChargeCustomer) *billingv1.BillingEvent {
	out := proto.Clone(ev).(*billingv1.BillingEvent)
	if out.CustomerId == "" {
		out.CustomerId = c.CustomerID
	}
	if out.Email == "" {
		out.Email = c.Email
	}
	if out.CustomerName == "" {
		out.CustomerName = c.Name
	}
	return out
}
