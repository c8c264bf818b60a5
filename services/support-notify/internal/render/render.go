// Package render words billing events for people: ticket subjects and
// bodies, "resolved" comments, Slack Block Kit messages, amounts in their
// currency and links into the Stripe dashboard. Everything here is a pure
// function of the event, which matters for tickets: Zendesk rejects a
// repeated Idempotency-Key whose payload differs, so a retried ticket must
// be rendered byte for byte the same.
package render

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/services/support-notify/internal/rules"
)

// DashboardBase is the Stripe dashboard's origin.
const DashboardBase = "https://dashboard.stripe.com"

// Link is a labelled URL.
type Link struct {
	Label string
	URL   string
}

// DashboardURL returns the dashboard page of an object. kind is the
// dashboard's path segment: invoices, payments, subscriptions, customers.
// Test-mode objects live under /test.
func DashboardURL(livemode bool, kind, id string) string {
	mode := "/test"
	if livemode {
		mode = ""
	}
	return DashboardBase + mode + "/" + kind + "/" + id
}

// Links returns the dashboard links an event can name, most specific first.
func Links(ev *billingv1.BillingEvent) []Link {
	var out []Link
	add := func(label, kind, id string) {
		if id != "" {
			out = append(out, Link{Label: label, URL: DashboardURL(ev.GetLivemode(), kind, id)})
		}
	}
	add("Invoice", "invoices", ev.GetInvoiceId())
	switch {
	case ev.GetPaymentIntentId() != "":
		add("Payment", "payments", ev.GetPaymentIntentId())
	case ev.GetChargeId() != "":
		add("Payment", "payments", ev.GetChargeId())
	}
	add("Subscription", "subscriptions", ev.GetSubscriptionId())
	add("Customer", "customers", ev.GetCustomerId())
	return out
}

