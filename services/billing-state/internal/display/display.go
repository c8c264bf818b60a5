// Package display turns a customer's canonical billing status into what
// the customer sees: a headline, a detail, a tone, one action, when access
// ends and whether a grace period runs. It is the one place billing-state
// derives these, for the gRPC API and the hosted status page alike, in the
// words of a per-locale catalogue (catalogue.go).
package display

import (
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// TrialEndingWithin is how close a trial's end must be for the display to
// warn that it ends (Stripe's own trial_will_end comes three days before).
const TrialEndingWithin = 7 * 24 * time.Hour

// Facts are what the display needs beyond the CustomerStatus.
type Facts struct {
	// RetryAt is when Stripe will next try the open invoice of a past_due
	// subscription; zero when it will not.
	RetryAt time.Time
	// Unknown: billing-state cannot vouch for the status, because an event
	// of the customer is in its dead letters or has been parked unapplied
	// for longer than STATUS_STALE_AFTER.
	Unknown bool
}

// Derive returns the display of st at now, in catalogue c. A nil st, or
// status NONE, is the empty state.
func Derive(c *Catalogue, st *billingv1.CustomerStatus, f Facts, now time.Time) *billingv1.Display {
	d := derive(c, st, f, now)
	d.Locale = c.Locale
	if d.Action != billingv1.DisplayAction_DISPLAY_ACTION_NONE {
		d.ActionLabel = c.ActionLabel[ActionName(d.Action)]
	}
	return d
}

// ActionName is the catalogue's name of an action ("update_payment_method").
func ActionName(a billingv1.DisplayAction) string {
	return strings.ToLower(strings.TrimPrefix(a.String(), "DISPLAY_ACTION_"))
}

// ToneName is a tone's short name ("ok", "attention", "problem", "neutral").
func ToneName(t billingv1.DisplayTone) string {
	return strings.ToLower(strings.TrimPrefix(t.String(), "DISPLAY_TONE_"))
}

const (
	ok        = billingv1.DisplayTone_DISPLAY_TONE_OK
	attention = billingv1.DisplayTone_DISPLAY_TONE_ATTENTION
	problem   = billingv1.DisplayTone_DISPLAY_TONE_PROBLEM
	neutral   = billingv1.DisplayTone_DISPLAY_TONE_NEUTRAL

	noAction      = billingv1.DisplayAction_DISPLAY_ACTION_NONE
	updatePayment = billingv1.DisplayAction_DISPLAY_ACTION_UPDATE_PAYMENT_METHOD
	resubscribe   = billingv1.DisplayAction_DISPLAY_ACTION_RESUBSCRIBE
	support       = billingv1.DisplayAction_DISPLAY_ACTION_CONTACT_SUPPORT
	managePlan    = billingv1.DisplayAction_DISPLAY_ACTION_MANAGE_PLAN
)

func derive(c *Catalogue, st *billingv1.CustomerStatus, f Facts, now time.Time) *billingv1.Display {
	base := byStatus(c, st, f, now)
	switch {
	case f.Unknown:
		// The error state says what the customer keeps while the status
		// cannot be vouched for: what the last known status grants.
		keeps := c.Keeps.Nothing
		if st.GetEntitled() {
			keeps = c.Keeps.Access
		}
		d := c.fill("unknown", vars{keeps: keeps}, true)
		d.Tone, d.Action = attention, support
		d.AccessUntil, d.Grace = base.AccessUntil, base.Grace
		return d
	case st.GetDisputeOpen():
		d := c.fill("dispute_open", vars{}, true)
		d.Tone, d.Action = attention, support
		d.AccessUntil, d.Grace = base.AccessUntil, base.Grace
		return d
	}
	return base
}

func byStatus(c *Catalogue, st *billingv1.CustomerStatus, f Facts, now time.Time) *billingv1.Display {
	periodEnd := ts(st.GetCurrentPeriodEnd())
	switch st.GetStatus() {
	case billingv1.BillingStatus_BILLING_STATUS_TRIALING:
		trialEnd := ts(st.GetTrialEnd())
		if trialEnd.IsZero() {
			trialEnd = periodEnd
		}
		if st.GetCancelAtPeriodEnd() {
			return canceledAtPeriodEnd(c, trialEnd)
		}
		if !trialEnd.IsZero() && trialEnd.Sub(now) <= TrialEndingWithin {
			d := c.fill("trial_ending", vars{date: trialEnd, days: daysUntil(now, trialEnd)}, true)
			d.Tone, d.Action = attention, managePlan
			return d
		}
		d := c.fill("trialing", vars{date: trialEnd}, !trialEnd.IsZero())
		d.Tone, d.Action = ok, managePlan
		return d
	case billingv1.BillingStatus_BILLING_STATUS_ACTIVE:
		if st.GetCancelAtPeriodEnd() {
			return canceledAtPeriodEnd(c, periodEnd)
		}
		// A one-time purchase has no period and nothing to manage.
		hasPlan := st.GetSubscriptionId() != ""
		d := c.fill("active", vars{date: periodEnd}, hasPlan && !periodEnd.IsZero())
		d.Tone, d.Action = ok, noAction
		if hasPlan {
			d.Action = managePlan
		}
		return d
	case billingv1.BillingStatus_BILLING_STATUS_PAST_DUE:
		kind, dated := "past_due", false
		if !f.RetryAt.IsZero() && f.RetryAt.After(now) {
			kind, dated = "past_due_retry", true
		}
		d := c.fill(kind, vars{date: f.RetryAt}, dated)
		d.Tone, d.Action, d.Grace = problem, updatePayment, st.GetEntitled()
		return d
	case billingv1.BillingStatus_BILLING_STATUS_UNPAID:
		d := c.fill("unpaid", vars{}, true)
		d.Tone, d.Action = problem, updatePayment
		return d
	case billingv1.BillingStatus_BILLING_STATUS_PAUSED:
		d := c.fill("paused", vars{}, true)
		d.Tone, d.Action = neutral, managePlan
		return d
	case billingv1.BillingStatus_BILLING_STATUS_INCOMPLETE:
		d := c.fill("incomplete", vars{}, true)
		d.Tone, d.Action = attention, noAction
		return d
	case billingv1.BillingStatus_BILLING_STATUS_CANCELED:
		d := c.fill("canceled", vars{date: periodEnd}, !periodEnd.IsZero())
		d.Tone, d.Action = neutral, resubscribe
		d.AccessUntil = st.GetCurrentPeriodEnd()
		return d
	case billingv1.BillingStatus_BILLING_STATUS_REFUNDED:
		amount := c.Money(st.GetAmountRefunded(), st.GetCurrency())
		d := c.fill("refunded", vars{amount: amount}, amount != "")
		d.Tone, d.Action = neutral, noAction
		return d
	}
	d := c.fill("none", vars{}, true)
	d.Tone, d.Action = neutral, noAction
	return d
}

func canceledAtPeriodEnd(c *Catalogue, end time.Time) *billingv1.Display {
	d := c.fill("canceled_at_period_end", vars{date: end}, !end.IsZero())
	d.Tone, d.Action = attention, resubscribe
	if !end.IsZero() {
		d.AccessUntil = timestamppb.New(end)
	}
	return d
}

type vars struct {
	date   time.Time
	days   int
	amount string
	keeps  string
}

// fill sets the kind's words: the main forms when full, else each _plain
// form the catalogue has.
func (c *Catalogue) fill(kind string, v vars, full bool) *billingv1.Display {
	t := c.Cases[kind]
	headline, detail := t.Headline, t.Detail
	if !full {
		if t.HeadlinePlain != "" {
			headline = t.HeadlinePlain
		}
		if t.DetailPlain != "" {
			detail = t.DetailPlain
		}
	}
	r := strings.NewReplacer("{date}", c.Date(v.date), "{amount}", v.amount, "{in_days}", c.inDays(v.days), "{keeps}", v.keeps)
	return &billingv1.Display{Kind: kind, Headline: r.Replace(headline), Detail: r.Replace(detail)}
}

// Date formats t (in UTC) with the catalogue's pattern.
func (c *Catalogue) Date(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	t = t.UTC()
	return strings.NewReplacer("{day}", strconv.Itoa(t.Day()), "{month}", c.Format.Months[t.Month()-1],
		"{year}", strconv.Itoa(t.Year())).Replace(c.Format.Date)
}

func (c *Catalogue) inDays(n int) string {
	p := c.Format.InDays
	form := p.Other
	switch {
	case n <= 0 && p.Zero != "":
		form = p.Zero
	case n == 1 && p.One != "":
		form = p.One
	}
	return strings.ReplaceAll(form, "{n}", strconv.Itoa(max(n, 0)))
}

// daysUntil counts whole days left, rounded up: a trial ending in 30
// hours ends "in 2 days".
func daysUntil(now, end time.Time) int {
	return int(math.Ceil(end.Sub(now).Hours() / 24))
}

// zeroDecimal are the currencies Stripe counts in whole units.
var zeroDecimal = map[string]bool{
	"bif": true, "clp": true, "djf": true, "gnf": true, "jpy": true, "kmf": true, "krw": true, "mga": true,
	"pyg": true, "rwf": true, "ugx": true, "vnd": true, "vuv": true, "xaf": true, "xof": true, "xpf": true,
}

var symbols = map[string]string{
	"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "inr": "₹", "krw": "₩", "brl": "R$",
	"cad": "CA$", "aud": "A$", "nzd": "NZ$", "chf": "CHF", "sek": "SEK", "nok": "NOK", "dkk": "DKK", "pln": "zł",
}

// Money formats an amount in the currency's smallest unit, e.g. 1500 usd
// as "$15.00" (en) or "15,00 $" (de). Empty when currency is unknown.
func (c *Catalogue) Money(minor int64, currency string) string {
	cur := strings.ToLower(strings.TrimSpace(currency))
	if cur == "" {
		return ""
	}
	neg := minor < 0
	if neg {
		minor = -minor
	}
	whole, frac := minor, ""
	if !zeroDecimal[cur] {
		whole = minor / 100
		frac = c.Format.Decimal + twoDigits(minor%100)
	}
	amount := group(strconv.FormatInt(whole, 10), c.Format.Group) + frac
	if neg {
		amount = "-" + amount
	}
	sym := symbols[cur]
	if sym == "" {
		sym = strings.ToUpper(cur)
	}
	return strings.NewReplacer("{symbol}", sym, "{amount}", amount).Replace(c.Format.Money)
}

func twoDigits(n int64) string {
	if n < 10 {
		return "0" + strconv.FormatInt(n, 10)
	}
	return strconv.FormatInt(n, 10)
}

func group(digits, sep string) string {
	if len(digits) <= 3 || sep == "" {
		return digits
	}
	var b strings.Builder
	lead := len(digits) % 3
	if lead > 0 {
		b.WriteString(digits[:lead])
	}
	for i := lead; i < len(digits); i += 3 {
		if b.Len() > 0 {
			b.WriteString(sep)
		}
		b.WriteString(digits[i : i+3])
	}
	return b.String()
}

func ts(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime()
}

// Messages returns the words a client keeps for when it has no answer.
func (c *Catalogue) Messages() *billingv1.DisplayMessages {
	m := &billingv1.DisplayMessages{Locale: c.Locale, UnreachableHeadline: c.Unreachable.Headline,
		UnreachableDetail: c.Unreachable.Detail, RetryLabel: c.Retry, ActionLabels: map[string]string{}}
	for _, a := range Actions {
		m.ActionLabels[a] = c.ActionLabel[a]
	}
	return m
}
