package render

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
	"time"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/services/support-notify/internal/rules"
)

// Block Kit bounds a digest stays inside.
const (
	maxSectionText = 3000
	maxContextText = 3000
	// TopCustomers is how many customers a digest names.
	TopCustomers = 5
	// MaxDigest is the most events one digest carries: their ids fill at
	// most a dozen context elements, well inside Slack's 50 blocks.
	MaxDigest = 500
)

// DigestSummary is what a digest says about a burst, for any channel.
type DigestSummary struct {
	Count int
	// Groups counts events by type and reason, largest first.
	Groups []DigestGroup
	// Totals is the summed amount per currency, "49.00 USD", largest
	// count first.
	Totals []string
	// Customers are the customers with the most at stake, at most
	// TopCustomers.
	Customers []DigestCustomer
	// First and Last are the oldest and newest event times.
	First, Last time.Time
	// EventIDs are every event the digest covers, in order.
	EventIDs []string
	Livemode bool
}

// DigestGroup is one line of the count by type and reason.
type DigestGroup struct {
	Title  string
	Reason string
	Count  int
}

// DigestCustomer is one of the top customers.
type DigestCustomer struct {
	Name   string // name and email, email, or id
	ID     string
	URL    string // the customer's dashboard page, "" when the id is unknown
	Amount string // per currency, "98.00 USD"
	Count  int
}

// Summarize folds evs into a digest summary.
func Summarize(evs []*billingv1.BillingEvent) DigestSummary {
	s := DigestSummary{Count: len(evs)}
	type groupKey struct{ title, reason string }
	groups := map[groupKey]int{}
	var groupOrder []groupKey
	type money struct {
		currency string
		amount   int64
		count    int
	}
	totals := map[string]*money{}
	var currencies []string
	type cust struct {
		DigestCustomer
		amounts map[string]int64
		order   []string
		total   int64
	}
	custs := map[string]*cust{}
	var custOrder []string
	for _, ev := range evs {
		s.EventIDs = append(s.EventIDs, ev.GetEventId())
		s.Livemode = s.Livemode || ev.GetLivemode()
		at := ev.GetCreated().AsTime()
		if s.First.IsZero() || at.Before(s.First) {
			s.First = at
		}
		if at.After(s.Last) {
			s.Last = at
		}
		k := groupKey{rules.Title(ev.GetType()), Reason(ev)}
		if groups[k] == 0 {
			groupOrder = append(groupOrder, k)
		}
		groups[k]++
		amount, cur := Amount(ev), strings.ToLower(ev.GetCurrency())
		if cur != "" {
			if totals[cur] == nil {
				totals[cur] = &money{currency: cur}
				currencies = append(currencies, cur)
			}
			totals[cur].amount += amount
			totals[cur].count++
		}
		who := ev.GetCustomerId()
		if who == "" {
			who = "email:" + ev.GetEmail()
		}
		c := custs[who]
		if c == nil {
			c = &cust{DigestCustomer: DigestCustomer{Name: Customer(ev), ID: ev.GetCustomerId()}, amounts: map[string]int64{}}
			if id := ev.GetCustomerId(); id != "" {
				c.URL = DashboardURL(ev.GetLivemode(), "customers", id)
			}
			custs[who] = c
			custOrder = append(custOrder, who)
		}
		if c.Name == c.ID && Customer(ev) != ev.GetCustomerId() {
			c.Name = Customer(ev) // a later event may know the email
		}
		c.Count++
		if cur != "" {
			if _, ok := c.amounts[cur]; !ok {
				c.order = append(c.order, cur)
			}
			c.amounts[cur] += amount
			c.total += amount
		}
	}
	for _, k := range groupOrder {
		s.Groups = append(s.Groups, DigestGroup{Title: k.title, Reason: k.reason, Count: groups[k]})
	}
	slices.SortStableFunc(s.Groups, func(a, b DigestGroup) int { return cmp.Compare(b.Count, a.Count) })
	slices.SortStableFunc(currencies, func(a, b string) int { return cmp.Compare(totals[b].count, totals[a].count) })
	for _, cur := range currencies {
		s.Totals = append(s.Totals, Money(totals[cur].amount, cur))
	}
	// Customers with the most at stake first: amounts in different
	// currencies are not comparable, so the count of alerts breaks ties
	// and the sum of minor units is only a rough guide.
	slices.SortStableFunc(custOrder, func(a, b string) int {
		if c := cmp.Compare(custs[b].Count, custs[a].Count); c != 0 {
			return c
		}
		return cmp.Compare(custs[b].total, custs[a].total)
	})
	for _, k := range custOrder[:min(len(custOrder), TopCustomers)] {
		c := custs[k]
		var parts []string
		for _, cur := range c.order {
			parts = append(parts, Money(c.amounts[cur], cur))
		}
		c.Amount = strings.Join(parts, " + ")
		s.Customers = append(s.Customers, c.DigestCustomer)
	}
	return s
}

