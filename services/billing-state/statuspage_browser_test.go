package billingstate

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/launchready/launchready/pkg/config"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/portal"
	"github.com/launchready/launchready/services/billing-state/internal/statuspage"
	"github.com/launchready/launchready/test/testkit/browser"
	"github.com/launchready/launchready/test/testkit/journey"
	"github.com/launchready/launchready/test/testkit/stripemock"
)

// TestStatusPageFollowsAFailedPayment: the whole service, with the status
// page on its own listener. A customer's page, open in chromium, shows the
// active plan; a failed renewal published as ingress publishes it turns the
// open page from ok to problem within 2 s, through the consumer, the
// outbox relay and the page's event stream, without a reload. Its button
// then opens a billing portal session (stripe-mock) that leads back to it.
func TestStatusPageFollowsAFailedPayment(t *testing.T) {
	secrets, err := statuspage.ParseSecrets(randomToken(t) + randomToken(t))
	if err != nil {
		t.Fatal(err)
	}
	returnURLs, err := portal.ParseReturnURLs("http://127.0.0.1/s/")
	if err != nil {
		t.Fatal(err)
	}
	stripe := stripemock.Start(t)
	h := start(t, func(c *Config) {
		c.StatusPageAddr, c.StatusPageURL = "127.0.0.1:0", "http://127.0.0.1"
		c.StatusLinkSecrets, c.StatusLinkMaxTTL = secrets, time.Hour
		c.StripeAPIKey, c.StripeAPIBase, c.StripeAPIRate = config.Secret("sk_test_"+randomToken(t)), stripe, 50
		c.ReturnURLs = returnURLs
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
	var action, href string
	var same bool
	err = chromedp.Run(wait,
		chromedp.WaitVisible(`main.card[data-tone="problem"]`),
		chromedp.Text("#headline", &headline),
		chromedp.AttributeValue("#action", "data-action", &action, nil),
		chromedp.AttributeValue("#action", "href", &href, nil),
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

	// The button: a portal session at Stripe, leading back to the page.
	if href != "/s/"+token+"/portal" {
		t.Fatalf("the button leads to %q", href)
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := noRedirect.Get("http://" + h.addrs["status page"] + href)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if loc := res.Header.Get("Location"); res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(loc, "https://") {
		t.Fatalf("the portal: %d to %q", res.StatusCode, loc)
	}
}
