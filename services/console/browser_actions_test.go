package console_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/launchready/launchready/services/console/internal/consoletest"
)

func TestBrowserPartialRefundWithItsConfirmation(t *testing.T) {
	stripe := consoletest.NewStripeRecorder(t, "")
	addr, token := consoletest.StartBillingState(t, stripe.Server.URL)
	c := startConsole(t, map[string]string{"CONSOLE_BILLING_GRPC_ADDR": addr, "CONSOLE_BILLING_GRPC_TOKEN": token})
	c.addStaff(t, "fin@example.com", "billing_admin", "a long test password")
	ctx := browser(t)

	run(t, ctx, "sign in and open the refund form",
		signIn(c.url+"/actions/new/refund?customer=cus_Browser1&payment=pi_Browser1&amount=4900", "fin@example.com", "a long test password"),
		chromedp.WaitVisible("#action-form"),
		chromedp.Click("#scope-partial"),
		chromedp.SetValue("#amount", "1500"),
		chromedp.SendKeys("#reason", "one month of a yearly plan, as agreed by email"),
	)
	screenshot(t, ctx, "refund-form")

	var summary string
	run(t, ctx, "review",
		chromedp.Click("#review"),
		chromedp.WaitVisible("#confirm"),
		chromedp.Text("#confirm-amount", &summary),
	)
	if !strings.Contains(summary, "partial: 15.00") {
		t.Fatalf("confirmation says %q", summary)
	}
	if n := len(stripe.Calls()); n != 0 {
		t.Fatalf("Stripe called before the confirmation: %d", n)
	}
	screenshot(t, ctx, "refund-confirm")

	var state string
	run(t, ctx, "confirm",
		chromedp.Click("#confirm-action"),
		chromedp.WaitVisible("#action-state"),
		chromedp.Text("#action-state", &state),
	)
	if !strings.HasPrefix(state, "Done: Stripe made the change (re_") {
		t.Fatalf("after confirming: %q", state)
	}
	screenshot(t, ctx, "refund-done")
	calls := stripe.Calls()
	if len(calls) != 1 || calls[0].Path != "/v1/refunds" || calls[0].Form.Get("amount") != "1500" || calls[0].Form.Get("payment_intent") != "pi_Browser1" {
		t.Fatalf("Stripe calls %+v", calls)
	}
}
