package console_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/launchready/launchready/pkg/natsauth"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/console/internal/consoletest"
)

func TestBrowserSignInAndOut(t *testing.T) {
	c := startConsole(t, nil)
	c.addStaff(t, "ops@example.com", "support", "a long test password")
	ctx := browser(t)

	var msg string
	run(t, ctx, "wrong password",
		signIn(c.url+"/", "ops@example.com", "not the password"),
		chromedp.WaitVisible("#message"),
		chromedp.Text("#message", &msg),
	)
	if !strings.Contains(msg, "do not match") {
		t.Fatalf("message after a wrong password: %q", msg)
	}
	screenshot(t, ctx, "login-failed")

	var who string
	run(t, ctx, "sign in",
		chromedp.SendKeys("#password", "a long test password"),
		chromedp.Click("#sign-in"),
		chromedp.WaitVisible("#who"),
		chromedp.Text("#who", &who),
	)
	if who != "ops@example.com" {
		t.Fatalf("signed in as %q", who)
	}
	screenshot(t, ctx, "overview")

	run(t, ctx, "sign out",
		chromedp.Click("#sign-out"),
		chromedp.WaitVisible("#login-form"),
		chromedp.Navigate(c.url+"/audit"),
		chromedp.WaitVisible("#login-form"),
	)
}

func TestBrowserReplaysADeadLetter(t *testing.T) {
	c := startConsole(t, nil)
	c.addStaff(t, "support@example.com", "support", "a long test password")
	seq := consoletest.PutDeadLetter(t, c.nats, natsauth.CRMSync, &billingv1.BillingEvent{
		EventId: "evt_browser_1", Type: "customer.subscription.updated", CustomerId: "cus_browser_1", Email: "pat@example.com",
	}, "hubspot: 503 Service Unavailable")
	ctx := browser(t)

	var consumer, notice string
	run(t, ctx, "sign in and open the dead letter",
		signIn(c.url+"/dead-letters", "support@example.com", "a long test password"),
		chromedp.WaitVisible("#dead-letters"),
	)
	screenshot(t, ctx, "dead-letters")
	run(t, ctx, "preview",
		chromedp.Click("a.dl-link"),
		chromedp.WaitVisible("#preview"),
		chromedp.Text("#dl-consumer", &consumer),
	)
	if consumer != natsauth.CRMSync {
		t.Fatalf("preview of the dead letter of %q", consumer)
	}
	screenshot(t, ctx, "dead-letter-preview")
	run(t, ctx, "replay",
		chromedp.SendKeys("#replay-reason", "HubSpot is back"),
		chromedp.Click("#replay"),
		chromedp.WaitVisible("#notice"),
		chromedp.Text("#notice", &notice),
		chromedp.WaitVisible("#no-dead-letters"),
	)
	if !strings.Contains(notice, "replayed "+strconv.FormatUint(seq, 10)) {
		t.Fatalf("notice after replay: %q", notice)
	}
	screenshot(t, ctx, "dead-letter-replayed")
}
