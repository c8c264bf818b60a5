package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/journey"
	"github.com/launchready/launchready/test/testkit/slackfake"
)

// The alert burst: a card network outage fails many payments in a minute,
// and Slack takes about one message a second. Every alert must still be
// accepted within ALERT_SLO (2 minutes) of its Stripe event, and no 429
// may go unanswered.

// alertResult is what the alert burst measured.
type alertResult struct {
	n          int
	over, pace time.Duration
	latency    time.Duration // vendors' answer time
	accepted   int
	latencies  []time.Duration
	late       int
	messages   int
	digests    int
	largest    int
	slack      slackfake.Stats
	tickets    int
	allIn      time.Duration // from the first POST until every alert was accepted
}

func alertBurst(t *benchT, o options) (*alertResult, error) {
	st := t.sub()
	defer st.runCleanups()
	r := &alertResult{n: o.alertCount, over: o.alertOver, pace: o.alertPace, latency: o.vendorLatency}
	dir, err := testkit.FindFixturesDir()
	if err != nil {
		return nil, err
	}
	gen, err := journey.NewGen(dir, "al"+harness.Random(4))
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "loadbench: alert burst: starting ingress and support-notify\n")
	s := harness.StartStack(st, harness.StackOptions{Services: []string{"ingress", "support-notify"}, LogLevel: o.logLevel})
	s.Slack.SetPace(o.alertPace)
	s.Slack.SetLatency(o.vendorLatency)
	s.Zendesk.SetLatency(o.vendorLatency)

	fmt.Fprintf(os.Stderr, "loadbench: alert burst: %d invoice.payment_failed in %s, Slack taking one message per %s\n", r.n, r.over, r.pace)
	ctx, cancel := context.WithTimeout(context.Background(), r.over+2*time.Minute)
	defer cancel()
	tick := time.NewTicker(r.over / time.Duration(r.n))
	defer tick.Stop()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var sendErr error
	start := time.Now()
	for i := range r.n {
		b := gen.Customer("x"+strconv.Itoa(i), time.Now())
		ev := b.Invoice("invoice.payment_failed", 0, b.ID("in"), b.ID("sub"), b.ID("ch"), b.ID("pi"), "open", journey.InvoiceOpts{Attempt: 1 + i%4})
		if err := b.Err(); err != nil {
			return nil, err
		}
		wg.Go(func() {
			_, _, err := s.Driver.Deliver(ctx, ev.Raw)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && sendErr == nil {
				sendErr = err
			} else if err == nil {
				r.accepted++
			}
		})
		<-tick.C
	}
	wg.Wait()
	if sendErr != nil {
		return nil, fmt.Errorf("alert burst: %w", sendErr)
	}
	var recorded int
	testkit.Poll(5*time.Minute, 100*time.Millisecond, func() bool {
		err := s.DB.QueryRow(context.Background(), `SELECT count(*) FROM support.alerts_sent`).Scan(&recorded)
		return err == nil && recorded >= r.n
	})
	r.allIn = time.Since(start)
	if recorded < r.n {
		return nil, fmt.Errorf("alert burst: %d of %d alerts recorded after 5 minutes", recorded, r.n)
	}
	rows, err := s.DB.Query(context.Background(), `SELECT latency_seconds, late FROM support.alerts_sent`)
	if err != nil {
		return nil, err
	}
	for rows.Next() {
		var secs float64
		var late bool
		if err := rows.Scan(&secs, &late); err != nil {
			return nil, err
		}
		r.latencies = append(r.latencies, time.Duration(secs*float64(time.Second)))
		if late {
			r.late++
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.Sort(r.latencies)
	msgs := s.Slack.Messages()
	r.messages = len(msgs)
	for _, m := range msgs {
		if len(m.EventIDs) > 1 {
			r.digests++
		}
		r.largest = max(r.largest, len(m.EventIDs))
	}
	r.slack = s.Slack.Pace.Stats()
	r.tickets = len(s.Zendesk.Tickets())
	fmt.Fprintf(os.Stderr, "loadbench: alert burst: %d alerts in %d messages (%d digests), slowest %s, %d late, %d 429s, %d unanswered\n",
		len(r.latencies), r.messages, r.digests, r.latencies[len(r.latencies)-1].Round(time.Millisecond), r.late, r.slack.Refused, r.slack.Unanswered)
	return r, nil
}

// Markers around the alert burst's section of RESULTS.md, so that
// -alerts-only can replace it alone.
const (
	alertBegin = "<!-- alert-burst -->"
	alertEnd   = "<!-- /alert-burst -->"
)

func alertMarkdown(r *alertResult) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	q := harness.Percentiles(r.latencies, 0.5, 0.95, 1)
	slowest := q[2]
	met := func(ok bool) string {
		if ok {
			return "**met**"
		}
		return "**missed**"
	}
	w(alertBegin)
	w("## Alert burst")
	w("")
	w("Written by `go run ./test/load/cmd/loadbench -alerts-only` (also the last phase of `make bench`) on %s.", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	w("")
	w("- %d signed `invoice.payment_failed` webhooks (one new customer each) posted to ingress over %s (one every %s), ingress and support-notify as separate processes at their defaults (`ALERT_DIGEST_WINDOW=1s`, `ZENDESK_RATE_LIMIT=200` per `1m`).",
		r.n, r.over, (r.over / time.Duration(r.n)).Round(time.Millisecond))
	w("- Slack fake: takes one message per %s and answers 429 with `Retry-After` to any message sooner; it counts every request that arrives before a `Retry-After` it gave has run out. Slack and Zendesk answer in %s.", r.pace, r.latency)
	w("- Latency is support-notify's own record (`support.alerts_sent`, the same figure as `lr_alert_latency_seconds`): from the Stripe event's `created` second to Slack's 2xx of the message that carried the alert.")
	w("")
	w("| target | measured | |")
	w("|---|---|---|")
	w("| every alert within 2 minutes of its event | %d of %d alerted; slowest %s, p95 %s, p50 %s; %d marked late | %s |",
		len(r.latencies), r.n, sec(slowest), sec(q[1]), sec(q[0]), r.late, met(len(r.latencies) == r.n && slowest <= 2*time.Minute && r.late == 0))
	w("| zero 429s left unanswered | %d answered 429, %d requests before a `Retry-After` ran out | %s |", r.slack.Refused, r.slack.Unanswered, met(r.slack.Unanswered == 0))
	w("")
	w("Slack accepted %d messages for the %d alerts: %d digests and %d alone; the largest digest carried %d events. Every alert was accepted %s after the first POST. Zendesk had opened %d of the %d tickets by then: tickets keep to their own budget and never hold an alert back.",
		r.messages, r.n, r.digests, r.messages-r.digests, r.largest, sec(r.allIn), r.tickets, r.n)
	w(alertEnd)
	return b.String()
}

func sec(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// spliceAlerts replaces the alert burst's section of the report at path,
// or appends it.
func spliceAlerts(path, section string) error {
	old, err := os.ReadFile(path) // #nosec G304 -- the report file the operator names with -out
	if err != nil && !os.IsNotExist(err) {
		return err
	}
	doc := string(old)
	if i, j := strings.Index(doc, alertBegin), strings.Index(doc, alertEnd); i >= 0 && j > i {
		doc = doc[:i] + strings.TrimSuffix(section, "\n") + doc[j+len(alertEnd):]
	} else {
		doc = strings.TrimRight(doc, "\n") + "\n\n" + section
	}
	return os.WriteFile(path, []byte(doc), 0o644) // #nosec G306 G703 -- the report is a document for people to read and commit, at the path the operator names
}

// runAlertsOnly runs the alert burst alone and puts its section into the
// report, leaving the rest of it as the last full run wrote it.
func runAlertsOnly(_ context.Context, t *benchT, o options) error {
	if o.alertCount < 1 || o.alertOver <= 0 {
		return fmt.Errorf("-alerts-only needs -alerts and -alerts-over above zero")
	}
	r, err := alertBurst(t, o)
	if err != nil {
		return err
	}
	md := alertMarkdown(r)
	fmt.Println(md)
	if o.out == "-" {
		return nil
	}
	if err := spliceAlerts(o.out, md); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "loadbench: wrote the alert burst into %s\n", o.out)
	return nil
}
