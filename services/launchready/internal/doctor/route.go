package doctor

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/services/launchready/internal/send"
)

// slowAnswer is when a webhook answer is slow enough to warn: Stripe waits
// some seconds, then counts a timeout as a failed delivery.
const slowAnswer = 2 * time.Second

// ProbeEvent builds a signed-ready probe event: a Stripe-shaped envelope
// whose type and object no consumer routes, in the deployment's mode.
func ProbeEvent(livemode bool, now time.Time) (id string, body []byte, err error) {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	id = canonical.ProbeIDPrefix + hex.EncodeToString(b)
	body, err = json.Marshal(map[string]any{
		"id":          id,
		"object":      "event",
		"type":        canonical.ProbeEventType,
		"api_version": "2023-10-16",
		"created":     now.Unix(),
		"livemode":    livemode,
		"data": map[string]any{"object": map[string]any{
			"id":     "lrprobe_" + hex.EncodeToString(b),
			"object": canonical.ProbeObject,
			"note":   "launchready doctor: a test of the webhook route; every consumer ignores it",
		}},
	})
	return id, body, err
}

// checkPublicRoute posts a signed probe to PUBLIC_WEBHOOK_URL through its
// real DNS, TLS and proxies, as Stripe would, and reads the answer.
func (d *Doctor) checkPublicRoute(ctx context.Context) ([]Check, error) {
	public := d.env.Lookup("PUBLIC_WEBHOOK_URL")
	if public == "" {
		return nil, skip("PUBLIC_WEBHOOK_URL is not set")
	}
	secrets := d.env.List("STRIPE_WEBHOOK_SECRET")
	if len(secrets) == 0 {
		return nil, skip("STRIPE_WEBHOOK_SECRET is not set: no probe can be signed")
	}
	const name = "public-route"
	id, body, err := ProbeEvent(d.env.Lookup("STRIPE_LIVEMODE") == "live", d.Now())
	if err != nil {
		return nil, err
	}
	start := time.Now()
	code, answer, hdr, err := send.Post(ctx, d.HTTP, public, body, secrets[0], d.Now())
	took := time.Since(start).Round(time.Millisecond)
	if err != nil {
		return []Check{fail(name, fmt.Sprintf("POST %s: %v", public, oneLine(err.Error())),
			"make the URL reachable from the internet: DNS, TLS, firewall and proxy in front of ingress")}, nil
	}
	switch {
	case code >= 300 && code < 400:
		return []Check{fail(name, fmt.Sprintf("answered %d, redirecting to %s: Stripe does not follow redirects", code, hdr.Get("Location")),
			"set the endpoint and PUBLIC_WEBHOOK_URL to the final URL (scheme, host and trailing slash included)")}, nil
	case code == http.StatusBadRequest:
		return []Check{fail(name, fmt.Sprintf("answered 400 to a probe signed with the first STRIPE_WEBHOOK_SECRET: %s", clip(oneLine(string(answer)), 200)),
			"the deployment's secret differs from the one here, or a proxy parses or rewrites the body: use the endpoint's signing secret on both sides and pass the body through untouched")}, nil
	case code < 200 || code >= 300:
		return []Check{fail(name, fmt.Sprintf("answered %d: %s", code, clip(oneLine(string(answer)), 200)),
			"Stripe retries any non-2xx for 3 days, then disables the endpoint: fix what the answer names")}, nil
	case took > slowAnswer:
		return []Check{warn(name, fmt.Sprintf("probe %s accepted, but the answer took %s", id, took),
			"look for a slow proxy or an overloaded ingress: Stripe counts slow answers as failures")}, nil
	}
	return []Check{pass(name, fmt.Sprintf("probe %s accepted with %d in %s", id, code, took))}, nil
}

// checkPublicTLS reads the certificate the public webhook host serves: the
// chain must verify for the name, and it must not be close to expiry.
func (d *Doctor) checkPublicTLS(ctx context.Context) ([]Check, error) {
	public := d.env.Lookup("PUBLIC_WEBHOOK_URL")
	if public == "" {
		return nil, skip("PUBLIC_WEBHOOK_URL is not set")
	}
	u, err := url.Parse(public)
	if err != nil {
		return []Check{fail("tls", fmt.Sprintf("PUBLIC_WEBHOOK_URL %q: %v", public, err), "set a full https:// URL")}, nil
	}
	if u.Scheme != "https" {
		return []Check{fail("tls", public+" is not https: Stripe sends live events only to https endpoints", "serve the webhook route over TLS")}, nil
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), "443")
	}
	return []Check{d.certCheck(ctx, "tls "+u.Hostname(), host, u.Hostname())}, nil
}

// certCheck dials addr with TLS, verifies the chain for serverName against
// the system roots (or DOCTOR_CA_FILE's), and grades the time to expiry:
// under 7 days fails, under 21 warns.
func (d *Doctor) certCheck(ctx context.Context, name, addr, serverName string) Check {
	roots, err := d.roots()
	if err != nil {
		return fail(name, err.Error(), "fix DOCTOR_CA_FILE")
	}
	dialer := &tls.Dialer{Config: &tls.Config{ServerName: serverName, RootCAs: roots, MinVersion: tls.VersionTLS12}}
	conn, err := dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		var verr *tls.CertificateVerificationError
		if errors.As(err, &verr) {
			return fail(name, "the certificate does not verify for "+serverName+": "+oneLine(verr.Err.Error()),
				"serve a certificate for this name from a public CA, with its intermediate certificates")
		}
		return fail(name, fmt.Sprintf("TLS to %s: %v", addr, oneLine(err.Error())), "make the host answer TLS on that port")
	}
	defer conn.Close()
	certs := conn.(*tls.Conn).ConnectionState().PeerCertificates
	leaf := certs[0]
	left := leaf.NotAfter.Sub(d.Now())
	days := int(left.Hours() / 24)
	detail := fmt.Sprintf("valid for %s, expires %s (%d days)", serverName, leaf.NotAfter.UTC().Format(time.DateOnly), days)
	switch {
	case left < 7*24*time.Hour:
		return fail(name, detail, "renew the certificate now (and automate renewal)")
	case left < 21*24*time.Hour:
		return warn(name, detail, "renew the certificate; renewal should run well before 21 days")
	}
	return pass(name, detail)
}

// roots are the system's CAs, plus DOCTOR_CA_FILE's (a private CA).
func (d *Doctor) roots() (*x509.CertPool, error) {
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	file := d.env.Lookup("DOCTOR_CA_FILE")
	if file == "" {
		return pool, nil
	}
	pem, err := os.ReadFile(file) // #nosec G304 -- the operator names the CA file in DOCTOR_CA_FILE
	if err != nil {
		return nil, fmt.Errorf("DOCTOR_CA_FILE: %v", err)
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("DOCTOR_CA_FILE %s holds no PEM certificate", file)
	}
	return pool, nil
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
