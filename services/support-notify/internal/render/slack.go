package render

import (
	"fmt"
	"strings"
	"time"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/services/support-notify/internal/rules"
)

// SlackMessage is an incoming-webhook payload: fallback text plus Block Kit
// blocks.
type SlackMessage struct {
	Text   string       `json:"text"`
	Blocks []SlackBlock `json:"blocks"`
}

// SlackBlock is the subset of Block Kit the alerts use.
type SlackBlock struct {
	Type     string         `json:"type"`
	Text     *SlackText     `json:"text,omitempty"`
	Fields   []SlackText    `json:"fields,omitempty"`
	Elements []SlackElement `json:"elements,omitempty"`
}

// SlackText is a plain_text or mrkdwn text object.
type SlackText struct {
	Type  string `json:"type"`
	Text  string `json:"text"`
	Emoji bool   `json:"emoji,omitempty"`
}

// SlackElement is a context text or an actions button.
type SlackElement struct {
	Type     string `json:"type"`
	Text     any    `json:"text,omitempty"`
	URL      string `json:"url,omitempty"`
	ActionID string `json:"action_id,omitempty"`
	Style    string `json:"style,omitempty"`
}

// Lateness says whether an alert leaves after its SLO, for the message.
type Lateness struct {
	Late bool
	Age  time.Duration
	SLO  time.Duration
}

// Alert builds the Block Kit message for ev.
func Alert(ev *billingv1.BillingEvent, late Lateness) SlackMessage {
	title := rules.Title(ev.GetType())
	if late.Late {
		title = "LATE: " + title
	}
	title = testMark(ev) + title
	money := Money(Amount(ev), ev.GetCurrency())
	text := title
	if money != "" {
		text += ": " + money
	}
	if who := Customer(ev); who != "" {
		text += " (" + who + ")"
	}
	var fields []SlackText
	field := func(label, v string) {
		if v != "" && len(fields) < 10 { // Block Kit allows ten fields per section
			fields = append(fields, SlackText{Type: "mrkdwn", Text: "*" + label + "*\n" + escape(v)})
		}
	}
	for _, f := range AlertFields(ev) {
		field(f.Label, f.Value)
	}
	blocks := []SlackBlock{
		{Type: "header", Text: &SlackText{Type: "plain_text", Text: truncate(text, 150)}},
	}
	if len(fields) > 0 {
		blocks = append(blocks, SlackBlock{Type: "section", Fields: fields})
	}
	if links := Links(ev); len(links) > 0 {
		var els []SlackElement
		for i, l := range links {
			els = append(els, SlackElement{
				Type:     "button",
				Text:     SlackText{Type: "plain_text", Text: "Open " + strings.ToLower(l.Label)},
				URL:      l.URL,
				ActionID: fmt.Sprintf("open_%d", i),
			})
		}
		blocks = append(blocks, SlackBlock{Type: "actions", Elements: els})
	}
	ctx := fmt.Sprintf("%s · `%s` · %s", escape(ev.GetType()), escape(ev.GetEventId()), When(ev.GetCreated().AsTime()))
	if late.Late {
		ctx += fmt.Sprintf(" · *late*: %s after the event (SLO %s)", late.Age.Round(time.Second), late.SLO)
	}
	blocks = append(blocks, SlackBlock{Type: "context", Elements: []SlackElement{{Type: "mrkdwn", Text: ctx}}})
	return SlackMessage{Text: escape(text), Blocks: blocks}
}

// Field is one labelled fact of an alert.
type Field struct{ Label, Value string }

// AlertFields are the facts every channel's alert states, in order, each
// only when the event has it: customer, amount, reason, plan, attempt,
// next retry, and the mode when it is test.
func AlertFields(ev *billingv1.BillingEvent) []Field {
	var out []Field
	add := func(label, v string) {
		if v != "" {
			out = append(out, Field{label, v})
		}
	}
	add("Customer", Customer(ev))
	add("Amount", Money(Amount(ev), ev.GetCurrency()))
	add("Reason", Reason(ev))
	add("Plan", Plan(ev))
	if n := ev.GetAttemptCount(); n > 0 {
		add("Attempt", fmt.Sprint(n))
	}
	if ts := ev.GetNextPaymentAttempt(); ts.IsValid() && ts.GetSeconds() > 0 {
		add("Next retry", When(ts.AsTime()))
	}
	if !ev.GetLivemode() {
		add("Mode", "test")
	}
	return out
}

// escape applies Slack's three mrkdwn escapes.
func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
