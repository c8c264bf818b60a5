package web

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/store"
)

// oidcTTL bounds how long a sign-in may stay at the provider.
const oidcTTL = 10 * time.Minute

// The OIDC flight cookie is SameSite=Lax, not Strict: the provider sends
// the browser back with a cross-site top-level GET, which Lax lets through.
func (s *Server) oidcCookie() string {
	if s.opts.SecureCookies {
		return "__Host-lr_console_oidc"
	}
	return "lr_console_oidc"
}

// oidcStart sends the browser to the provider with a fresh state, nonce
// and PKCE verifier, kept in a short HttpOnly cookie for the way back.
func (s *Server) oidcStart(w http.ResponseWriter, r *http.Request) {
	var st auth.Start
	for _, v := range []*string{&st.State, &st.Nonce, &st.Verifier} {
		t, err := randomToken(32)
		if err != nil {
			s.failed(w, r, nil, "start the sign-in", err)
			return
		}
		*v = t
	}
	to, err := s.opts.OIDC.AuthURL(r.Context(), st)
	if err != nil {
		s.audit(r.Context(), store.AuditEntry{Actor: "unknown", Action: "sign_in", Outcome: auth.Outcome(err), Target: "oidc", RemoteAddr: clientIP(r)})
		s.opts.Log.WarnContext(r.Context(), "oidc sign-in", "outcome", auth.Outcome(err), "error", err)
		s.showLogin(w, r, http.StatusBadGateway, "", "The identity provider cannot be reached. Try again shortly.")
		return
	}
	next := base64.RawURLEncoding.EncodeToString([]byte(localPath(r.URL.Query().Get("next"))))
	s.setCookie(w, s.oidcCookie(), strings.Join([]string{st.State, st.Nonce, st.Verifier, next}, "."), oidcTTL, http.SameSiteLaxMode)
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// oidcCallback finishes the sign-in the provider sends back: the state
// must be this browser's, the ID token valid for this client with this
// sign-in's nonce, the email verified in the allowed domain and a group
// mapped to a role. Every refusal is audited.
func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	s.setCookie(w, s.oidcCookie(), "", -1, http.SameSiteLaxMode)
	refuse := func(actor, outcome string, after map[string]any, err error) {
		if actor == "" {
			actor = "unknown"
		}
		s.audit(ctx, store.AuditEntry{Actor: actor, Action: "sign_in", Outcome: outcome, Target: "oidc", RemoteAddr: clientIP(r), After: jsonOf(after)})
		s.opts.Log.WarnContext(ctx, "oidc sign-in refused", "actor", actor, "outcome", outcome, "error", err)
		s.showLogin(w, r, http.StatusUnauthorized, "", "Your identity provider's sign-in was not accepted here. Ask an owner if you should have access.")
	}
	c, err := r.Cookie(s.oidcCookie())
	parts := []string{}
	if err == nil {
		parts = strings.Split(c.Value, ".")
	}
	if len(parts) != 4 {
		refuse("", "no_sign_in_started", nil, err)
		return
	}
	st := auth.Start{State: parts[0], Nonce: parts[1], Verifier: parts[2]}
	next := "/"
	if b, err := base64.RawURLEncoding.DecodeString(parts[3]); err == nil {
		next = localPath(string(b))
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		refuse("", "provider_error", map[string]any{"error": truncateString(e, 64)}, errors.New(e))
		return
	}
	if !sameToken(q.Get("state"), st.State) {
		refuse("", "wrong_state", nil, errors.New("the state is not this browser's"))
		return
	}
	id, err := s.opts.OIDC.Finish(ctx, st, q.Get("code"))
	if err != nil {
		refuse(id.Email, auth.Outcome(err), map[string]any{"groups": id.Groups, "subject": id.Subject}, err)
		return
	}
	staff, err := store.UpsertOIDCStaff(ctx, s.opts.Pool, id.Email, string(id.Role))
	if errors.Is(err, store.ErrStaffExists) {
		refuse(id.Email, "local_account", map[string]any{"groups": id.Groups}, err)
		return
	}
	if err != nil {
		s.failed(w, r, nil, "sign you in", err)
		return
	}
	if staff.Disabled {
		refuse(id.Email, "disabled", nil, errors.New("account disabled"))
		return
	}
	if err := s.startSession(w, r, staff, "oidc"); err != nil {
		s.failed(w, r, nil, "sign you in", err)
		return
	}
	http.Redirect(w, r, next, http.StatusSeeOther) // #nosec G710 -- localPath keeps only a path on this host
}

func truncateString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
