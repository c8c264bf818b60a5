// Package rules decides what support-notify does with each billing event:
// open (or add to) a support ticket, send an ops alert, or resolve an open
// ticket. Rules come from a YAML or JSON file (SUPPORT_RULES_FILE) or from
// the built-in defaults, and are validated at start so that a typo fails
// the deploy instead of silently dropping notifications.
package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Action is one thing the service can do for an event.
type Action string

const (
	// Ticket opens a support ticket, or comments on the open ticket about the
	// same invoice, dispute, subscription or payment.
	Ticket Action = "ticket"
	// Alert sends an ops alert on every configured ops channel: Slack and
	// the ops e-mail address; with priority urgent, an SMS too.
	Alert Action = "alert"
	// EmailCustomer e-mails the customer about a failed payment. Only
	// failure events accept it.
	EmailCustomer Action = "email_customer"
	// Resolve adds a "resolved" comment to the open ticket about the same
	// object and solves it. It never opens a ticket.
	Resolve Action = "resolve"
)

// Priorities Zendesk accepts.
var priorities = []string{"low", "normal", "high", "urgent"}

// EventInfo describes an event type the service knows how to word.
type EventInfo struct {
	// Title heads tickets and alerts: "Payment failed".
	Title string
	// Resolution marks a success that may resolve an earlier problem; only
	// these accept the resolve action, and they never accept ticket.
	Resolution bool
	// Subscription events may filter on cancellation_reason.
	Subscription bool
	// Payment events may filter on outside_invoice.
	Payment bool
	// Failure marks a failed payment the customer can act on: only these
	// accept email_customer.
	Failure bool
}

// Known lists the event types a rule may name. An event type outside this
// list is a configuration error: the service would have nothing sensible to
// write about it.
var Known = map[string]EventInfo{
	"invoice.payment_failed":                   {Title: "Invoice payment failed", Failure: true},
	"invoice.payment_action_required":          {Title: "Invoice payment needs customer action"},
	"invoice.marked_uncollectible":             {Title: "Invoice marked uncollectible"},
	"invoice.finalization_failed":              {Title: "Invoice finalization failed"},
	"invoice.paid":                             {Title: "Invoice paid", Resolution: true},
	"invoice.payment_succeeded":                {Title: "Invoice payment succeeded", Resolution: true},
	"charge.dispute.created":                   {Title: "Dispute opened"},
	"charge.dispute.updated":                   {Title: "Dispute updated"},
	"charge.dispute.funds_withdrawn":           {Title: "Dispute funds withdrawn"},
	"charge.dispute.closed":                    {Title: "Dispute closed", Resolution: true},
	"charge.refunded":                          {Title: "Charge refunded", Payment: true},
	"charge.failed":                            {Title: "Charge failed", Payment: true, Failure: true},
	"customer.subscription.deleted":            {Title: "Subscription canceled", Subscription: true},
	"customer.subscription.paused":             {Title: "Subscription paused", Subscription: true},
	"customer.subscription.trial_will_end":     {Title: "Trial ends soon", Subscription: true},
	"checkout.session.async_payment_failed":    {Title: "Checkout payment failed", Failure: true},
	"checkout.session.async_payment_succeeded": {Title: "Checkout payment succeeded", Resolution: true},
	"checkout.session.expired":                 {Title: "Checkout session expired"},
	"payment_intent.payment_failed":            {Title: "Payment failed", Payment: true, Failure: true},
	"payment_intent.requires_action":           {Title: "Payment needs customer action", Payment: true},
	"payment_intent.succeeded":                 {Title: "Payment succeeded", Resolution: true, Payment: true},
}

// Title returns the human title of an event type, or the type itself.
func Title(eventType string) string {
	if info, ok := Known[eventType]; ok {
		return info.Title
	}
	return eventType
}

// File is the rules file: a list of rules under "rules". It replaces the
// built-in defaults as a whole, so what a deployment does is exactly what
// its file says.
type File struct {
	Rules []Rule `json:"rules"`
}

// Rule says what to do with one event type, optionally only when the
// conditions in When hold. Several rules may name the same event; their
// actions add up.
type Rule struct {
	Event    string   `json:"event"`
	Actions  []Action `json:"actions"`
	Priority string   `json:"priority,omitempty"`
	When     *When    `json:"when,omitempty"`
}

// When narrows a rule. Every condition set must hold.
type When struct {
	// CancellationReason matches cancellation_details.reason of a
	// subscription event, e.g. ["payment_failed"].
	CancellationReason []string `json:"cancellation_reason,omitempty"`
	// OutsideInvoice matches payments that belong to no invoice (and so to
	// no subscription): invoices raise their own, better worded events.
	OutsideInvoice *bool `json:"outside_invoice,omitempty"`
	// Livemode matches live (true) or test (false) events only.
	Livemode *bool `json:"livemode,omitempty"`
}

