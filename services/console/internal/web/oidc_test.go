package web

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/oauth2-proxy/mockoidc"

	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/store"
)

// The provider sends the browser back to this address; the test browser
// takes the query from there to the console under test.
const callbackURL = "http://console.test/login/oidc/callback"

type idp struct {
	mock   *mockoidc.MockOIDC
	client *http.Client
}

// startIdP runs mockoidc for one test.
func startIdP(t *testing.T) *idp {
	t.Helper()
	m, err := mockoidc.Run()
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(func() {
		client.CloseIdleConnections()
		if err := m.Shutdown(); err != nil {
			t.Error(err)
		}
	})
	return &idp{mock: m, client: client}
}

// flow is the console's OIDC sign-in against issuer, for the mock's
// client.
func (p *idp) flow(issuer string) *auth.OIDC { return p.flowTo(issuer, callbackURL) }

// flowTo is flow with the provider sending the browser back to redirect.
func (p *idp) flowTo(issuer, redirect string) *auth.OIDC {
	cfg := p.mock.Config()
	return auth.NewOIDC(auth.OIDCConfig{
		Issuer: issuer, ClientID: cfg.ClientID, ClientSecret: cfg.ClientSecret, RedirectURL: redirect,
		AllowedDomain: "example.com",
		RoleMap:       map[string]auth.Role{"ops-admins": auth.BillingAdmin, "support": auth.Support},
	}, p.client)
}

func (p *idp) user(email string, groups ...string) {
	p.mock.QueueUser(&mockoidc.MockUser{Subject: "sub-" + email, Email: email, EmailVerified: true, Groups: groups})
}

// oidcSignIn walks the browser through the flow: the console's start, the
// provider's authorize (after tamper, when set, changes its query), and
// the console's callback with what the provider sent back.
func (br *browser) oidcSignIn(tamper func(url.Values)) page {
	br.t.Helper()
	start := br.get("/login/oidc?next=/audit")
	if start.status != http.StatusSeeOther {
		br.t.Fatalf("start: %d %s", start.status, start.body)
	}
	to, err := url.Parse(start.location)
	if err != nil {
		br.t.Fatal(err)
	}
	q := to.Query()
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if q.Get(k) == "" {
			br.t.Fatalf("authorize URL without %s: %s", k, to)
		}
	}
	if q.Get("code_challenge_method") != "S256" {
		br.t.Fatalf("PKCE method %q, want S256", q.Get("code_challenge_method"))
	}
	if tamper != nil {
		tamper(q)
		to.RawQuery = q.Encode()
	}
	req, _ := http.NewRequest(http.MethodGet, to.String(), nil)
	back := br.do(req)
	if back.status != http.StatusFound || !strings.HasPrefix(back.location, callbackURL) {
		br.t.Fatalf("authorize: %d to %q: %s", back.status, back.location, back.body)
	}
	cb, _ := url.Parse(back.location)
	return br.get("/login/oidc/callback?" + cb.RawQuery)
}

func TestOIDCSignInMapsGroupsToARole(t *testing.T) {
	p := startIdP(t)
	b := setup(t, func(o *Options) { o.OIDC = p.flow(p.mock.Issuer()) })
	p.user("ops@example.com", "engineering", "ops-admins", "support")
	br := b.browser(t)

	login := br.get("/login")
	if !strings.Contains(login.body, `id="sign-in-oidc"`) || !strings.Contains(login.body, `id="password"`) {
		t.Fatal("the sign-in page should offer both the provider and the local form")
	}
	got := br.oidcSignIn(nil)
	if got.status != http.StatusSeeOther || got.location != "/audit" {
		t.Fatalf("callback: %d to %q: %s", got.status, got.location, got.body)
	}
	home := br.get("/")
	if home.status != http.StatusOK || !strings.Contains(home.body, "ops@example.com") || !strings.Contains(home.body, "billing_admin") {
		t.Fatalf("signed in overview: %d", home.status)
	}
	st, err := store.StaffByEmail(b.ctx, b.pool, "ops@example.com")
	if err != nil || st.Source != store.SourceOIDC || st.Role != string(auth.BillingAdmin) || st.PasswordHash != "" {
		t.Fatalf("account %+v %v", st, err)
	}
	if rows := b.auditRows(t, "ops@example.com"); !slices.Equal(rows, [][2]string{{"sign_in", "ok"}}) {
		t.Fatalf("audit %v", rows)
	}

	// The role follows the groups at each sign-in.
	p.user("ops@example.com", "support")
	br2 := b.browser(t)
	if got := br2.oidcSignIn(nil); got.status != http.StatusSeeOther {
		t.Fatalf("second sign-in: %d", got.status)
	}
	if st, _ := store.StaffByEmail(b.ctx, b.pool, "ops@example.com"); st.Role != string(auth.Support) {
		t.Fatalf("role after the groups changed: %s", st.Role)
	}
}

