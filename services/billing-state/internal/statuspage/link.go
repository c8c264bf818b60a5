// Package statuspage serves the hosted status page: one customer's
// display model on a public listener (STATUS_PAGE_ADDR), reached through a
// signed, expiring link (CreateStatusLink), updated live by server-sent
// events from the customer's status changes. The page carries no secret,
// no other customer's data and no third-party script, cannot be framed,
// and is never cached.
package statuspage

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// MinSecretBytes is the shortest STATUS_LINK_SECRETS entry accepted.
const MinSecretBytes = 32

// DefaultMaxTTL is STATUS_LINK_MAX_TTL's default.
const DefaultMaxTTL = 24 * time.Hour

// ErrBadLink is any link that must not show data: malformed, tampered,
// signed with no current secret, or expired.
var ErrBadLink = errors.New("status link not valid")

// Signer signs and checks status links with a rotatable list of secrets:
// the first signs, every one is accepted, so a new secret is put first,
// and the old one dropped once the links it signed have expired.
type Signer struct {
	secrets [][]byte
	maxTTL  time.Duration
	now     func() time.Time
}

// ParseSecrets reads STATUS_LINK_SECRETS: a comma list, newest first, each
// at least MinSecretBytes long. The error never names a secret.
func ParseSecrets(list string) ([][]byte, error) {
	var out [][]byte
	for i, s := range strings.Split(list, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if len(s) < MinSecretBytes {
			return nil, fmt.Errorf("STATUS_LINK_SECRETS: entry %d is shorter than %d characters", i+1, MinSecretBytes)
		}
		out = append(out, []byte(s))
	}
	return out, nil
}

// NewSigner returns a signer; maxTTL <= 0 means DefaultMaxTTL and a nil
// now the real clock.
func NewSigner(secrets [][]byte, maxTTL time.Duration, now func() time.Time) *Signer {
	if maxTTL <= 0 {
		maxTTL = DefaultMaxTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Signer{secrets: secrets, maxTTL: maxTTL, now: now}
}

// Configured reports whether there is a secret to sign with.
func (s *Signer) Configured() bool { return s != nil && len(s.secrets) > 0 }

// Sign returns the token of a link to customerID's page that works for
// ttl (0 or more than the maximum: the maximum), and when it expires.
func (s *Signer) Sign(customerID string, ttl time.Duration) (string, time.Time) {
	if ttl <= 0 || ttl > s.maxTTL {
		ttl = s.maxTTL
	}
	exp := s.now().Add(ttl).Truncate(time.Second)
	payload := customerID + "." + strconv.FormatInt(exp.Unix(), 10)
	return payload + "." + mac(s.secrets[0], payload), exp
}

// Verify returns the customer a token names, or ErrBadLink.
func (s *Signer) Verify(token string) (string, error) {
	i := strings.LastIndexByte(token, '.')
	if i <= 0 || len(token) > 512 {
		return "", ErrBadLink
	}
	payload, sig := token[:i], token[i+1:]
	ok := false
	for _, k := range s.secrets {
		// hmac.Equal compares in constant time; a truncated signature
		// has another length and fails.
		if hmac.Equal([]byte(sig), []byte(mac(k, payload))) {
			ok = true
		}
	}
	if !ok {
		return "", ErrBadLink
	}
	j := strings.LastIndexByte(payload, '.')
	if j <= 0 {
		return "", ErrBadLink
	}
	exp, err := strconv.ParseInt(payload[j+1:], 10, 64)
	if err != nil || !s.now().Before(time.Unix(exp, 0)) {
		return "", ErrBadLink
	}
	return payload[:j], nil
}

func mac(key []byte, payload string) string {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("launchready status link v1\x00" + payload))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}
