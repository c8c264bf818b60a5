// Package web is the console's HTTP surface: server-rendered pages from
// html/template with embedded assets, sessions in Postgres, a CSRF token
// in every form and the role check on every request.
package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/redact"
	"github.com/launchready/launchready/pkg/stripeapi"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/jaeger"
	"github.com/launchready/launchready/services/console/internal/policy"
	"github.com/launchready/launchready/services/console/internal/store"
	"github.com/launchready/launchready/services/console/internal/webhookrates"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Defaults of Options.
const (
	DefaultSessionIdle = 30 * time.Minute
	DefaultSessionMax  = 12 * time.Hour
)

// maxFormBytes bounds every form body.
const maxFormBytes = 64 << 10

// Options are what the server needs.
type Options struct {
	Pool *pgxpool.Pool
	Log  *slog.Logger
	// SecureCookies marks cookies Secure and names the session cookie with
	// the __Host- prefix; off only on a loopback dev listener.
	SecureCookies bool
	// SessionIdle and SessionMax end a session after that long unused, and
	// that long after sign-in, whatever happens.
	SessionIdle time.Duration
	SessionMax  time.Duration
	Throttle    auth.Throttle
	// JS reaches the dead letters, as the NATS user console.
	JS jetstream.JetStream
	// Resync asks a consumer to re-send what it holds for a customer;
	// nil means over JS's connection, when there is one.
	Resync Resyncer
	// OIDC, when set, offers sign-in through the identity provider beside
	// the local accounts.
	OIDC *auth.OIDC
	// Reader reads the other services' schemas as pg.ConsoleReaderRole,
	// which may only SELECT; nil in tests that show none of them.
	Reader *pgxpool.Pool
	// Stripe, when set, fetches Stripe's own view of a customer's
	// subscription for the customer page.
	Stripe *stripeapi.Client
	// OpsTargets are the services' ops listeners (host:port), whose
	// /readyz and /metrics the overview reads.
	OpsTargets []string
	// Jaeger, when set, is the query service the trace view reads.
	Jaeger *jaeger.Client
	// Webhooks, when set, gives the overview the webhook failure rate and
	// the week's duplicates.
	Webhooks webhookrates.Source
	// Billing is billing-state's gRPC API, called with the console's
	// token; nil when none is configured.
	Billing *Billing
	// Policy bounds the staff actions (CONSOLE_POLICY).
	Policy policy.Policy
	// Now is the clock (time.Now when nil).
	Now func() time.Time
}

// Billing is billing-state's gRPC API: the status the mobile backend reads,
// and the staff actions.
type Billing struct {
	Status billingv1.BillingStatusServiceClient
	Admin  billingv1.BillingAdminServiceClient
}

// Server is the console's HTTP handler.
type Server struct {
	opts  Options
	pages map[string]*template.Template
	mux   *http.ServeMux
}

// New builds the server and its routes.
func New(opts Options) (*Server, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SessionIdle <= 0 {
		opts.SessionIdle = DefaultSessionIdle
	}
	if opts.SessionMax <= 0 {
		opts.SessionMax = DefaultSessionMax
	}
	if opts.Resync == nil && opts.JS != nil {
		opts.Resync = natsResyncer(opts.JS.Conn())
	}
	if opts.Throttle == (auth.Throttle{}) {
		opts.Throttle = auth.DefaultThrottle
	}
	pages, err := parsePages()
	if err != nil {
		return nil, err
	}
	s := &Server{opts: opts, pages: pages, mux: http.NewServeMux()}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	static, _ := fs.Sub(staticFS, "static")
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", assetHeaders(http.FileServerFS(static))))
	s.mux.HandleFunc("GET /login", s.loginPage)
	s.mux.HandleFunc("POST /login", s.login)
	if s.opts.OIDC != nil {
		s.mux.HandleFunc("GET /login/oidc", s.oidcStart)
		s.mux.HandleFunc("GET /login/oidc/callback", s.oidcCallback)
	}
	s.mux.Handle("GET /password", s.page(auth.Viewer, s.passwordPage))
	s.mux.Handle("POST /password", s.action(auth.Viewer, s.changePassword))
	s.mux.Handle("POST /logout", s.action(auth.Viewer, s.logout))
	s.mux.Handle("POST /logout/everywhere", s.action(auth.Viewer, s.logoutEverywhere))
	s.mux.Handle("GET /{$}", s.page(auth.Viewer, s.overview))
	s.mux.Handle("GET /audit", s.page(auth.Viewer, s.auditPage))
	s.mux.Handle("GET /customers", s.page(auth.Viewer, s.search))
	s.mux.Handle("GET /customers/{id}", s.page(auth.Viewer, s.customer))
	s.mux.Handle("GET /events/{id}", s.page(auth.Viewer, s.event))
	s.mux.Handle("GET /traces", s.page(auth.Viewer, s.traceLookup))
	s.mux.Handle("GET /traces/{id}", s.page(auth.Viewer, s.trace))
	if s.opts.JS != nil {
		s.mux.Handle("GET /dead-letters", s.page(auth.Viewer, s.deadLetters))
		s.mux.Handle("GET /dead-letters/{seq}", s.page(auth.Viewer, s.deadLetter))
		s.mux.Handle("POST /dead-letters/{seq}/replay", s.action(auth.Support, s.replayDeadLetter))
		s.mux.Handle("POST /dead-letters/{seq}/discard", s.action(auth.Support, s.discardDeadLetter))
	}
	if s.opts.Resync != nil {
		s.mux.Handle("POST /customers/{id}/resync/{consumer}", s.action(auth.Support, s.resyncCustomer))
	}
	if s.opts.Billing != nil && s.opts.Billing.Admin != nil {
		s.actionRoutes()
	}
}

