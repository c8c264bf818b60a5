package web

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/store"
)

// loginTTL bounds how long a sign-in form stays usable.
const loginTTL = 30 * time.Minute

// loginPage shows the sign-in form with a token of its own: a form that
// does not come from this page (login CSRF) is refused.
func (s *Server) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.signedIn(w, r); ok {
		http.Redirect(w, r, localPath(r.URL.Query().Get("next")), http.StatusSeeOther) // #nosec G710 -- localPath keeps only a path on this host
		return
	}
	s.showLogin(w, r, http.StatusOK, "", "")
}

func (s *Server) showLogin(w http.ResponseWriter, r *http.Request, status int, email, message string) {
	token, err := randomToken(24)
	if err != nil {
		s.failed(w, r, nil, "show the sign-in page", err)
		return
	}
	s.setCookie(w, s.loginCookie(), token, loginTTL, http.SameSiteStrictMode)
	s.render(w, r, status, "login", nil, map[string]any{"Title": "Sign in", "LoginToken": token, "Email": email,
		"Next": localPath(r.FormValue("next")), "Message": message, "Local": true,
		"OIDC": s.opts.OIDC != nil})
}

// login checks a local account's password. Every outcome is audited; the
// answer to a wrong password, an unknown email and a disabled account is
// the same, and costs the same time.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	c, err := r.Cookie(s.loginCookie())
	if err != nil || !sameToken(r.PostForm.Get("login_token"), c.Value) {
		s.showLogin(w, r, http.StatusForbidden, "", "The sign-in form expired. Try again.")
		return
	}
	email := strings.TrimSpace(r.PostForm.Get("email"))
	password := r.PostForm.Get("password")
	if email == "" || password == "" || len(email) > 320 {
		s.showLogin(w, r, http.StatusUnauthorized, email, "Enter your email and password.")
		return
	}
	ctx := r.Context()
	now := s.opts.Now()
	fail := func(status int, outcome, message string) {
		s.audit(ctx, store.AuditEntry{Actor: email, Action: "sign_in", Outcome: outcome, Target: "password", RemoteAddr: clientIP(r)})
		s.showLogin(w, r, status, email, message)
	}
	const wrong = "That email and password do not match an account."
	st, err := store.StaffByEmail(ctx, s.opts.Pool, email)
	switch {
	case errors.Is(err, store.ErrNotFound):
		auth.DummyVerify(password)
		fail(http.StatusUnauthorized, "unknown_email", wrong)
		return
	case err != nil:
		s.failed(w, r, nil, "sign you in", err)
		return
	}
	if st.Source != store.SourceLocal || st.PasswordHash == "" || st.Disabled {
		auth.DummyVerify(password)
		fail(http.StatusUnauthorized, "not_a_local_account", wrong)
		return
	}
	if now.Before(st.LockedUntil) {
		fail(http.StatusTooManyRequests, "locked",
			fmt.Sprintf("This account is locked after repeated failed sign-ins. Try again after %s.", st.LockedUntil.UTC().Format("15:04 UTC")))
		return
	}
	if now.Before(st.NextAttemptAt) {
		wait := st.NextAttemptAt.Sub(now).Round(time.Second)
		fail(http.StatusTooManyRequests, "throttled", fmt.Sprintf("Too many failed sign-ins. Wait %s before trying again.", max(wait, time.Second)))
		return
	}
	if !auth.VerifyPassword(st.PasswordHash, password) {
		err := pg.InTx(ctx, s.opts.Pool, func(tx *pg.Tx) error {
			n, err := store.CountFailedLogin(ctx, tx, st.ID)
			if err != nil {
				return err
			}
			next, locked := s.opts.Throttle.After(n, now)
			if err := store.HoldLogins(ctx, tx, st.ID, next, locked); err != nil {
				return err
			}
			return store.Audit(ctx, tx, store.AuditEntry{Actor: st.Email, Action: "sign_in", Outcome: "wrong_password", Target: "password",
				RemoteAddr: clientIP(r), After: jsonOf(map[string]any{"failed_sign_ins": n})})
		})
		if err != nil {
			s.failed(w, r, nil, "sign you in", err)
			return
		}
		s.showLogin(w, r, http.StatusUnauthorized, email, wrong)
		return
	}
	if err := s.startSession(w, r, st, "password"); err != nil {
		s.failed(w, r, nil, "sign you in", err)
		return
	}
	s.setCookie(w, s.loginCookie(), "", -1, http.SameSiteStrictMode)
	if st.MustChangePassword {
		http.Redirect(w, r, "/password", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, localPath(r.PostForm.Get("next")), http.StatusSeeOther) // #nosec G710 -- localPath keeps only a path on this host
}

