package web

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/store"
)

const goodPassword = "correct horse battery"

func TestSignInSetsAHardenedSessionCookieAndAudits(t *testing.T) {
	b := setup(t)
	b.addStaff(t, "ana@example.com", auth.Support, goodPassword, false)
	br := b.browser(t)

	if p := br.get("/"); p.status != http.StatusSeeOther || !strings.HasPrefix(p.location, "/login") {
		t.Fatalf("signed out overview: %d to %q, want 303 to /login", p.status, p.location)
	}
	p := br.signIn("ANA@example.com", goodPassword)
	if p.status != http.StatusSeeOther || p.location != "/" {
		t.Fatalf("sign-in: %d to %q, want 303 to /", p.status, p.location)
	}
	var cookie *http.Cookie
	for _, c := range (&http.Response{Header: p.header}).Cookies() {
		if c.Name == "lr_console" {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Secure {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Lax, not Secure on loopback", cookie)
	}
	home := br.get("/")
	if home.status != http.StatusOK || !strings.Contains(home.body, "ana@example.com") {
		t.Fatalf("overview after sign-in: %d", home.status)
	}
	if got := b.auditRows(t, "ana@example.com"); !slices.Equal(got, [][2]string{{"sign_in", "ok"}}) {
		t.Fatalf("audit rows %v", got)
	}
	// The table holds the token's hash, never the token.
	var n int
	if err := b.pool.QueryRow(b.ctx, `SELECT count(*) FROM console.sessions WHERE token_hash = $1`, []byte(cookie.Value)).Scan(&n); err != nil || n != 0 {
		t.Fatalf("raw token stored: %d %v", n, err)
	}
}

func TestSecureCookiesUseTheHostPrefix(t *testing.T) {
	b := setup(t, func(o *Options) { o.SecureCookies = true })
	br := b.browser(t)
	p := br.get("/login")
	cs := (&http.Response{Header: p.header}).Cookies()
	if len(cs) != 1 || cs[0].Name != "__Host-lr_console_login" || !cs[0].Secure || cs[0].SameSite != http.SameSiteStrictMode {
		t.Fatalf("login cookie %+v", cs)
	}
	if p.header.Get("Strict-Transport-Security") == "" {
		t.Fatal("no HSTS with secure cookies")
	}
}

func TestSecurityHeaders(t *testing.T) {
	b := setup(t)
	p := b.browser(t).get("/login")
	csp := p.header.Get("Content-Security-Policy")
	for _, want := range []string{"frame-ancestors 'none'", "script-src 'self'", "default-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP allows inline code: %q", csp)
	}
	if p.header.Get("Cache-Control") != "no-store" || p.header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers %v", p.header)
	}
	if strings.Contains(p.body, "<script") || strings.Contains(p.body, " style=") {
		t.Error("the page has inline script or style")
	}
}