// Currencies whose smallest unit is the whole unit, or a thousandth, per
// Stripe's documentation; everything else has two decimals.
var (
	zeroDecimal  = []string{"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}
	threeDecimal = []string{"bhd", "jod", "kwd", "omr", "tnd"}
)

// Money formats an amount in the smallest currency unit: 4900 usd is
// "49.00 USD", 5000 jpy is "5000 JPY". An empty currency gives "".
func Money(amount int64, currency string) string {
	cur := strings.ToLower(strings.TrimSpace(currency))
	if cur == "" {
		return ""
	}
	decimals := 2
	switch {
	case slices.Contains(zeroDecimal, cur):
		decimals = 0
	case slices.Contains(threeDecimal, cur):
		decimals = 3
	}
	neg := amount < 0
	if neg {
		amount = -amount
	}
	s := strconv.FormatInt(amount, 10)
	if decimals > 0 {
		for len(s) <= decimals {
			s = "0" + s
		}
		s = s[:len(s)-decimals] + "." + s[len(s)-decimals:]
	}
	if neg {
		s = "-" + s
	}
	return s + " " + strings.ToUpper(cur)
}

// Amount picks the amount that matters for the event: what is due on a
// failed invoice, what was paid on a paid one, what was refunded on a
// refund, the disputed amount on a dispute.
func Amount(ev *billingv1.BillingEvent) int64 {
	t := ev.GetType()
	switch {
	case t == "charge.refunded" && ev.GetAmountRefunded() > 0:
		return ev.GetAmountRefunded()
	case t == "invoice.paid" || t == "invoice.payment_succeeded":
		return firstNonZero(ev.GetAmountPaid(), ev.GetAmount(), ev.GetAmountDue())
	case strings.HasPrefix(t, "invoice."):
		return firstNonZero(ev.GetAmountDue(), ev.GetAmount(), ev.GetAmountPaid())
	}
	return firstNonZero(ev.GetAmount(), ev.GetAmountDue(), ev.GetAmountPaid())
}

func firstNonZero(v ...int64) int64 {
	for _, x := range v {
		if x != 0 {
			return x
		}
	}
	return 0
}

// Reason is the short "why" of an event: the failure message, the dispute
// reason, the cancellation reason.
func Reason(ev *billingv1.BillingEvent) string {
	switch {
	case ev.GetDisputeReason() != "":
		return humanize(ev.GetDisputeReason())
	case ev.GetFailureMessage() != "" && ev.GetFailureCode() != "":
		return ev.GetFailureMessage() + " (" + ev.GetFailureCode() + ")"
	case ev.GetFailureMessage() != "":
		return ev.GetFailureMessage()
	case ev.GetFailureCode() != "":
		return humanize(ev.GetFailureCode())
	case ev.GetCancellationReason() != "":
		return humanize(ev.GetCancellationReason())
	case ev.GetType() == "charge.refunded":
		if ev.GetRefunded() {
			return "fully refunded"
		}
		return "partially refunded"
	}
	return ""
}

func humanize(code string) string { return strings.ReplaceAll(code, "_", " ") }

// Plan describes what the customer buys, read from the raw event where the
// normalised fields do not carry a name: the price's nickname or lookup key,
// else the product name when expanded, else the price id and interval.
func Plan(ev *billingv1.BillingEvent) string {
	name := planName(ev.GetRawJson())
	if name == "" {
		name = ev.GetPriceId()
	}
	if name == "" {
		return ""
	}
	if iv := ev.GetInterval(); iv != "" {
		if n := ev.GetIntervalCount(); n > 1 {
			return fmt.Sprintf("%s (every %d %ss)", name, n, iv)
		}
		return name + " (" + iv + "ly)"
	}
	return name
}

// planName digs the first line/item price out of an invoice or subscription.
func planName(raw []byte) string {
	if len(raw) == 0 {
		return ""
	}
	var env struct {
		Data struct {
			Object struct {
				Lines struct {
					Data []planCarrier `json:"data"`
				} `json:"lines"`
				Items struct {
					Data []planCarrier `json:"data"`
				} `json:"items"`
				Plan  *priceLike `json:"plan"`
				Price *priceLike `json:"price"`
			} `json:"object"`
		} `json:"data"`
	}
	if json.Unmarshal(raw, &env) != nil {
		return ""
	}
	o := env.Data.Object
	cands := []*priceLike{o.Price, o.Plan}
	for _, l := range append(o.Items.Data, o.Lines.Data...) {
		cands = append(cands, l.Price, l.Plan)
	}
	for _, p := range cands {
		if n := p.name(); n != "" {
			return n
		}
	}
	for _, l := range o.Lines.Data {
		if l.Description != "" {
			return l.Description
		}
	}
	return ""
}

type planCarrier struct {
	Description string     `json:"description"`
	Price       *priceLike `json:"price"`
	Plan        *priceLike `json:"plan"`
}

type priceLike struct {
	Nickname  string          `json:"nickname"`
	LookupKey string          `json:"lookup_key"`
	Product   json.RawMessage `json:"product"`
}

func (p *priceLike) name() string {
	if p == nil {
		return ""
	}
	if p.Nickname != "" {
		return p.Nickname
	}
	var prod struct {
		Name string `json:"name"`
	}
	if len(p.Product) > 0 && p.Product[0] == '{' && json.Unmarshal(p.Product, &prod) == nil && prod.Name != "" {
		return prod.Name
	}
	return p.LookupKey
}

// LatestInvoice returns a subscription event's latest_invoice id (a string
// or an expanded object), so a cancellation after failed payments lands on
// the ticket those failures opened.
func LatestInvoice(raw []byte) string {
	var env struct {
		Data struct {
			Object struct {
				LatestInvoice json.RawMessage `json:"latest_invoice"`
			} `json:"object"`
		} `json:"data"`
	}
	if json.Unmarshal(raw, &env) != nil || len(env.Data.Object.LatestInvoice) == 0 {
		return ""
	}
	var id string
	if json.Unmarshal(env.Data.Object.LatestInvoice, &id) == nil {
		return id
	}
	var obj struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(env.Data.Object.LatestInvoice, &obj) == nil {
		return obj.ID
	}
	return ""
}

// Keys names the object a ticket is about (primary) and the objects whose
// open ticket the event should join instead (related), in order of
// preference. Later failures of one invoice thus comment on one ticket.
func Keys(ev *billingv1.BillingEvent) (primary string, related []string) {
	t := ev.GetType()
	obj := ev.GetObjectId()
	pick := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	add := func(prefix, id string) {
		if id != "" && prefix+id != primary && !slices.Contains(related, prefix+id) {
			related = append(related, prefix+id)
		}
	}
	switch {
	case strings.HasPrefix(t, "charge.dispute."):
		if id := pick(ev.GetDisputeId(), obj); id != "" {
			primary = "dispute:" + id
		}
	case strings.HasPrefix(t, "invoice."):
		if id := pick(ev.GetInvoiceId(), obj); id != "" {
			primary = "invoice:" + id
		}
	case strings.HasPrefix(t, "customer.subscription."):
		if id := pick(ev.GetSubscriptionId(), obj); id != "" {
			primary = "subscription:" + id
		}
		// The normaliser puts latest_invoice in invoice_id; older events
		// normalised before it did still carry it in the raw JSON.
		add("invoice:", ev.GetInvoiceId())
		add("invoice:", LatestInvoice(ev.GetRawJson()))
	case strings.HasPrefix(t, "checkout.session."):
		if id := pick(ev.GetCheckoutSessionId(), obj); id != "" {
			primary = "checkout:" + id
		}
		add("payment_intent:", ev.GetPaymentIntentId())
	case strings.HasPrefix(t, "payment_intent."):
		if id := pick(ev.GetPaymentIntentId(), obj); id != "" {
			primary = "payment_intent:" + id
		}
		add("invoice:", ev.GetInvoiceId())
	case strings.HasPrefix(t, "charge."):
		if id := pick(ev.GetChargeId(), obj); id != "" {
			primary = "charge:" + id
		}
		add("payment_intent:", ev.GetPaymentIntentId())
		add("invoice:", ev.GetInvoiceId())
	}
	if primary == "" {
		primary = "event:" + ev.GetEventId()
	}
	return primary, related
}

// Tags labels a ticket for Zendesk views and triggers. Zendesk tags are
// lower case words; dots become underscores.
func Tags(ev *billingv1.BillingEvent) []string {
	mode := "stripe_test"
	if ev.GetLivemode() {
		mode = "stripe_live"
	}
	return []string{"launchready", "stripe", mode, strings.ReplaceAll(ev.GetType(), ".", "_")}
}

// Ticket is the content of a new ticket.
type Ticket struct {
	Subject string
	Body    string
	Tags    []string
}

// NewTicket words a new ticket for ev.
func NewTicket(ev *billingv1.BillingEvent) Ticket {
	subject := testMark(ev) + rules.Title(ev.GetType())
	if m := Money(Amount(ev), ev.GetCurrency()); m != "" {
		subject += ": " + m
	}
	if who := Customer(ev); who != "" {
		subject += " (" + who + ")"
	}
	tags := Tags(ev)
	if Smoke(ev) {
		tags = append(tags, "launchready_smoke")
	}
	return Ticket{Subject: subject, Body: Details(ev), Tags: tags}
}

// Customer names the customer: name and email, else email, else id.
func Customer(ev *billingv1.BillingEvent) string {
	switch {
	case ev.GetCustomerName() != "" && ev.GetEmail() != "":
		return ev.GetCustomerName() + " <" + ev.GetEmail() + ">"
	case ev.GetEmail() != "":
		return ev.GetEmail()
	case ev.GetCustomerName() != "":
		return ev.GetCustomerName()
	}
	return ev.GetCustomerId()
}

// Details is the plain-text body shared by new tickets and follow-up
// comments: what happened, to whom, for how much, what Stripe does next,
// and where to look.
func Details(ev *billingv1.BillingEvent) string {
	var b strings.Builder
	line := func(label, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\n", label, v)
		}
	}
	fmt.Fprintf(&b, "%s.\n\n", rules.Title(ev.GetType()))
	line("Customer", Customer(ev))
	if Customer(ev) != ev.GetCustomerId() {
		line("Customer id", ev.GetCustomerId())
	}
	line("Amount", Money(Amount(ev), ev.GetCurrency()))
	if ev.GetType() == "charge.refunded" && ev.GetAmount() > 0 {
		line("Charge amount", Money(ev.GetAmount(), ev.GetCurrency()))
	}
	line("Plan", Plan(ev))
	if strings.HasPrefix(ev.GetType(), "charge.dispute.") {
		line("Charge", ev.GetChargeId())
		if ev.GetCustomerId() == "" {
			if ev.GetEmail() != "" {
				line("Guest payment", "no Stripe customer; billing e-mail "+ev.GetEmail())
			} else {
				line("Customer", "not known yet; it is added here once the charge's customer is known")
			}
		}
		line("Dispute reason", humanize(ev.GetDisputeReason()))
		line("Dispute status", humanize(ev.GetStatus()))
	} else {
		line("Reason", Reason(ev))
	}
	if n := ev.GetAttemptCount(); n > 0 {
		line("Attempt", strconv.FormatInt(n, 10))
	}
	if ts := ev.GetNextPaymentAttempt(); ts.IsValid() && ts.GetSeconds() > 0 {
		line("Next retry", When(ts.AsTime()))
	} else if strings.HasPrefix(ev.GetType(), "invoice.payment_failed") {
		line("Next retry", "none scheduled")
	}
	if ev.GetType() == "customer.subscription.deleted" {
		line("Cancellation reason", humanize(ev.GetCancellationReason()))
	}
	if len(Links(ev)) > 0 {
		b.WriteString("\nStripe dashboard:\n")
		for _, l := range Links(ev) {
			fmt.Fprintf(&b, "- %s: %s\n", l.Label, l.URL)
		}
	}
	fmt.Fprintf(&b, "\nStripe event %s (%s) at %s.", ev.GetEventId(), ev.GetType(), When(ev.GetCreated().AsTime()))
	return b.String()
}