// cancellation_details.reason values Stripe documents.
var cancellationReasons = []string{"cancellation_requested", "payment_disputed", "payment_failed"}

// Set is a validated rule list.
type Set struct {
	rules []Rule
}

// Defaults are the built-in rules. customer.subscription.trial_will_end is
// deliberately absent: most products email the customer themselves, and a
// support ticket per trial would drown the real problems. Enable it in a
// rules file when wanted.
func Defaults() *Set { return &Set{rules: defaultRules()} }

// defaultRules is a constant table; TestDefaultsAreValid runs it through New.
func defaultRules() []Rule {
	yes := true
	return []Rule{
		{Event: "invoice.payment_failed", Actions: []Action{Ticket, Alert}},
		{Event: "charge.dispute.created", Actions: []Action{Ticket, Alert}, Priority: "urgent"},
		{Event: "customer.subscription.deleted", Actions: []Action{Alert}},
		{Event: "customer.subscription.deleted", Actions: []Action{Ticket}, When: &When{CancellationReason: []string{"payment_failed"}}},
		{Event: "charge.refunded", Actions: []Action{Alert}},
		{Event: "checkout.session.async_payment_failed", Actions: []Action{Ticket}},
		{Event: "payment_intent.payment_failed", Actions: []Action{Ticket}, When: &When{OutsideInvoice: &yes}},
		{Event: "invoice.payment_action_required", Actions: []Action{Ticket}},
		// Successes only close what an earlier failure opened; they never
		// open anything, so a successful purchase creates nothing.
		{Event: "invoice.paid", Actions: []Action{Resolve}},
		{Event: "invoice.payment_succeeded", Actions: []Action{Resolve}},
		{Event: "checkout.session.async_payment_succeeded", Actions: []Action{Resolve}},
		{Event: "payment_intent.succeeded", Actions: []Action{Resolve}},
		{Event: "charge.dispute.closed", Actions: []Action{Resolve}},
	}
}

// ErrInvalid wraps every validation failure.
var ErrInvalid = errors.New("invalid support rules")

// Load reads path (YAML or JSON); an empty path means the defaults.
func Load(path string) (*Set, error) {
	if path == "" {
		return Defaults(), nil
	}
	b, err := os.ReadFile(path) // #nosec G304 -- SUPPORT_RULES_FILE, named by the operator
	if err != nil {
		return nil, fmt.Errorf("read SUPPORT_RULES_FILE: %w", err)
	}
	s, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("SUPPORT_RULES_FILE %s: %w", path, err)
	}
	return s, nil
}

// Parse reads a rules document. JSON is YAML, so one parser reads both;
// unknown keys are errors, because a misspelt "when" would otherwise widen a
// rule without anyone noticing.
func Parse(b []byte) (*Set, error) {
	var raw map[string]any
	if err := yaml.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, ok := raw["rules"]; !ok {
		return nil, fmt.Errorf("%w: no \"rules\" list (an empty file would silently turn every notification off; write \"rules: []\" to mean that)", ErrInvalid)
	}
	var f File
	if err := yaml.UnmarshalStrict(b, &f); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return New(f)
}

