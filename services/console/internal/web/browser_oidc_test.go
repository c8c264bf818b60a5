package web

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/launchready/launchready/services/console/internal/auth"
	chromium "github.com/launchready/launchready/test/testkit/browser"
)

// screenshots is where the console's browser tests keep theirs:
// CONSOLE_ARTIFACTS, else services/console/.artifacts/screenshots.
func screenshots(t *testing.T) string {
	return chromium.Artifacts(t, "CONSOLE_ARTIFACTS", filepath.Join("..", "..", "..", ".artifacts", "screenshots"))
}

// Sign-in through the identity provider in a real browser: the console's
// start, mockoidc's authorize and the callback, with the state and nonce
// cookie the browser carries across them; and a refusal, shown to the
// person, for a group that maps to no role.
func TestBrowserOIDCSignIn(t *testing.T) {
	p := startIdP(t)
	b := setup(t, func(o *Options) { o.OIDC = p.flow(p.mock.Issuer()) })
	// The provider sends the browser back to this console's own address,
	// known once it listens.
	b.web.opts.OIDC = p.flowTo(p.mock.Issuer(), b.srv.URL+"/login/oidc/callback")
	dir := screenshots(t)

	ctx := chromium.Start(t, 90*time.Second)
	p.user("ops@example.com", "engineering", "support")
	var who, role string
	err := chromedp.Run(ctx,
		chromedp.Navigate(b.srv.URL+"/audit"),
		chromedp.WaitVisible("#sign-in-oidc"),
	)
	if err != nil {
		chromium.Screenshot(t, ctx, dir, t.Name()+"-failed-login-page")
		t.Fatalf("the sign-in page: %v", err)
	}
	chromium.Screenshot(t, ctx, dir, t.Name()+"-login")
	err = chromedp.Run(ctx,
		chromedp.Click("#sign-in-oidc"),
		chromedp.WaitVisible("#who"),
		chromedp.Text("#who", &who),
		chromedp.Text(".role", &role),
	)
	if err != nil {
		chromium.Screenshot(t, ctx, dir, t.Name()+"-failed-sign-in")
		t.Fatalf("sign in through the provider: %v", err)
	}
	chromium.Screenshot(t, ctx, dir, t.Name()+"-signed-in")
	var loc string
	if err := chromedp.Run(ctx, chromedp.Location(&loc)); err != nil || loc != b.srv.URL+"/audit" {
		t.Errorf("after sign-in the browser is at %q (%v), want the page it asked for", loc, err)
	}
	if who != "ops@example.com" || role != string(auth.Support) {
		t.Fatalf("signed in as %q with role %q", who, role)
	}
	if rows := b.auditRows(t, "ops@example.com"); !slices.Equal(rows, [][2]string{{"sign_in", "ok"}}) {
		t.Fatalf("audit %v", rows)
	}

	// Another person, whose only group maps to no role: refused, and told.
	other := chromium.Start(t, 90*time.Second)
	p.user("eng@example.com", "engineering")
	var msg string
	err = chromedp.Run(other,
		chromedp.Navigate(b.srv.URL+"/login"),
		chromedp.WaitVisible("#sign-in-oidc"),
		chromedp.Click("#sign-in-oidc"),
		chromedp.WaitVisible("#message"),
		chromedp.Text("#message", &msg),
	)
	if err != nil {
		chromium.Screenshot(t, other, dir, t.Name()+"-failed-refusal")
		t.Fatalf("an unmapped group: %v", err)
	}
	chromium.Screenshot(t, other, dir, t.Name()+"-refused")
	if !strings.Contains(msg, "was not accepted here") {
		t.Fatalf("message for an unmapped group: %q", msg)
	}
	if rows := b.auditRows(t, "eng@example.com"); !slices.Equal(rows, [][2]string{{"sign_in", "unmapped_group"}}) {
		t.Fatalf("audit of the refusal %v", rows)
	}
}