// CustomerFound words the comment that names the customer of a ticket that
// opened before its charge's customer was known; ev taught the link.
func CustomerFound(ev *billingv1.BillingEvent, charge string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Customer of charge %s: %s\n", charge, Customer(ev))
	if id := ev.GetCustomerId(); id != "" {
		fmt.Fprintf(&b, "Customer id: %s\n%s\n", id, DashboardURL(ev.GetLivemode(), "customers", id))
	} else if ev.GetEmail() != "" {
		b.WriteString("No customer: a guest payment.\n")
	}
	fmt.Fprintf(&b, "\nLearned from Stripe event %s (%s).", ev.GetEventId(), ev.GetType())
	return b.String()
}

// Resolved words the comment that closes a ticket after a success.
func Resolved(ev *billingv1.BillingEvent) string {
	var b strings.Builder
	what := "Resolved"
	switch {
	case strings.HasPrefix(ev.GetType(), "invoice."):
		what = "Resolved: the invoice is paid"
	case ev.GetType() == "charge.dispute.closed":
		what = "Resolved: the dispute is closed"
		if s := ev.GetStatus(); s != "" {
			what += " (" + humanize(s) + ")"
		}
	case strings.HasSuffix(ev.GetType(), "succeeded"):
		what = "Resolved: the payment succeeded"
	}
	b.WriteString(what + ".\n\n")
	if m := Money(Amount(ev), ev.GetCurrency()); m != "" {
		fmt.Fprintf(&b, "Amount: %s\n", m)
	}
	for _, l := range Links(ev) {
		fmt.Fprintf(&b, "%s: %s\n", l.Label, l.URL)
	}
	fmt.Fprintf(&b, "\nStripe event %s (%s) at %s.", ev.GetEventId(), ev.GetType(), When(ev.GetCreated().AsTime()))
	return b.String()
}

// When formats a time for people, in UTC.
func When(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }
