package console_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/launchready/launchready/test/testkit"
)

// A support agent signs in, searches for a customer whose whole
// subscription lifecycle (real fixture payloads) went through billing-state,
// crm-sync and support-notify, and reads its page: the canonical status
// from gRPC, what the CRM mirror holds, and the timeline with each
// consumer's own outcome for every event.
func TestBrowserCustomerPageOfAFixtureJourney(t *testing.T) {
	s := startStack(t)
	s.addStaff(t, "agent@example.com", "support", "a long test password")
	cus, evs := s.publishJourney(t, "subscription lifecycle")
	ctx := browser(t)

	run(t, ctx, "sign in and search",
		signIn(s.url+"/customers", "agent@example.com", "a long test password"),
		chromedp.WaitVisible("#search-form"),
		chromedp.SendKeys("#q", cus),
		chromedp.Click("#search"),
		chromedp.WaitVisible("#timeline"),
	)
	screenshot(t, ctx, "search-to-customer")

	// The consumers work on their own time: reload until each has recorded
	// every event of the journey.
	var billingOutcomes, crmOutcomes int
	var status string
	done := testkit.Poll(60*time.Second, 500*time.Millisecond, func() bool {
		run(t, ctx, "reload the customer page",
			chromedp.Reload(),
			chromedp.WaitVisible("#timeline"),
			chromedp.Evaluate(`[...document.querySelectorAll('#timeline td.billing-state')].filter(td => td.textContent !== '—').length`, &billingOutcomes),
			chromedp.Evaluate(`[...document.querySelectorAll('#timeline td.crm-sync')].filter(td => td.textContent !== '—').length`, &crmOutcomes),
		)
		return billingOutcomes == len(evs) && crmOutcomes == len(evs)
	})
	if !done {
		screenshot(t, ctx, "failed-timeline")
		t.Fatalf("after 60s the timeline shows %d billing-state and %d crm-sync outcomes of %d events", billingOutcomes, crmOutcomes, len(evs))
	}
	run(t, ctx, "read the status", chromedp.Text("#status", &status))
	if status != "canceled" {
		t.Errorf("canonical status %q, want canceled (the journey ends deleted)", status)
	}
	var rows []string
	run(t, ctx, "read the timeline", chromedp.Evaluate(`[...document.querySelectorAll('#timeline tbody tr')].map(tr => tr.innerText)`, &rows))
	for _, ev := range evs {
		found := false
		for _, r := range rows {
			if strings.Contains(r, ev.GetEventId()) && strings.Contains(r, ev.GetType()) {
				found = true
			}
		}
		if !found {
			t.Errorf("the timeline has no row for %s (%s)", ev.GetEventId(), ev.GetType())
		}
	}
	var crmSynced string
	run(t, ctx, "read the CRM card", chromedp.Text("#crm", &crmSynced))
	if !strings.Contains(crmSynced, "CRM") {
		t.Errorf("CRM card: %q", crmSynced)
	}
	t.Logf("%d events, each with billing-state's and crm-sync's outcome (%s)", len(evs), strconv.Itoa(len(rows))+" rows")
	screenshot(t, ctx, "customer")

	var replicas int
	run(t, ctx, "open the overview",
		chromedp.Click(`nav a[href="/"]`),
		chromedp.WaitVisible("#replicas"),
		chromedp.Evaluate(`document.querySelectorAll('#replicas td.ok').length`, &replicas),
	)
	if replicas != 3 {
		t.Errorf("the overview shows %d ready services, want billing-state, crm-sync and support-notify", replicas)
	}
	screenshot(t, ctx, "overview")
}