func TestWrongPasswordIsSlowedThenLocked(t *testing.T) {
	b := setup(t, func(o *Options) { o.Throttle = auth.Throttle{SlowAfter: 2, LockAfter: 4, LockFor: 15 * time.Minute} })
	b.addStaff(t, "bo@example.com", auth.Viewer, goodPassword, false)
	br := b.browser(t)

	// An unknown email and a wrong password get the same answer.
	unknown := br.signIn("nobody@example.com", goodPassword)
	wrong := br.signIn("bo@example.com", "wrong password 1")
	if unknown.status != http.StatusUnauthorized || wrong.status != http.StatusUnauthorized ||
		!strings.Contains(unknown.body, "do not match") || !strings.Contains(wrong.body, "do not match") {
		t.Fatalf("unknown %d, wrong %d", unknown.status, wrong.status)
	}
	// The second failure makes the next attempt wait, even with the right
	// password.
	br.signIn("bo@example.com", "wrong password 2")
	if p := br.signIn("bo@example.com", goodPassword); p.status != http.StatusTooManyRequests || !strings.Contains(p.body, "Wait") {
		t.Fatalf("right password while slowed: %d", p.status)
	}
	b.clock.Advance(time.Minute)
	br.signIn("bo@example.com", "wrong password 3")
	b.clock.Advance(time.Minute)
	br.signIn("bo@example.com", "wrong password 4")
	// Locked: the right password is refused until the lock ends.
	b.clock.Advance(14 * time.Minute)
	if p := br.signIn("bo@example.com", goodPassword); p.status != http.StatusTooManyRequests || !strings.Contains(p.body, "locked") {
		t.Fatalf("right password while locked: %d", p.status)
	}
	b.clock.Advance(2 * time.Minute)
	if p := br.signIn("bo@example.com", goodPassword); p.status != http.StatusSeeOther {
		t.Fatalf("right password after the lock: %d", p.status)
	}
	st, err := store.StaffByEmail(b.ctx, b.pool, "bo@example.com")
	if err != nil || st.FailedLogins != 0 || !st.LockedUntil.IsZero() {
		t.Fatalf("after a good sign-in: %+v %v", st, err)
	}
	want := [][2]string{{"sign_in", "wrong_password"}, {"sign_in", "wrong_password"}, {"sign_in", "throttled"},
		{"sign_in", "wrong_password"}, {"sign_in", "wrong_password"}, {"sign_in", "locked"}, {"sign_in", "ok"}}
	if got := b.auditRows(t, "bo@example.com"); !slices.Equal(got, want) {
		t.Fatalf("audit rows\n got %v\nwant %v", got, want)
	}
	if got := b.auditRows(t, "nobody@example.com"); !slices.Equal(got, [][2]string{{"sign_in", "unknown_email"}}) {
		t.Fatalf("unknown email audit %v", got)
	}
}

func TestSignInFormNeedsItsToken(t *testing.T) {
	b := setup(t)
	b.addStaff(t, "cy@example.com", auth.Owner, goodPassword, false)
	br := b.browser(t)
	br.get("/login")
	p := br.post("/login", url.Values{"login_token": {"forged"}, "email": {"cy@example.com"}, "password": {goodPassword}})
	if p.status != http.StatusForbidden {
		t.Fatalf("sign-in without the form's token: %d, want 403", p.status)
	}
	if got := b.auditRows(t, "cy@example.com"); len(got) != 0 {
		t.Fatalf("refused form audited as a sign-in: %v", got)
	}
}

func TestSignInNeverRedirectsOffSite(t *testing.T) {
	for next, want := range map[string]string{"/audit?actor=x": "/audit?actor=x", "//evil.example": "/", "https://evil.example/": "/", "/\\evil": "/"} {
		if got := localPath(next); got != want {
			t.Errorf("localPath(%q) = %q, want %q", next, got, want)
		}
	}
}