// ServeHTTP serves the console with its security headers, behind Go's
// cross-origin protection (a second layer to the CSRF tokens: a browser's
// cross-site POST is refused before any handler reads it).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; script-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	if s.opts.SecureCookies {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if !strings.HasPrefix(r.URL.Path, "/static/") {
		// Every page shows staff or customer data: never kept by the
		// browser or a proxy.
		h.Set("Cache-Control", "no-store")
	}
	crossOrigin.Handler(s.mux).ServeHTTP(w, r)
}

var crossOrigin = func() *http.CrossOriginProtection {
	c := http.NewCrossOriginProtection()
	c.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
	}))
	return c
}()

func assetHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		h.ServeHTTP(w, r)
	})
}

// request is what a signed-in handler gets.
type request struct {
	Session store.Session
	Role    auth.Role
}

// Staff is the signed-in account.
func (q *request) Staff() store.Staff { return q.Session.Staff }

type handler func(w http.ResponseWriter, r *http.Request, q *request)

// page serves a GET to staff with at least role need; without a session it
// sends the browser to sign in.
func (s *Server) page(need auth.Role, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q, ok := s.signedIn(w, r)
		if !ok {
			http.Redirect(w, r, "/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if q.Session.Staff.MustChangePassword && r.URL.Path != "/password" {
			http.Redirect(w, r, "/password", http.StatusSeeOther)
			return
		}
		if !q.Role.Allows(need) {
			s.forbidden(w, r, q, "role "+string(q.Role)+" may not view this page")
			return
		}
		h(w, r, q)
	})
}

// action serves a state-changing request: a session, its CSRF token in the
// form, and at least role need, or 403 before anything is written.
func (s *Server) action(need auth.Role, h handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
		q, ok := s.signedIn(w, r)
		if !ok {
			s.render(w, r, http.StatusForbidden, "error", nil, map[string]any{"Title": "Signed out", "Message": "Your session has ended. Sign in again."})
			return
		}
		if err := r.ParseForm(); err != nil {
			s.render(w, r, http.StatusBadRequest, "error", q, map[string]any{"Title": "Bad request", "Message": "The form could not be read."})
			return
		}
		if !sameToken(r.PostForm.Get("csrf"), q.Session.CSRFToken) {
			s.forbidden(w, r, q, "missing or wrong CSRF token")
			return
		}
		if q.Session.Staff.MustChangePassword && r.URL.Path != "/password" && r.URL.Path != "/logout" {
			s.forbidden(w, r, q, "the password must be changed first")
			return
		}
		if !q.Role.Allows(need) {
			s.forbidden(w, r, q, "role "+string(q.Role)+" may not do this")
			return
		}
		h(w, r, q)
	})
}

func (s *Server) forbidden(w http.ResponseWriter, r *http.Request, q *request, why string) {
	s.opts.Log.WarnContext(r.Context(), "console request refused", "actor", q.Session.Staff.Email, "method", r.Method,
		"path", r.URL.Path, "reason", why)
	s.render(w, r, http.StatusForbidden, "error", q, map[string]any{"Title": "Not allowed", "Message": "You are not allowed to do this."})
}