// New validates f and reports every problem at once.
func New(f File) (*Set, error) {
	var errs []error
	for i, r := range f.Rules {
		where := fmt.Sprintf("rules[%d] (%s)", i, r.Event)
		info, known := Known[r.Event]
		if r.Event == "" {
			errs = append(errs, fmt.Errorf("rules[%d]: event is required", i))
		} else if !known {
			errs = append(errs, fmt.Errorf("%s: unknown event type; known: %s", where, strings.Join(KnownTypes(), ", ")))
		}
		if len(r.Actions) == 0 {
			errs = append(errs, fmt.Errorf("%s: actions is empty", where))
		}
		seen := map[Action]bool{}
		for _, a := range r.Actions {
			switch a {
			case Ticket, Alert, Resolve, EmailCustomer:
			default:
				errs = append(errs, fmt.Errorf("%s: unknown action %q (ticket, alert, resolve, email_customer)", where, a))
				continue
			}
			if seen[a] {
				errs = append(errs, fmt.Errorf("%s: action %q listed twice", where, a))
			}
			seen[a] = true
		}
		if known && seen[Resolve] && !info.Resolution {
			errs = append(errs, fmt.Errorf("%s: resolve only applies to success events (invoice.paid, invoice.payment_succeeded, ...)", where))
		}
		if known && seen[EmailCustomer] && !info.Failure {
			errs = append(errs, fmt.Errorf("%s: email_customer only applies to failed payments (invoice.payment_failed, payment_intent.payment_failed, charge.failed, checkout.session.async_payment_failed)", where))
		}
		if known && seen[Ticket] && info.Resolution {
			errs = append(errs, fmt.Errorf("%s: a success event resolves tickets, it does not open them", where))
		}
		if r.Priority != "" {
			if !slices.Contains(priorities, r.Priority) {
				errs = append(errs, fmt.Errorf("%s: priority %q is not one of %s", where, r.Priority, strings.Join(priorities, ", ")))
			}
			if !seen[Ticket] && !seen[Alert] {
				errs = append(errs, fmt.Errorf("%s: priority needs the ticket or alert action", where))
			}
		}
		if w := r.When; w != nil {
			if len(w.CancellationReason) > 0 && known && !info.Subscription {
				errs = append(errs, fmt.Errorf("%s: cancellation_reason only applies to subscription events", where))
			}
			for _, cr := range w.CancellationReason {
				if !slices.Contains(cancellationReasons, cr) {
					errs = append(errs, fmt.Errorf("%s: cancellation_reason %q is not one of %s", where, cr, strings.Join(cancellationReasons, ", ")))
				}
			}
			if w.OutsideInvoice != nil && known && !info.Payment {
				errs = append(errs, fmt.Errorf("%s: outside_invoice only applies to payment_intent and charge events", where))
			}
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
	}
	return &Set{rules: slices.Clone(f.Rules)}, nil
}

// KnownTypes returns the known event types, sorted.
func KnownTypes() []string {
	out := make([]string, 0, len(Known))
	for k := range Known {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Types returns the sorted event types some rule takes one of actions for:
// the only events a consumer doing those actions needs to receive.
func (s *Set) Types(actions ...Action) []string {
	var out []string
	if s == nil {
		return out
	}
	for _, r := range s.rules {
		for _, a := range r.Actions {
			if slices.Contains(actions, a) && !slices.Contains(out, r.Event) {
				out = append(out, r.Event)
			}
		}
	}
	sort.Strings(out)
	return out
}

// Rules returns a copy of the rules, for logging the effective set.
func (s *Set) Rules() []Rule { return slices.Clone(s.rules) }

// Decision is what to do with one event.
type Decision struct {
	Ticket   bool
	Alert    bool
	Resolve  bool
	Priority string // set when Ticket; "normal" unless a rule says otherwise
	// Urgent is set when an alert rule that matched has priority urgent:
	// the alert goes by SMS too.
	Urgent bool
	// EmailCustomer: the customer gets an e-mail about the failed payment.
	EmailCustomer bool
}

// None reports whether the event needs nothing.
func (d Decision) None() bool { return !d.Ticket && !d.Alert && !d.Resolve && !d.EmailCustomer }

// Decide applies every rule that matches ev.
func (s *Set) Decide(ev *billingv1.BillingEvent) Decision {
	var d Decision
	if s == nil || ev == nil {
		return d
	}
	for _, r := range s.rules {
		if r.Event != ev.GetType() || !r.When.matches(ev) {
			continue
		}
		for _, a := range r.Actions {
			switch a {
			case Ticket:
				d.Ticket = true
				d.Priority = higher(d.Priority, r.Priority)
			case Alert:
				d.Alert = true
				d.Urgent = d.Urgent || r.Priority == "urgent"
			case EmailCustomer:
				d.EmailCustomer = true
			case Resolve:
				d.Resolve = true
			}
		}
	}
	if d.Ticket && d.Priority == "" {
		d.Priority = "normal"
	}
	return d
}

func (w *When) matches(ev *billingv1.BillingEvent) bool {
	if w == nil {
		return true
	}
	if len(w.CancellationReason) > 0 && !slices.Contains(w.CancellationReason, ev.GetCancellationReason()) {
		return false
	}
	if w.OutsideInvoice != nil && *w.OutsideInvoice == billedByInvoice(ev) {
		return false
	}
	if w.Livemode != nil && *w.Livemode != ev.GetLivemode() {
		return false
	}
	return true
}

// billedByInvoice reports whether a payment belongs to an invoice (and so,
// usually, a subscription). From API version 2025-03-31.basil payment
// intents and charges no longer name their invoice, so the description
// Stripe Billing gives the payments it creates ("Subscription creation",
// "Subscription update", "Subscription cycle") counts too.
func billedByInvoice(ev *billingv1.BillingEvent) bool {
	if ev.GetInvoiceId() != "" {
		return true
	}
	var env struct {
		Data struct {
			Object struct {
				Description string `json:"description"`
			} `json:"object"`
		} `json:"data"`
	}
	if len(ev.GetRawJson()) == 0 || json.Unmarshal(ev.GetRawJson(), &env) != nil {
		return false
	}
	return strings.HasPrefix(env.Data.Object.Description, "Subscription ")
}

func higher(a, b string) string {
	if slices.Index(priorities, b) > slices.Index(priorities, a) {
		return b
	}
	return a
}
