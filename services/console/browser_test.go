package console_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

func TestBrowserSignInAndOut(t *testing.T) {
	c := startConsole(t, nil)
	c.addStaff(t, "ops@example.com", "support", "a long test password")
	ctx := browser(t)

	var msg string
	run(t, ctx, "wrong password",
		chromedp.Navigate(c.url+"/"),
		chromedp.WaitVisible("#login-form"),
		chromedp.SendKeys("#email", "ops@example.com"),
		chromedp.SendKeys("#password", "not the password"),
		chromedp.Click("#sign-in"),
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
