package catchup

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/test/harness"
)

// counters are what a consumer's work leaves: rows, vendor calls and the
// stream's messages.
type counters map[string]int

func count(t *testing.T, s *harness.Stack) counters {
	t.Helper()
	c := counters{}
	for name, q := range map[string]string{
		"billing.processed_events": `SELECT count(*) FROM billing.processed_events`,
		"billing.audit_log":        `SELECT count(*) FROM billing.audit_log`,
		"crm.processed_events":     `SELECT count(*) FROM crm.processed_events`,
		"support.processed_events": `SELECT count(*) FROM support.processed_events`,
		"support.alerts_sent":      `SELECT count(*) FROM support.alerts_sent`,
		"support.tickets":          `SELECT count(*) FROM support.tickets`,
	} {
		c[name] = s.Count(q)
	}
	n, err := s.StreamMsgs(bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	c["BILLING_EVENTS messages"] = int(n) // #nosec G115 -- a few hundred
	c["hubspot calls"] = s.HubSpot.CallCount()
	c["zendesk calls"] = s.Zendesk.CallCount()
	c["zendesk tickets"] = len(s.Zendesk.Tickets())
	c["slack calls"] = s.Slack.CallCount()
	return c
}

// unchanged checks that every count in before is the same now.
func unchanged(t *testing.T, s *harness.Stack, before counters, since string) {
	t.Helper()
	now := count(t, s)
	for k, v := range before {
		if now[k] != v {
			t.Errorf("after %s %s is %d, was %d", since, k, now[k], v)
		}
	}
}

// fromAPIOnly checks that the stream holds want events and that ingress
// was asked nothing: every event came from the API.
func fromAPIOnly(t *testing.T, s *harness.Stack, want int) {
	t.Helper()
	if n, err := s.StreamMsgs(bus.StreamEvents); err != nil || n != uint64(want) { // #nosec G115 -- a few hundred
		t.Fatalf("BILLING_EVENTS holds %d messages (%v), want each of the %d events once", n, err, want)
	}
	if n, err := s.MetricSum("ingress", "lr_webhook_requests_total"); err != nil || n != 0 {
		t.Fatalf("ingress counted %v webhook requests (%v), want none", n, err)
	}
}

// TestOutageCaughtUpByBackfillEndsAsWebhooksWould: events across 50
// customers happen in Stripe while no webhook reaches the system. One
// stack receives them as signed webhooks, in Stripe's order; another,
// with ingress and the consumers running, receives none, and then
// `launchready backfill --since 1h` (the built command) reads them from
// the fake Stripe API. Every customer's billing status, CRM contact and
// deals, tickets and alerts must end the same in both. A second backfill
// changes nothing in any consumer's state, nor calls any vendor.
func TestOutageCaughtUpByBackfillEndsAsWebhooksWould(t *testing.T) {
	const customers, total = 50, 420
	start := time.Now()
	harness.Binaries(t)
	bin := harness.Launchready(t)
	js, evs := outage(t, customers, total, time.Now().Add(-40*time.Minute))
	t.Logf("%d events across %d customers, created %s to %s ago", len(evs), len(js),
		time.Since(evs[0].Created).Round(time.Second), time.Since(evs[len(evs)-1].Created).Round(time.Second))
	opts := harness.StackOptions{LogLevel: "warn"}

	var webhooks, caughtUp map[string]*customer
	t.Run("runs", func(t *testing.T) {
		t.Run("webhooks", func(t *testing.T) {
			t.Parallel()
			s := harness.StartStack(t, opts)
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			t0 := time.Now()
			for _, e := range evs {
				if _, _, err := s.Driver.Deliver(ctx, e.Raw); err != nil {
					t.Fatalf("deliver %s (%s): %v", e.ID, e.Type, err)
				}
			}
			settle(t, s, js)
			// The same count is what shows, in the other stack, that no
			// webhook came.
			if n, err := s.MetricSum("ingress", "lr_webhook_requests_total"); err != nil || n != float64(len(evs)) {
				t.Fatalf("ingress counted %v webhook requests (%v), want %d", n, err, len(evs))
			}
			t.Logf("webhooks: %d delivered and applied in %s", len(evs), time.Since(t0).Round(time.Millisecond))
			webhooks = snapshot(t, s, js)
		})
		t.Run("backfill", func(t *testing.T) {
			t.Parallel()
			s := harness.StartStack(t, opts)
			fake, env := newStripe(t, s, evs)
			t0 := time.Now()
			code, out, errs := backfill(t, bin, env, "--since", "1h")
			if code != 0 || !strings.Contains(out, fmt.Sprintf("read %d events", total)) ||
				!strings.Contains(out, fmt.Sprintf("%d published, 0 already known, 0 skipped", total)) {
				t.Fatalf("backfill: exit %d\n%s%s", code, out, errs)
			}
			settle(t, s, js)
			t.Logf("backfill: %d events read in %d requests, published and applied in %s\n%s", total, len(fake.Requests()), time.Since(t0).Round(time.Millisecond), out)
			fromAPIOnly(t, s, total)
			caughtUp = snapshot(t, s, js)

			// A second run over the same hour finds every event known.
			before := count(t, s)
			code, out, errs = backfill(t, bin, env, "--since", "1h")
			if code != 0 || !strings.Contains(out, fmt.Sprintf("0 published, %d already known", total)) {
				t.Fatalf("second backfill: exit %d\n%s%s", code, out, errs)
			}
			s.WaitDrained(time.Minute)
			unchanged(t, s, before, "a second backfill")
			t.Logf("after the second run, unchanged: %v", before)
		})
	})
	if webhooks == nil || caughtUp == nil {
		t.FailNow()
	}
	compare(t, js, webhooks, caughtUp)
	t.Logf("%d customers compared in all (status, CRM contact and deals, tickets, alerts); whole test %s", len(js), time.Since(start).Round(time.Millisecond))
}
