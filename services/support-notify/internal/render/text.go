package render

import (
	"fmt"
	"strings"
	"time"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/services/support-notify/internal/rules"
)

// TestMark heads every message about a smoke test event, so nobody takes
// `launchready smoke` for a real failure.
const TestMark = "[TEST] "

// Smoke reports whether any of evs belongs to a smoke test, as the
// normaliser marked it.
func Smoke(evs ...*billingv1.BillingEvent) bool {
	for _, ev := range evs {
		if ev.GetSmokeRun() != "" {
			return true
		}
	}
	return false
}

func testMark(evs ...*billingv1.BillingEvent) string {
	if Smoke(evs...) {
		return TestMark
	}
	return ""
}

// TextMessage is an alert in plain text: an e-mail's subject and body.
type TextMessage struct {
	Subject string
	Body    string
}

// MaxSMS is the longest SMS text: two concatenated segments.
const MaxSMS = 306

// AlertText words one event's ops alert for e-mail.
func AlertText(ev *billingv1.BillingEvent, late Lateness) TextMessage {
	title := rules.Title(ev.GetType())
	if late.Late {
		title = "LATE: " + title
	}
	subject := testMark(ev) + title
	money := Money(Amount(ev), ev.GetCurrency())
	if money != "" {
		subject += ": " + money
	}
	if who := Customer(ev); who != "" {
		subject += " (" + who + ")"
	}
	var b strings.Builder
	if Smoke(ev) {
		b.WriteString("This is a test message from `launchready smoke`. Nothing needs doing.\n\n")
	}
	line := func(label, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\n", label, v)
		}
	}
	for _, f := range AlertFields(ev) {
		line(f.Label, f.Value)
	}
	b.WriteString("\n")
	for _, l := range Links(ev) {
		line(l.Label, l.URL)
	}
	fmt.Fprintf(&b, "\nEvent %s (%s) at %s\n", ev.GetEventId(), ev.GetType(), When(ev.GetCreated().AsTime()))
	if late.Late {
		fmt.Fprintf(&b, "Late: %s after the event (SLO %s)\n", late.Age.Round(time.Second), late.SLO)
	}
	return TextMessage{Subject: subject, Body: b.String()}
}

// DigestText words a burst of alerts for e-mail: the same summary as the
// Slack digest, and every event id.
func DigestText(evs []*billingv1.BillingEvent, late Lateness) TextMessage {
	s := Summarize(evs)
	subject := testMark(evs...) + s.Headline()
	if late.Late {
		subject = "LATE: " + subject
	}
	var b strings.Builder
	b.WriteString("By type and reason:\n")
	for _, g := range s.Groups {
		l := "  " + g.Title
		if g.Reason != "" {
			l += ", " + g.Reason
		}
		fmt.Fprintf(&b, "%s: %d\n", l, g.Count)
	}
	if len(s.Totals) > 0 {
		fmt.Fprintf(&b, "\nTotal: %s\n", strings.Join(s.Totals, " + "))
	}
	if len(s.Customers) > 0 {
		b.WriteString("\nTop customers:\n")
		for _, c := range s.Customers {
			l := "  " + c.Name
			if c.Amount != "" {
				l += ": " + c.Amount
			}
			if c.Count > 1 {
				l += fmt.Sprintf(" (%d alerts)", c.Count)
			}
			if c.URL != "" {
				l += " " + c.URL
			}
			b.WriteString(l + "\n")
		}
	}
	fmt.Fprintf(&b, "\n%d events from %s to %s", s.Count, When(s.First), When(s.Last))
	if !s.Livemode {
		b.WriteString(" (test mode)")
	}
	b.WriteString("\n")
	if late.Late {
		fmt.Fprintf(&b, "Late: %s after the oldest event (SLO %s)\n", late.Age.Round(time.Second), late.SLO)
	}
	b.WriteString("\nEvents:\n")
	for _, id := range s.EventIDs {
		b.WriteString("  " + id + "\n")
	}
	return TextMessage{Subject: subject, Body: b.String()}
}

// SMS words one alert, or a burst's digest, as a short text message: at
// most MaxSMS characters, naming the event (or how many there were).
func SMS(evs []*billingv1.BillingEvent, late Lateness) string {
	var text string
	if len(evs) == 1 {
		ev := evs[0]
		text = rules.Title(ev.GetType())
		if money := Money(Amount(ev), ev.GetCurrency()); money != "" {
			text += ": " + money
		}
		if who := Customer(ev); who != "" {
			text += " (" + who + ")"
		}
		if r := Reason(ev); r != "" {
			text += ", " + r
		}
		text += ". " + ev.GetEventId()
	} else {
		s := Summarize(evs)
		text = s.Headline()
		if len(s.Groups) > 0 {
			g := s.Groups[0]
			text += fmt.Sprintf("; %d× %s", g.Count, g.Title)
			if len(s.Groups) > 1 {
				text += fmt.Sprintf(" and %d more kinds", len(s.Groups)-1)
			}
		}
		text += ". Details in Slack and e-mail."
	}
	if late.Late {
		text = "LATE " + text
	}
	text = testMark(evs...) + text
	if r := []rune(text); len(r) > MaxSMS {
		text = string(r[:MaxSMS-1]) + "…"
	}
	return text
}

// CustomerEmail words the e-mail a customer gets about their failed
// payments (one, or several folded together): what failed and what to do,
// without any of the ops details.
func CustomerEmail(evs []*billingv1.BillingEvent) TextMessage {
	ev := evs[0]
	money := Money(Amount(ev), ev.GetCurrency())
	subject := "Your payment did not go through"
	if len(evs) == 1 && money != "" {
		subject = "Your payment of " + money + " did not go through"
	}
	subject = testMark(evs...) + subject
	var b strings.Builder
	if Smoke(evs...) {
		b.WriteString("This is a test message. No payment was attempted and nothing needs doing.\n\n")
	}
	b.WriteString("Hello,\n\n")
	for _, e := range evs {
		l := "We could not take your payment"
		if m := Money(Amount(e), e.GetCurrency()); m != "" {
			l += " of " + m
		}
		if p := Plan(e); p != "" {
			l += " for " + p
		}
		if r := Reason(e); r != "" {
			l += " (" + r + ")"
		}
		b.WriteString(l + ".\n")
	}
	b.WriteString("\nPlease check your card or update your payment method so that your access continues. " +
		"If you have already done so, you can ignore this message.\n")
	return TextMessage{Subject: subject, Body: b.String()}
}
