package statuspage

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/launchready/launchready/pkg/bus"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/display"
	"github.com/launchready/launchready/services/billing-state/internal/portal"
)

//go:embed assets
var assets embed.FS

var (
	pageTmpl   = template.Must(template.ParseFS(assets, "assets/page.html", "assets/head.html"))
	deniedTmpl = template.Must(template.ParseFS(assets, "assets/denied.html", "assets/head.html"))
)

// ErrNotFound is what Options.Status answers for a customer billing-state
// has not seen; the page then shows the empty state.
var ErrNotFound = errors.New("customer not found")

// Options are what the page needs.
type Options struct {
	Signer *Signer
	Viewer *display.Viewer
	// Status reads a customer's stored status (ErrNotFound when there is
	// none).
	Status func(ctx context.Context, customerID string) (*billingv1.CustomerStatus, error)
	// Changes carries billing.status.<customer> (the Watch stream's feed).
	Changes *nats.Conn
	Logger  *slog.Logger
	// Heartbeat is how often an idle event stream sends a comment, so
	// proxies keep it open (20s).
	Heartbeat time.Duration
	// Portal opens Stripe Customer Portal sessions (nil without
	// STRIPE_API_KEY). The portal leads back to the page itself,
	// PageURL/s/<token>, so ReturnURLs (PORTAL_RETURN_URLS) must allow
	// that; without both the page shows no button for the actions the
	// portal serves (update_payment_method, manage_plan), and none for the
	// others, which no page can do: its detail says what to do.
	Portal     PortalOpener
	ReturnURLs portal.ReturnURLs
	// PageURL is STATUS_PAGE_URL, the public base of the page's links.
	PageURL string
}

// PortalOpener creates Stripe Customer Portal sessions (stripeapi.Client).
type PortalOpener interface {
	CreatePortalSession(ctx context.Context, customer, returnURL string) (string, error)
}

// PortalServes reports whether the billing portal is where action leads.
func PortalServes(action billingv1.DisplayAction) bool {
	return action == billingv1.DisplayAction_DISPLAY_ACTION_UPDATE_PAYMENT_METHOD ||
		action == billingv1.DisplayAction_DISPLAY_ACTION_MANAGE_PLAN
}

// Handler serves the page, its event stream and its assets. Stop, when
// closed, ends every event stream, so a graceful stop does not wait on
// them.
func Handler(o Options, stop <-chan struct{}) http.Handler {
	if o.Heartbeat <= 0 {
		o.Heartbeat = 20 * time.Second
	}
	s := &server{o: o, stop: stop}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /s/{token}", s.page)
	mux.HandleFunc("GET /s/{token}/events", s.events)
	mux.HandleFunc("GET /s/{token}/portal", s.portal)
	mux.HandleFunc("GET /static/status.css", asset("assets/status.css", "text/css; charset=utf-8"))
	mux.HandleFunc("GET /static/status.js", asset("assets/status.js", "text/javascript; charset=utf-8"))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { s.denied(w, r, http.StatusNotFound) })
	return secure(mux)
}

// secure sets what every answer carries: nothing but our own assets may
// load, nothing may frame the page, nothing is cached or referred, and no
// CORS header is ever sent.
func secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "+
			"img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-store")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Cross-Origin-Resource-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

type server struct {
	o    Options
	stop <-chan struct{}
}

// view is the display model as the page and its events carry it.
type view struct {
	Headline    string `json:"headline"`
	Detail      string `json:"detail"`
	Tone        string `json:"tone"`
	Kind        string `json:"kind"`
	Action      string `json:"action"`
	ActionLabel string `json:"action_label"`
	// Href is where the action button leads; no button without it.
	Href string `json:"href"`
}

// viewOf is d as the page of token shows it: the action button only where
// the page can lead, the billing portal.
func (s *server) viewOf(d *billingv1.Display, token string) view {
	v := view{Headline: d.GetHeadline(), Detail: d.GetDetail(), Tone: display.ToneName(d.GetTone()), Kind: d.GetKind()}
	if _, ok := s.portalReturn(token); ok && PortalServes(d.GetAction()) {
		v.Action, v.ActionLabel, v.Href = display.ActionName(d.GetAction()), d.GetActionLabel(), "/s/"+token+"/portal"
	}
	return v
}

// portalReturn is where the portal leads back to from the page of token,
// and whether the page may open the portal at all.
func (s *server) portalReturn(token string) (string, bool) {
	if s.o.Portal == nil || s.o.PageURL == "" {
		return "", false
	}
	u := strings.TrimSuffix(s.o.PageURL, "/") + "/s/" + token
	return u, s.o.ReturnURLs.Allows(u)
}

// locale is the language of Accept-Language, by preference, that a
// catalogue has.
func (s *server) locale(r *http.Request) string {
	type pref struct {
		tag string
		q   float64
	}
	var prefs []pref
	for _, part := range strings.Split(r.Header.Get("Accept-Language"), ",") {
		tag, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		if tag != "" && tag != "*" && q > 0 && len(prefs) < 16 {
			prefs = append(prefs, pref{strings.ToLower(tag), q})
		}
	}
	sort.SliceStable(prefs, func(i, j int) bool { return prefs[i].q > prefs[j].q })
	for _, p := range prefs {
		if c := s.o.Viewer.Catalogues.For(p.tag); strings.HasPrefix(p.tag, c.Locale) {
			return c.Locale
		}
	}
	return display.DefaultLocale
}