// Headline is a digest's one-line summary: "Digest: 12 billing alerts,
// 588.00 USD".
func (s DigestSummary) Headline() string {
	h := fmt.Sprintf("Digest: %d billing alerts", s.Count)
	if len(s.Totals) > 0 {
		h += ", " + strings.Join(s.Totals, " + ")
	}
	return h
}

// Digest builds the Block Kit message for a burst of alerts that arrived
// faster than the channel takes them: the count by type and reason, the
// total amount, the top customers with links, and every event id (so each
// alert can still be found by its event).
func Digest(evs []*billingv1.BillingEvent, late Lateness) SlackMessage {
	s := Summarize(evs)
	text := testMark(evs...) + s.Headline()
	if late.Late {
		text = "LATE: " + text
	}
	blocks := []SlackBlock{{Type: "header", Text: &SlackText{Type: "plain_text", Text: truncate(text, 150)}}}
	var lines []string
	for _, g := range s.Groups {
		l := "• " + escape(g.Title)
		if g.Reason != "" {
			l += ", " + escape(g.Reason)
		}
		lines = append(lines, fmt.Sprintf("%s: *%d*", l, g.Count))
	}
	blocks = append(blocks, SlackBlock{Type: "section", Text: &SlackText{Type: "mrkdwn", Text: "*By type and reason*\n" + joinLines(lines, maxSectionText-30)}})
	if len(s.Totals) > 0 {
		blocks = append(blocks, SlackBlock{Type: "section", Fields: []SlackText{{Type: "mrkdwn", Text: "*Total*\n" + escape(strings.Join(s.Totals, " + "))}}})
	}
	lines = lines[:0]
	for _, c := range s.Customers {
		name := escape(c.Name)
		if c.URL != "" {
			name = "<" + c.URL + "|" + name + ">"
		}
		l := "• " + name
		if c.Amount != "" {
			l += ": " + escape(c.Amount)
		}
		if c.Count > 1 {
			l += fmt.Sprintf(" (%d alerts)", c.Count)
		}
		lines = append(lines, l)
	}
	if len(lines) > 0 {
		blocks = append(blocks, SlackBlock{Type: "section", Text: &SlackText{Type: "mrkdwn", Text: "*Top customers*\n" + joinLines(lines, maxSectionText-30)}})
	}
	ctx := fmt.Sprintf("%d events from %s to %s", s.Count, When(s.First), When(s.Last))
	if !s.Livemode {
		ctx += " · test mode"
	}
	if late.Late {
		ctx += fmt.Sprintf(" · *late*: %s after the oldest event (SLO %s)", late.Age.Round(time.Second), late.SLO)
	}
	blocks = append(blocks, SlackBlock{Type: "context", Elements: []SlackElement{{Type: "mrkdwn", Text: ctx}}})
	// Every event id, in context elements of at most 3,000 characters and
	// ten elements per block.
	var els []SlackElement
	var cur strings.Builder
	flush := func() {
		if cur.Len() > 0 {
			els = append(els, SlackElement{Type: "mrkdwn", Text: cur.String()})
			cur.Reset()
		}
	}
	for _, id := range s.EventIDs {
		part := "`" + escape(id) + "`"
		if cur.Len()+len(part)+1 > maxContextText {
			flush()
		}
		if cur.Len() > 0 {
			cur.WriteByte(' ')
		}
		cur.WriteString(part)
	}
	flush()
	for len(els) > 0 {
		n := min(len(els), 10)
		blocks = append(blocks, SlackBlock{Type: "context", Elements: els[:n]})
		els = els[n:]
	}
	return SlackMessage{Text: escape(text), Blocks: blocks}
}

// joinLines joins lines, leaving out the tail that would pass limit and
// saying how many were left out.
func joinLines(lines []string, limit int) string {
	var b strings.Builder
	for i, l := range lines {
		if b.Len()+len(l)+1 > limit {
			fmt.Fprintf(&b, "… and %d more", len(lines)-i)
			break
		}
		b.WriteString(l + "\n")
	}
	return strings.TrimSuffix(b.String(), "\n")
}