func TestStateChangesNeedTheSessionsCSRFToken(t *testing.T) {
	b := setup(t)
	b.addStaff(t, "di@example.com", auth.Owner, goodPassword, false)
	br := b.browser(t)
	br.signIn("di@example.com", goodPassword)
	for _, form := range []url.Values{{}, {"csrf": {"not-the-token"}}} {
		if p := br.post("/logout", form); p.status != http.StatusForbidden {
			t.Fatalf("sign-out with csrf %q: %d, want 403", form.Get("csrf"), p.status)
		}
	}
	if p := br.get("/"); p.status != http.StatusOK {
		t.Fatalf("session ended by a refused request: %d", p.status)
	}
	// A cross-site POST is refused before the handler, token or not.
	req, _ := http.NewRequest(http.MethodPost, b.srv.URL+"/logout", strings.NewReader(url.Values{"csrf": {br.csrf()}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	if p := br.do(req); p.status != http.StatusForbidden {
		t.Fatalf("cross-site POST: %d, want 403", p.status)
	}
	if p := br.post("/logout", url.Values{"csrf": {br.csrf()}}); p.status != http.StatusSeeOther {
		t.Fatalf("sign-out with the token: %d", p.status)
	}
	if p := br.get("/"); p.status != http.StatusSeeOther {
		t.Fatalf("after sign-out: %d, want 303 to sign in", p.status)
	}
	if got := b.auditRows(t, "di@example.com"); !slices.Equal(got, [][2]string{{"sign_in", "ok"}, {"sign_out", "ok"}}) {
		t.Fatalf("audit rows %v", got)
	}
}

func TestSessionsEndWhenIdleAndAtTheirAbsoluteLimit(t *testing.T) {
	b := setup(t, func(o *Options) { o.SessionIdle = 30 * time.Minute; o.SessionMax = 2 * time.Hour })
	b.addStaff(t, "ed@example.com", auth.Viewer, goodPassword, false)

	idle := b.browser(t)
	idle.signIn("ed@example.com", goodPassword)
	busy := b.browser(t)
	busy.signIn("ed@example.com", goodPassword)
	for i := range 7 { // 7 × 17 min: never idle 30 minutes, but past 2 hours
		b.clock.Advance(17 * time.Minute)
		if p := busy.get("/"); p.status != http.StatusOK {
			t.Fatalf("busy session ended early, after %d steps", i+1)
		}
		if i == 1 { // 34 minutes without a request
			if p := idle.get("/"); p.status != http.StatusSeeOther {
				t.Fatalf("idle session: %d, want 303", p.status)
			}
		}
	}
	b.clock.Advance(17 * time.Minute)
	if p := busy.get("/"); p.status != http.StatusSeeOther {
		t.Fatalf("session past its absolute limit: %d, want 303", p.status)
	}
}

func TestSignOutEverywhereEndsEverySession(t *testing.T) {
	b := setup(t)
	b.addStaff(t, "fa@example.com", auth.Support, goodPassword, false)
	b.addStaff(t, "gi@example.com", auth.Support, goodPassword, false)
	laptop, phone, other := b.browser(t), b.browser(t), b.browser(t)
	laptop.signIn("fa@example.com", goodPassword)
	phone.signIn("fa@example.com", goodPassword)
	other.signIn("gi@example.com", goodPassword)
	if p := laptop.post("/logout/everywhere", url.Values{"csrf": {laptop.csrf()}}); p.status != http.StatusSeeOther {
		t.Fatalf("sign out everywhere: %d", p.status)
	}
	if laptop.get("/").status != http.StatusSeeOther || phone.get("/").status != http.StatusSeeOther {
		t.Fatal("a session of the account survived sign-out everywhere")
	}
	if other.get("/").status != http.StatusOK {
		t.Fatal("another account's session ended")
	}
}

func TestOneTimePasswordMustBeChangedFirst(t *testing.T) {
	b := setup(t)
	otp, err := auth.OneTimePassword()
	if err != nil {
		t.Fatal(err)
	}
	b.addStaff(t, "hu@example.com", auth.BillingAdmin, otp, true)
	br := b.browser(t)
	if p := br.signIn("hu@example.com", otp); p.status != http.StatusSeeOther || p.location != "/password" {
		t.Fatalf("sign-in with a one-time password: %d to %q", p.status, p.location)
	}
	if p := br.get("/audit"); p.status != http.StatusSeeOther || p.location != "/password" {
		t.Fatalf("a page before the change: %d to %q", p.status, p.location)
	}
	pw := br.get("/password")
	csrf := csrfRE.FindStringSubmatch(pw.body)[1]
	if p := br.post("/password", url.Values{"csrf": {csrf}, "current": {otp}, "new": {"short"}, "confirm": {"short"}}); p.status != http.StatusBadRequest {
		t.Fatalf("short password: %d", p.status)
	}
	const mine = "my own long passphrase"
	if p := br.post("/password", url.Values{"csrf": {csrf}, "current": {otp}, "new": {mine}, "confirm": {mine}}); p.status != http.StatusSeeOther {
		t.Fatalf("change: %d", p.status)
	}
	if p := br.get("/"); p.status != http.StatusOK {
		t.Fatalf("overview after the change: %d", p.status)
	}
	again := b.browser(t)
	if p := again.signIn("hu@example.com", otp); p.status != http.StatusUnauthorized {
		t.Fatalf("the one-time password still works: %d", p.status)
	}
	if p := again.signIn("hu@example.com", mine); p.status != http.StatusSeeOther || p.location != "/" {
		t.Fatalf("new password: %d to %q", p.status, p.location)
	}
}
