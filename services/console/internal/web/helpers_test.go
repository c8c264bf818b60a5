package web

import (
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/store"
)

// clock is a test clock that moves only when told.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

type bundle struct {
	ctx   context.Context
	pool  *pgxpool.Pool
	clock *clock
	srv   *httptest.Server
	web   *Server
}

// setup starts the console's handler on a database of its own.
func setup(t *testing.T, adjust ...func(*Options)) *bundle {
	t.Helper()
	ctx := t.Context()
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t), pg.WithMaxConns(8))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	c := &clock{now: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	opts := Options{Pool: pool, Log: logging.Discard(), Now: c.Now}
	for _, a := range adjust {
		a(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &bundle{ctx: ctx, pool: pool, clock: c, srv: srv, web: s}
}

// addStaff makes a local account with password pw.
func (b *bundle) addStaff(t *testing.T, email string, role auth.Role, pw string, mustChange bool) store.Staff {
	t.Helper()
	hash, err := auth.HashPassword(pw)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.CreateStaff(b.ctx, b.pool, email, string(role), store.SourceLocal, hash, mustChange)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// browser is an HTTP client with its own cookies that does not follow
// redirects, so a test sees each answer.
type browser struct {
	t    *testing.T
	base string
	c    *http.Client
}

func (b *bundle) browser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: b.srv.URL, c: &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse
	}}}
}

type page struct {
	status   int
	body     string
	location string
	header   http.Header
}

func (br *browser) do(req *http.Request) page {
	br.t.Helper()
	resp, err := br.c.Do(req)
	if err != nil {
		br.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return page{status: resp.StatusCode, body: string(body), location: resp.Header.Get("Location"), header: resp.Header}
}

func (br *browser) get(path string) page {
	br.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, br.base+path, nil)
	return br.do(req)
}

func (br *browser) post(path string, form url.Values) page {
	br.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, br.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return br.do(req)
}

var (
	loginTokenRE = regexp.MustCompile(`name="login_token" value="([^"]+)"`)
	csrfRE       = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
)

// signIn posts the sign-in form as a person would: the page first, then
// the form with the page's token.
func (br *browser) signIn(email, pw string) page {
	br.t.Helper()
	p := br.get("/login")
	m := loginTokenRE.FindStringSubmatch(p.body)
	if m == nil {
		br.t.Fatalf("no login token on the sign-in page: %d %s", p.status, p.body)
	}
	return br.post("/login", url.Values{"login_token": {m[1]}, "email": {email}, "password": {pw}})
}

// csrf reads the CSRF token from a signed-in page.
func (br *browser) csrf() string {
	br.t.Helper()
	p := br.get("/")
	m := csrfRE.FindStringSubmatch(p.body)
	if m == nil {
		br.t.Fatalf("no CSRF token on the overview: %d %s", p.status, p.body)
	}
	return m[1]
}

// auditRows returns the (action, outcome) pairs written for actor, oldest
// first.
func (b *bundle) auditRows(t *testing.T, actor string) [][2]string {
	t.Helper()
	rows, err := store.ListAudit(b.ctx, b.pool, store.AuditFilter{Actor: actor})
	if err != nil {
		t.Fatal(err)
	}
	var out [][2]string
	for i := len(rows) - 1; i >= 0; i-- {
		out = append(out, [2]string{rows[i].Action, rows[i].Outcome})
	}
	return out
}