func sameToken(got, want string) bool {
	return got != "" && want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// Session cookie names: __Host- binds the cookie to this origin over
// HTTPS; a loopback dev listener has no HTTPS, where the prefix is refused.
func (s *Server) sessionCookie() string {
	if s.opts.SecureCookies {
		return "__Host-lr_console"
	}
	return "lr_console"
}

func (s *Server) loginCookie() string {
	if s.opts.SecureCookies {
		return "__Host-lr_console_login"
	}
	return "lr_console_login"
}

func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge time.Duration, site http.SameSite) {
	c := &http.Cookie{Name: name, Value: value, Path: "/", HttpOnly: true, Secure: s.opts.SecureCookies, SameSite: site} // #nosec G124 -- Secure is off only on a loopback dev listener, which has no TLS
	if maxAge < 0 {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(maxAge / time.Second)
	}
	http.SetCookie(w, c)
}

// signedIn loads the request's session, ending it if it is past its idle
// or absolute limit.
func (s *Server) signedIn(w http.ResponseWriter, r *http.Request) (*request, bool) {
	c, err := r.Cookie(s.sessionCookie())
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil, false
	}
	hash := tokenHash(c.Value)
	ctx := r.Context()
	se, err := store.SessionByToken(ctx, s.opts.Pool, hash)
	if err != nil {
		if !errors.Is(err, store.ErrNotFound) {
			s.opts.Log.ErrorContext(ctx, "load session", "error", redact.Error(err))
		}
		s.setCookie(w, s.sessionCookie(), "", -1, http.SameSiteLaxMode)
		return nil, false
	}
	now := s.opts.Now()
	if !now.Before(se.ExpiresAt) || now.Sub(se.LastSeenAt) >= s.opts.SessionIdle || se.Staff.Disabled {
		if err := store.DeleteSession(ctx, s.opts.Pool, hash); err != nil {
			s.opts.Log.ErrorContext(ctx, "end expired session", "error", redact.Error(err))
		}
		s.setCookie(w, s.sessionCookie(), "", -1, http.SameSiteLaxMode)
		return nil, false
	}
	// One write a minute at most per session, not one per request.
	if now.Sub(se.LastSeenAt) >= time.Minute {
		if err := store.TouchSession(ctx, s.opts.Pool, hash, now); err != nil {
			s.opts.Log.ErrorContext(ctx, "touch session", "error", redact.Error(err))
		}
	}
	role, err := auth.ParseRole(se.Staff.Role)
	if err != nil {
		return nil, false
	}
	return &request{Session: se, Role: role}, true
}

// startSession signs staff in: a new session (a new token, so a token
// planted before sign-in is worthless), the failures forgotten and the
// audit row, in one transaction; then the cookie.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, st store.Staff, method string) error {
	token, err := randomToken(32)
	if err != nil {
		return err
	}
	csrf, err := randomToken(32)
	if err != nil {
		return err
	}
	now := s.opts.Now()
	ctx := r.Context()
	err = pg.InTx(ctx, s.opts.Pool, func(tx *pg.Tx) error {
		if err := store.ClearFailedLogins(ctx, tx, st.ID); err != nil {
			return err
		}
		if err := store.CreateSession(ctx, tx, tokenHash(token), st.ID, csrf, now, now.Add(s.opts.SessionMax), clientIP(r), r.UserAgent()); err != nil {
			return err
		}
		return store.Audit(ctx, tx, store.AuditEntry{Actor: st.Email, Action: "sign_in", Outcome: "ok", Target: method, RemoteAddr: clientIP(r),
			After: jsonOf(map[string]any{"role": st.Role, "method": method})})
	})
	if err != nil {
		return fmt.Errorf("start session: %w", err)
	}
	s.setCookie(w, s.sessionCookie(), token, s.opts.SessionMax, http.SameSiteLaxMode)
	return nil
}

func tokenHash(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

func randomToken(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("random token: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// localPath is next if it is a path on this site, else "/": a sign-in
// never sends the browser elsewhere.
func localPath(next string) string {
	if next == "" || !strings.HasPrefix(next, "/") || strings.HasPrefix(next, "//") || strings.HasPrefix(next, "/\\") {
		return "/"
	}
	u, err := url.Parse(next)
	if err != nil || u.Host != "" || u.Scheme != "" {
		return "/"
	}
	return next
}

// audit writes one row outside any other change, logging a failure: the
// request has already been answered by what it did.
func (s *Server) audit(ctx context.Context, e store.AuditEntry) {
	if err := store.Audit(ctx, s.opts.Pool, e); err != nil {
		s.opts.Log.ErrorContext(ctx, "audit", "action", e.Action, "error", redact.Error(err))
	}
}
