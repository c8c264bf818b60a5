package console_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/launchready/launchready/services/console/internal/consoletest"
)

// A billing admin cancels a subscription at the end of its period, then
// moves another to a new price, each through the form, its confirmation
// step and billing-state, against the recording fake Stripe: nothing
// reaches Stripe before the confirmation, and each confirmation makes the
// one change it showed.
func TestBrowserCancelsASubscriptionAndChangesAPlan(t *testing.T) {
	stripe := consoletest.NewStripeRecorder(t, "")
	addr, token := consoletest.StartBillingState(t, stripe.Server.URL)
	c := startConsole(t, map[string]string{"CONSOLE_BILLING_GRPC_ADDR": addr, "CONSOLE_BILLING_GRPC_TOKEN": token})
	c.addStaff(t, "fin@example.com", "billing_admin", "a long test password")
	ctx := browser(t)

	run(t, ctx, "sign in and open the cancellation form",
		signIn(c.url+"/actions/new/cancel?customer=cus_Browser2&subscription=sub_Browser2", "fin@example.com", "a long test password"),
		chromedp.WaitVisible("#action-form"),
		chromedp.Click("#when-period-end"),
		chromedp.SendKeys("#reason", "the customer asked to stop at the end of the month"),
	)
	screenshot(t, ctx, "cancel-form")
	var when string
	run(t, ctx, "review the cancellation",
		chromedp.Click("#review"),
		chromedp.WaitVisible("#confirm"),
		chromedp.Text("#confirm-when", &when),
	)
	if when != "at the end of the period" {
		t.Fatalf("the confirmation says %q", when)
	}
	if n := len(stripe.Calls()); n != 0 {
		t.Fatalf("Stripe called before the confirmation: %d", n)
	}
	screenshot(t, ctx, "cancel-confirm")
	var state string
	run(t, ctx, "confirm the cancellation",
		chromedp.Click("#confirm-action"),
		chromedp.WaitVisible("#action-state"),
		chromedp.Text("#action-state", &state),
	)
	if state != "Done: Stripe made the change (sub_Browser2)." {
		t.Fatalf("after confirming the cancellation: %q", state)
	}
	screenshot(t, ctx, "cancel-done")
	calls := stripe.Calls()
	if len(calls) != 1 || calls[0].Method != "POST" || calls[0].Path != "/v1/subscriptions/sub_Browser2" ||
		calls[0].Form.Get("cancel_at_period_end") != "true" || calls[0].IdempotencyKey == "" ||
		!strings.HasPrefix(calls[0].Form.Get("metadata[launchready_action_id]"), "act_") {
		t.Fatalf("Stripe calls for the cancellation: %+v", calls)
	}

	run(t, ctx, "open the plan change form",
		chromedp.Navigate(c.url+"/actions/new/change-plan?customer=cus_Browser3&subscription=sub_Browser3"),
		chromedp.WaitVisible("#action-form"),
		chromedp.SendKeys("#price", "price_Annual"),
		chromedp.SetValue("#proration", "always_invoice"),
		chromedp.SendKeys("#reason", "moved to the yearly plan on request"),
	)
	screenshot(t, ctx, "plan-form")
	var summary string
	run(t, ctx, "review the plan change",
		chromedp.Click("#review"),
		chromedp.WaitVisible("#confirm"),
		chromedp.Text("#confirm", &summary),
	)
	if !strings.Contains(summary, "price_Annual") || !strings.Contains(summary, "always_invoice") || !strings.Contains(summary, "sub_Browser3") {
		t.Fatalf("the plan change's confirmation: %q", summary)
	}
	if n := len(stripe.Calls()); n != 1 {
		t.Fatalf("Stripe called before the plan change's confirmation: %d calls", n)
	}
	screenshot(t, ctx, "plan-confirm")
	run(t, ctx, "confirm the plan change",
		chromedp.Click("#confirm-action"),
		chromedp.WaitVisible("#action-state"),
		chromedp.Text("#action-state", &state),
	)
	if state != "Done: Stripe made the change (sub_Browser3)." {
		t.Fatalf("after confirming the plan change: %q", state)
	}
	screenshot(t, ctx, "plan-done")
	// The subscription's only item is read, then moved to the new price.
	calls = stripe.Calls()[1:]
	if len(calls) != 2 || calls[0].Method != "GET" || calls[0].Path != "/v1/subscriptions/sub_Browser3" ||
		calls[1].Method != "POST" || calls[1].Path != "/v1/subscriptions/sub_Browser3" ||
		calls[1].Form.Get("items[0][id]") != "si_sub_Browser3" || calls[1].Form.Get("items[0][price]") != "price_Annual" ||
		calls[1].Form.Get("proration_behavior") != "always_invoice" || calls[1].IdempotencyKey == "" {
		t.Fatalf("Stripe calls for the plan change: %+v", calls)
	}
}
