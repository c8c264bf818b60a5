package auth

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OIDCConfig is the production sign-in: an OpenID Connect provider whose
// users in AllowedDomain sign in with the role their groups map to.
type OIDCConfig struct {
	// Issuer is CONSOLE_OIDC_ISSUER; empty turns OIDC sign-in off.
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL is where the provider sends the browser back:
	// <console>/login/oidc/callback, registered with the provider.
	RedirectURL string
	// AllowedDomain is CONSOLE_OIDC_ALLOWED_DOMAIN: only verified emails
	// @AllowedDomain sign in.
	AllowedDomain string
	// RoleMap maps a group of the ID token's groups claim to a role.
	RoleMap map[string]Role
}

// Enabled reports whether OIDC sign-in is configured.
func (c OIDCConfig) Enabled() bool { return c.Issuer != "" }

// ParseRoleMap reads CONSOLE_OIDC_ROLE_MAP: "group=role,group=role".
func ParseRoleMap(s string) (map[string]Role, error) {
	out := map[string]Role{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		group, role, ok := strings.Cut(part, "=")
		group = strings.TrimSpace(group)
		if !ok || group == "" {
			return nil, fmt.Errorf("role map entry %q: want group=role", part)
		}
		r, err := ParseRole(role)
		if err != nil {
			return nil, fmt.Errorf("role map entry %q: %w", part, err)
		}
		out[group] = r
	}
	if len(out) == 0 {
		return nil, errors.New("role map is empty: no group could sign in")
	}
	return out, nil
}

// RoleFor is the highest role any of groups maps to; false when none is
// mapped.
func (c OIDCConfig) RoleFor(groups []string) (Role, bool) {
	best, found := Role(""), false
	for _, g := range groups {
		r, ok := c.RoleMap[g]
		if ok && (!found || r.rank() > best.rank()) {
			best, found = r, true
		}
	}
	return best, found
}

// Why an OIDC sign-in is refused; each is an audit outcome.
var (
	ErrOIDCExchange     = errors.New("code_exchange_failed")
	ErrOIDCToken        = errors.New("invalid_id_token")
	ErrOIDCNonce        = errors.New("bad_nonce")
	ErrOIDCEmail        = errors.New("email_not_verified")
	ErrOIDCDomain       = errors.New("domain_not_allowed")
	ErrOIDCUnmapped     = errors.New("unmapped_group")
	ErrOIDCProviderDown = errors.New("provider_unreachable")
)

// OIDC runs the authorization code flow with PKCE, state and nonce.
type OIDC struct {
	cfg    OIDCConfig
	client *http.Client

	mu       sync.Mutex
	provider *oidc.Provider
}

// NewOIDC returns the flow for cfg. client (nil: http.DefaultClient)
// reaches the provider. The provider's discovery document is read at the
// first sign-in and kept, so the console starts while the provider is
// away.
func NewOIDC(cfg OIDCConfig, client *http.Client) *OIDC {
	if client == nil {
		client = http.DefaultClient
	}
	return &OIDC{cfg: cfg, client: client}
}

// Config is the flow's configuration.
func (o *OIDC) Config() OIDCConfig { return o.cfg }

func (o *OIDC) discover(ctx context.Context) (*oidc.Provider, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.provider, nil
	}
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, o.client), o.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: discover %s: %w", ErrOIDCProviderDown, o.cfg.Issuer, err)
	}
	o.provider = p
	return p, nil
}

func (o *OIDC) oauth(p *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{
		ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret, RedirectURL: o.cfg.RedirectURL,
		Endpoint: p.Endpoint(), Scopes: []string{oidc.ScopeOpenID, "email", "profile", "groups"},
	}
}

// Start is one sign-in attempt's secrets, kept in the browser's short
// cookie until the provider sends it back.
type Start struct {
	State, Nonce, Verifier string
}

// AuthURL is where to send the browser for st: the provider's sign-in
// with st's state, nonce and PKCE challenge (S256).
func (o *OIDC) AuthURL(ctx context.Context, st Start) (string, error) {
	p, err := o.discover(ctx)
	if err != nil {
		return "", err
	}
	return o.oauth(p).AuthCodeURL(st.State, oidc.Nonce(st.Nonce), oauth2.S256ChallengeOption(st.Verifier)), nil
}

// Identity is who a good sign-in is.
type Identity struct {
	Email   string
	Subject string
	Groups  []string
	Role    Role
}

// Finish exchanges code (the state already checked against st) for an ID
// token and checks it: signature, issuer, audience and expiry, then st's
// nonce, a verified email in the allowed domain and a mapped group. A
// refusal wraps one of the ErrOIDC errors; the Identity returned with it
// holds what was learnt, for the audit row.
func (o *OIDC) Finish(ctx context.Context, st Start, code string) (Identity, error) {
	p, err := o.discover(ctx)
	if err != nil {
		return Identity{}, err
	}
	ctx = oidc.ClientContext(ctx, o.client)
	tok, err := o.oauth(p).Exchange(ctx, code, oauth2.VerifierOption(st.Verifier))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrOIDCExchange, err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return Identity{}, fmt.Errorf("%w: the token response has no id_token", ErrOIDCToken)
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: o.cfg.ClientID}).Verify(ctx, raw)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: %w", ErrOIDCToken, err)
	}
	var claims struct {
		Email         string   `json:"email"`
		EmailVerified *bool    `json:"email_verified"`
		Groups        []string `json:"groups"`
	}
	if err := idt.Claims(&claims); err != nil {
		return Identity{}, fmt.Errorf("%w: claims: %w", ErrOIDCToken, err)
	}
	id := Identity{Email: strings.TrimSpace(claims.Email), Subject: idt.Subject, Groups: claims.Groups}
	if idt.Nonce == "" || !sameString(idt.Nonce, st.Nonce) {
		return id, fmt.Errorf("%w: the ID token's nonce is not this sign-in's", ErrOIDCNonce)
	}
	if id.Email == "" || (claims.EmailVerified != nil && !*claims.EmailVerified) {
		return id, fmt.Errorf("%w: %q", ErrOIDCEmail, id.Email)
	}
	_, domain, _ := strings.Cut(id.Email, "@")
	if o.cfg.AllowedDomain == "" || !strings.EqualFold(domain, o.cfg.AllowedDomain) {
		return id, fmt.Errorf("%w: %q", ErrOIDCDomain, domain)
	}
	role, ok := o.cfg.RoleFor(id.Groups)
	if !ok {
		return id, fmt.Errorf("%w: none of %v", ErrOIDCUnmapped, slices.Clip(id.Groups))
	}
	id.Role = role
	return id, nil
}

// Outcome is the audit outcome of a refusal from Finish or AuthURL.
func Outcome(err error) string {
	for _, e := range []error{ErrOIDCExchange, ErrOIDCToken, ErrOIDCNonce, ErrOIDCEmail, ErrOIDCDomain, ErrOIDCUnmapped, ErrOIDCProviderDown} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "error"
}

func sameString(a, b string) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}