// current reads the customer's display in locale.
func (s *server) current(ctx context.Context, id, locale string) (*billingv1.Display, error) {
	st, err := s.o.Status(ctx, id)
	if errors.Is(err, ErrNotFound) {
		st, err = &billingv1.CustomerStatus{CustomerId: id, Status: billingv1.BillingStatus_BILLING_STATUS_NONE}, nil
	}
	if err != nil {
		return nil, err
	}
	if err := s.o.Viewer.Attach(ctx, st, locale); err != nil {
		return nil, err
	}
	return st.GetDisplay(), nil
}

func (s *server) page(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	id, err := s.o.Signer.Verify(token)
	if err != nil {
		s.denied(w, r, http.StatusForbidden)
		return
	}
	loc := s.locale(r)
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	d, err := s.current(ctx, id, loc)
	if err != nil {
		s.unavailable(w, r, id, loc, err)
		return
	}
	c := s.o.Viewer.Catalogues.For(loc)
	v := s.viewOf(d, token)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_ = pageTmpl.Execute(w, struct {
		view
		Lang, Title, Events, OfflineHeadline, OfflineDetail string
	}{view: v, Lang: loc, Title: v.Headline, Events: "/s/" + token + "/events",
		OfflineHeadline: c.Unreachable.Headline, OfflineDetail: c.Unreachable.Headline + ". " + c.Unreachable.Detail})
}

// portal sends the customer to a new Stripe Customer Portal session that
// leads back to this page. It is a link, not a form: opening a portal
// session changes nothing on the account, and the page needs no script or
// form for it, so the CSP keeps form-action 'none'.
func (s *server) portal(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	id, err := s.o.Signer.Verify(token)
	if err != nil {
		s.denied(w, r, http.StatusForbidden)
		return
	}
	back, ok := s.portalReturn(token)
	if !ok {
		s.denied(w, r, http.StatusNotFound)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	u, err := s.o.Portal.CreatePortalSession(ctx, id, back)
	if err != nil {
		s.unavailable(w, r, id, s.locale(r), fmt.Errorf("billing portal: %w", err))
		return
	}
	s.o.Logger.InfoContext(r.Context(), "billing portal session created", "customer_id", id, "action", "portal_session")
	// #nosec G710 -- u is the portal session URL Stripe returned for this customer, not request input.
	http.Redirect(w, r, u, http.StatusSeeOther)
}

// unavailable answers 503 with the catalogue's "server unreachable" words.
func (s *server) unavailable(w http.ResponseWriter, r *http.Request, id, loc string, err error) {
	s.o.Logger.WarnContext(r.Context(), "status page read failed", "customer_id", id, "action", "status_page", "error", bus.Redact(err.Error()))
	c := s.o.Viewer.Catalogues.For(loc)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Retry-After", "5")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = deniedTmpl.Execute(w, struct{ Lang, Title, Detail string }{loc, c.Unreachable.Headline, c.Unreachable.Detail})
}

// denied answers an expired, tampered or unknown link: the words and no data.
func (s *server) denied(w http.ResponseWriter, r *http.Request, code int) {
	loc := s.locale(r)
	c := s.o.Viewer.Catalogues.For(loc)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_ = deniedTmpl.Execute(w, struct{ Lang, Title, Detail string }{loc, c.LinkInvalid.Headline, c.LinkInvalid.Detail})
}

// events streams the display whenever the customer's status changes:
// first the current one, then one per change, until the link expires,
// the client goes or the server stops.
func (s *server) events(w http.ResponseWriter, r *http.Request) {
	token := r.PathValue("token")
	id, err := s.o.Signer.Verify(token)
	if err != nil || s.o.Changes == nil {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	subject, err := bus.CheckedStatusSubject(id)
	if err != nil {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	fl, ok := w.(http.Flusher)
	if !ok {
		http.Error(w, "streaming unsupported", http.StatusInternalServerError)
		return
	}
	ch := make(chan *nats.Msg, 16)
	sub, err := s.o.Changes.ChanSubscribe(subject, ch)
	if err != nil {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	defer func() { _ = sub.Unsubscribe() }()
	ctx := r.Context()
	fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = s.o.Changes.FlushWithContext(fctx)
	cancel()
	if err != nil {
		http.Error(w, "unavailable", http.StatusServiceUnavailable)
		return
	}
	loc := s.locale(r)
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	last := ""
	send := func() bool {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		d, err := s.current(rctx, id, loc)
		cancel()
		if err != nil {
			return ctx.Err() == nil // keep the stream; the next change retries
		}
		b, _ := json.Marshal(s.viewOf(d, token))
		if string(b) == last {
			return true
		}
		last = string(b)
		if _, err := fmt.Fprintf(w, "event: status\ndata: %s\n\n", b); err != nil {
			return false
		}
		fl.Flush()
		return true
	}
	if !send() {
		return
	}
	beat := time.NewTicker(s.o.Heartbeat)
	defer beat.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.stop:
			return
		case <-ch:
			// Changes come in bursts; the latest stored status is what counts.
			for len(ch) > 0 {
				<-ch
			}
			if !send() {
				return
			}
		case <-beat.C:
			if _, err := s.o.Signer.Verify(token); err != nil {
				return // the link expired while open
			}
			if _, err := fmt.Fprint(w, ": keepalive\n\n"); err != nil {
				return
			}
			fl.Flush()
		}
	}
}

func asset(name, contentType string) http.HandlerFunc {
	body, err := assets.ReadFile(name)
	return func(w http.ResponseWriter, _ *http.Request) {
		if err != nil {
			http.Error(w, "missing", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(body)
	}
}