func TestOIDCRefusalsAreAudited(t *testing.T) {
	p := startIdP(t)
	b := setup(t, func(o *Options) { o.OIDC = p.flow(p.mock.Issuer()) })
	b.addStaff(t, "local@example.com", auth.Owner, goodPassword, false)

	cases := []struct {
		name, email string
		groups      []string
		tamper      func(url.Values)
		outcome     string
	}{
		{"unmapped group", "eng@example.com", []string{"engineering"}, nil, "unmapped_group"},
		{"bad nonce", "nonce@example.com", []string{"support"}, func(q url.Values) { q.Set("nonce", "not-the-one-we-sent") }, "bad_nonce"},
		{"other domain", "someone@elsewhere.org", []string{"support"}, nil, "domain_not_allowed"},
		{"a local account's email", "local@example.com", []string{"ops-admins"}, nil, "local_account"},
		{"wrong PKCE verifier", "pkce@example.com", []string{"support"}, func(q url.Values) { q.Set("code_challenge", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA") }, "code_exchange_failed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p.user(c.email, c.groups...)
			br := b.browser(t)
			got := br.oidcSignIn(c.tamper)
			if got.status != http.StatusUnauthorized || !strings.Contains(got.body, "not accepted") {
				t.Fatalf("callback: %d to %q: %s", got.status, got.location, got.body)
			}
			if home := br.get("/"); home.status != http.StatusSeeOther {
				t.Fatalf("signed in after a refusal: %d", home.status)
			}
			actor := c.email
			if c.outcome == "code_exchange_failed" {
				actor = "unknown" // no ID token: no email to name
			}
			if rows := b.auditRows(t, actor); !slices.Contains(rows, [2]string{"sign_in", c.outcome}) || slices.Contains(rows, [2]string{"sign_in", "ok"}) {
				t.Fatalf("audit %v, want a %s refusal and no sign-in", rows, c.outcome)
			}
		})
	}
	if st, err := store.StaffByEmail(b.ctx, b.pool, "eng@example.com"); err == nil {
		t.Fatalf("a refused sign-in made an account: %+v", st)
	}
	if st, _ := store.StaffByEmail(b.ctx, b.pool, "local@example.com"); st.Source != store.SourceLocal || st.Role != string(auth.Owner) {
		t.Fatalf("the local account was taken over: %+v", st)
	}
}

// A token from another issuer is refused: the console trusts an issuer
// whose discovery document names it but whose tokens carry mockoidc's
// own issuer, as when tokens of one provider are played to a console set
// up for another.
func TestOIDCRefusesATokenFromAnotherIssuer(t *testing.T) {
	p := startIdP(t)
	var other *httptest.Server
	other = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		resp, err := p.client.Get(p.mock.DiscoveryEndpoint())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		var doc map[string]any
		if err := json.Unmarshal(body, &doc); err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		doc["issuer"] = other.URL
		_ = json.NewEncoder(w).Encode(doc)
	}))
	t.Cleanup(other.Close)
	b := setup(t, func(o *Options) { o.OIDC = p.flow(other.URL) })
	p.user("ops@example.com", "ops-admins")

	br := b.browser(t)
	if got := br.oidcSignIn(nil); got.status != http.StatusUnauthorized {
		t.Fatalf("callback: %d to %q: %s", got.status, got.location, got.body)
	}
	if rows := b.auditRows(t, "unknown"); !slices.Equal(rows, [][2]string{{"sign_in", "invalid_id_token"}}) {
		t.Fatalf("audit %v", rows)
	}
	if _, err := store.StaffByEmail(b.ctx, b.pool, "ops@example.com"); err == nil {
		t.Fatal("a token from another issuer made an account")
	}
}

func TestOIDCCallbackWithoutItsStateIsRefused(t *testing.T) {
	p := startIdP(t)
	b := setup(t, func(o *Options) { o.OIDC = p.flow(p.mock.Issuer()) })
	p.user("ops@example.com", "ops-admins")
	br := b.browser(t)
	start := br.get("/login/oidc")
	to, _ := url.Parse(start.location)
	req, _ := http.NewRequest(http.MethodGet, to.String(), nil)
	back := br.do(req)
	cb, _ := url.Parse(back.location)
	q := cb.Query()
	q.Set("state", "forged")
	if got := br.get("/login/oidc/callback?" + q.Encode()); got.status != http.StatusUnauthorized {
		t.Fatalf("forged state: %d", got.status)
	}
	// A callback in a browser that never started a sign-in (login CSRF).
	if got := b.browser(t).get("/login/oidc/callback?" + cb.RawQuery); got.status != http.StatusUnauthorized {
		t.Fatalf("callback without a started sign-in: %d", got.status)
	}
	if rows := b.auditRows(t, "unknown"); !slices.Equal(rows, [][2]string{{"sign_in", "wrong_state"}, {"sign_in", "no_sign_in_started"}}) {
		t.Fatalf("audit %v", rows)
	}
}
