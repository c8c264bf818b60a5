package billingstate

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/statuspage"
	"github.com/launchready/launchready/test/testkit/browser"
	"github.com/launchready/launchready/test/testkit/journey"
)

// TestStatusPageFollowsAFailedPayment: the whole service, with the status
// page on its own listener. A customer's page, open in chromium, shows the
// active plan; a failed renewal published as ingress publishes it turns the
// open page from ok to problem within 2 s, through the consumer, the
// outbox relay and the page's event stream, without a reload.
func TestStatusPageFollowsAFailedPayment(t *testing.T) {
	secrets, err := statuspage.ParseSecrets(randomToken(t) + randomToken(t))
	if err != nil {
		t.Fatal(err)
	}
	h := start(t, func(c *Config) {
		c.StatusPageAddr, c.StatusPageURL = "127.0.0.1:0", "http://127.0.0.1"
		c.StatusLinkSecrets, c.StatusLinkMaxTTL = secrets, time.Hour
	})
	cus := "cus_livepage"
	b := journey.New(t, cus, time.Now().Add(-31*24*time.Hour))
	steps := journey.SubscriptionLifecycle(b)
	h.publish(journey.Events(steps[:3])...)
	h.eventually(15*time.Second, "the plan active", func() bool {
		st := h.statusOf(cus)
		return st != nil && st.GetStatus() == billingv1.BillingStatus_BILLING_STATUS_ACTIVE
	})
	link, err := h.client.CreateStatusLink(h.as(h.readToken), &billingv1.CreateStatusLinkRequest{CustomerId: cus})
	if err != nil {
		t.Fatal(err)
	}
	_, token, ok := strings.Cut(link.GetUrl(), "/s/")
	if !ok {
		t.Fatalf("link %q", link.GetUrl())
	}
	dir := browser.Artifacts(t, "STATUS_PAGE_ARTIFACTS", "statuspage")
	ctx := browser.Start(t, time.Minute)
	var tone, headline string
	if err := chromedp.Run(ctx,
		chromedp.Navigate("http://"+h.addrs["status page"]+"/s/"+token),
		// data-live: the event stream is open and has sent its first status.
		chromedp.WaitVisible(`main.card[data-live="true"]`),
		chromedp.AttributeValue("main.card", "data-tone", &tone, nil),
		chromedp.Text("#headline", &headline),
		// A reload would drop this mark.
		chromedp.Evaluate(`window.sameDocument = true`, nil),
	); err != nil {
		browser.Screenshot(t, ctx, dir, t.Name()+"-failed")
		t.Fatal(err)
	}
	if tone != "ok" || headline != "Your plan is active" {
		t.Fatalf("before: tone %q, headline %q", tone, headline)
	}
	browser.Screenshot(t, ctx, dir, t.Name()+"-before")

	sent := time.Now()
	h.publish(steps[3].Events...) // the renewal's invoice.payment_failed and the subscription past_due
	wait, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	var action string
	var same bool
	err = chromedp.Run(wait,
		chromedp.WaitVisible(`main.card[data-tone="problem"]`),
		chromedp.Text("#headline", &headline),
		chromedp.AttributeValue("#action", "data-action", &action, nil),
		chromedp.Evaluate(`window.sameDocument === true`, &same),
	)
	took := time.Since(sent)
	if err != nil {
		browser.Screenshot(t, ctx, dir, t.Name()+"-failed")
		t.Fatalf("the page did not turn to problem within 2 s of the failed payment (%s): %v", took, err)
	}
	browser.Screenshot(t, ctx, dir, t.Name()+"-after")
	if !same || headline != "Your payment didn't go through" || action != "update_payment_method" {
		t.Fatalf("after %s: same document %v, headline %q, action %q", took, same, headline, action)
	}
	t.Logf("ok to problem in %s after the failed payment was published", took.Round(time.Millisecond))
}