func (s *Server) passwordPage(w http.ResponseWriter, r *http.Request, q *request) {
	s.render(w, r, http.StatusOK, "password", q, map[string]any{"Title": "Change password",
		"Forced": q.Staff().MustChangePassword, "Local": q.Staff().Source == store.SourceLocal, "Min": auth.MinPasswordLength})
}

// changePassword sets a new password after checking the current one, and
// ends every other session of the account.
func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, q *request) {
	st := q.Staff()
	show := func(status int, msg string) {
		s.render(w, r, status, "password", q, map[string]any{"Title": "Change password", "Forced": st.MustChangePassword,
			"Local": st.Source == store.SourceLocal, "Min": auth.MinPasswordLength, "Message": msg})
	}
	if st.Source != store.SourceLocal {
		show(http.StatusBadRequest, "This account signs in through your identity provider; change the password there.")
		return
	}
	current, next := r.PostForm.Get("current"), r.PostForm.Get("new")
	if !auth.VerifyPassword(st.PasswordHash, current) {
		s.audit(r.Context(), store.AuditEntry{Actor: st.Email, Action: "password_change", Outcome: "wrong_password", RemoteAddr: clientIP(r)})
		show(http.StatusUnauthorized, "The current password is wrong.")
		return
	}
	if next != r.PostForm.Get("confirm") {
		show(http.StatusBadRequest, "The two new passwords differ.")
		return
	}
	if err := auth.CheckPasswordRules(next); err != nil {
		show(http.StatusBadRequest, "A password needs "+fmt.Sprint(auth.MinPasswordLength)+" characters or more.")
		return
	}
	if next == current {
		show(http.StatusBadRequest, "Choose a password other than the current one.")
		return
	}
	hash, err := auth.HashPassword(next)
	if err != nil {
		s.failed(w, r, q, "change the password", err)
		return
	}
	ctx := r.Context()
	err = pg.InTx(ctx, s.opts.Pool, func(tx *pg.Tx) error {
		if err := store.SetPassword(ctx, tx, st.ID, hash, false); err != nil {
			return err
		}
		if _, err := store.DeleteOtherSessions(ctx, tx, st.ID, q.Session.TokenHash); err != nil {
			return err
		}
		return store.Audit(ctx, tx, store.AuditEntry{Actor: st.Email, Action: "password_change", Outcome: "ok", RemoteAddr: clientIP(r),
			Before: jsonOf(map[string]any{"must_change_password": st.MustChangePassword}), After: jsonOf(map[string]any{"must_change_password": false})})
	})
	if err != nil {
		s.failed(w, r, q, "change the password", err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, q *request) {
	ctx := r.Context()
	err := pg.InTx(ctx, s.opts.Pool, func(tx *pg.Tx) error {
		if err := store.DeleteSession(ctx, tx, q.Session.TokenHash); err != nil {
			return err
		}
		return store.Audit(ctx, tx, store.AuditEntry{Actor: q.Staff().Email, Action: "sign_out", Outcome: "ok", RemoteAddr: clientIP(r)})
	})
	if err != nil {
		s.failed(w, r, q, "sign you out", err)
		return
	}
	s.setCookie(w, s.sessionCookie(), "", -1, http.SameSiteLaxMode)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// logoutEverywhere ends every session of the account, this one included.
func (s *Server) logoutEverywhere(w http.ResponseWriter, r *http.Request, q *request) {
	ctx := r.Context()
	err := pg.InTx(ctx, s.opts.Pool, func(tx *pg.Tx) error {
		n, err := store.DeleteStaffSessions(ctx, tx, q.Staff().ID)
		if err != nil {
			return err
		}
		return store.Audit(ctx, tx, store.AuditEntry{Actor: q.Staff().Email, Action: "sign_out_everywhere", Outcome: "ok", RemoteAddr: clientIP(r),
			After: jsonOf(map[string]any{"sessions_ended": n})})
	})
	if err != nil {
		s.failed(w, r, q, "sign you out", err)
		return
	}
	s.setCookie(w, s.sessionCookie(), "", -1, http.SameSiteLaxMode)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
