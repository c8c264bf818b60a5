package stripeevent

import (
	"crypto/hmac"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"
)

// Errors returned by ParseSignature and Verify. They never carry a secret
// or a signature.
var (
	ErrNoSignature     = errors.New("stripe signature: missing")
	ErrMalformedHeader = errors.New("stripe signature: malformed header")
	ErrBadSignature    = errors.New("stripe signature: no signature matches")
	ErrStaleTimestamp  = errors.New("stripe signature: timestamp older than tolerance")
	ErrFutureTimestamp = errors.New("stripe signature: timestamp too far in the future")
)

// DefaultTolerance is used when Verify is given a tolerance <= 0.
const DefaultTolerance = webhook.DefaultTolerance

// signatureScheme is the only scheme Stripe signs live webhooks with; v0 is
// test-only and is ignored like any other unknown key.
const signatureScheme = "v1"

// sha256Size is the length of a v1 signature; anything else cannot match.
const sha256Size = 32

// MaxSignatureHeaderLen bounds the Stripe-Signature header. Stripe sends a
// timestamp and one v1 signature per active secret (two while a secret is
// rolled), plus a v0 in test mode: under 250 bytes. The bound keeps parsing
// cheap on a header a stranger chose.
const MaxSignatureHeaderLen = 1024

// Signature is a parsed Stripe-Signature header: its timestamp and the v1
// signatures it carries. The zero value verifies nothing.
type Signature struct {
	timestamp  int64
	signatures [][sha256Size]byte
	// skipped counts v1 values that were not 64 hex digits.
	skipped int
}

// Timestamp is the header's t, in Unix seconds.
func (s Signature) Timestamp() int64 { return s.timestamp }

// ParseSignature checks a Stripe-Signature header for presence and shape,
// "t=1492774577,v1=5257a8...,v1=...,v0=...", without looking at any body:
// a caller can refuse a request before reading it. The header must be at
// most MaxSignatureHeaderLen bytes, carry exactly one t of decimal digits
// and at least one v1 of 64 hex digits. Unknown keys are ignored so Stripe
// can add schemes; a further v1 value that is not a SHA-256 in hex is
// skipped, as stripe-go does, because it simply cannot match.
func ParseSignature(header string) (Signature, error) {
	var h Signature
	if strings.TrimSpace(header) == "" {
		return h, ErrNoSignature
	}
	if len(header) > MaxSignatureHeaderLen {
		return h, fmt.Errorf("%w: longer than %d bytes", ErrMalformedHeader, MaxSignatureHeaderLen)
	}
	seenT := false
	for pair := range strings.SplitSeq(header, ",") {
		key, value, ok := strings.Cut(pair, "=")
		if !ok {
			return Signature{}, fmt.Errorf("%w: element without '='", ErrMalformedHeader)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch key {
		case "t":
			if seenT {
				return Signature{}, fmt.Errorf("%w: more than one timestamp", ErrMalformedHeader)
			}
			if !allDigits(value) {
				return Signature{}, fmt.Errorf("%w: timestamp is not decimal digits", ErrMalformedHeader)
			}
			ts, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				return Signature{}, fmt.Errorf("%w: timestamp out of range", ErrMalformedHeader)
			}
			h.timestamp, seenT = ts, true
		case signatureScheme:
			var sig [sha256Size]byte
			if len(value) != hex.EncodedLen(sha256Size) {
				h.skipped++
				continue
			}
			if _, err := hex.Decode(sig[:], []byte(value)); err != nil {
				h.skipped++
				continue
			}
			h.signatures = append(h.signatures, sig)
		}
	}
	switch {
	case !seenT:
		return Signature{}, fmt.Errorf("%w: no timestamp", ErrMalformedHeader)
	case len(h.signatures) == 0 && h.skipped == 0:
		return Signature{}, fmt.Errorf("%w: no %s signature in header", ErrNoSignature, signatureScheme)
	case len(h.signatures) == 0:
		return Signature{}, fmt.Errorf("%w: no %s value is 64 hex digits", ErrMalformedHeader, signatureScheme)
	}
	return h, nil
}

func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// CheckTimestamp reports whether the header was signed within tolerance of
// now, in both directions: stripe-go only rejects old timestamps and
// measures age with time.Since, so the clock check is done here, against
// the caller's now. It needs no body, so a replayed or skewed header can be
// refused before the body is read.
func (s Signature) CheckTimestamp(tolerance time.Duration, now time.Time) error {
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	signedAt := time.Unix(s.timestamp, 0)
	if now.Sub(signedAt) > tolerance {
		return fmt.Errorf("%w: signed at %d, now %d, tolerance %s", ErrStaleTimestamp, s.timestamp, now.Unix(), tolerance)
	}
	if signedAt.Sub(now) > tolerance {
		return fmt.Errorf("%w: signed at %d, now %d, tolerance %s", ErrFutureTimestamp, s.timestamp, now.Unix(), tolerance)
	}
	return nil
}

// Verify checks the signatures against payload.
//
// Every secret is tried, so an endpoint can accept both the old and the new
// secret while one is being rolled, and every v1 signature in the header is
// tried, because Stripe sends one per active secret during its own rolls.
// The timestamp is checked first (CheckTimestamp), before any HMAC is
// computed. The HMAC itself is stripe-go's webhook.ComputeSignature,
// compared in constant time. Empty secrets are skipped: an empty HMAC key
// is a key anyone can use.
func (s Signature) Verify(payload []byte, secrets []string, tolerance time.Duration, now time.Time) error {
	if err := s.CheckTimestamp(tolerance, now); err != nil {
		return err
	}
	signedAt := time.Unix(s.timestamp, 0)
	tried := 0
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		tried++
		expected := webhook.ComputeSignature(signedAt, payload, secret)
		for i := range s.signatures {
			if hmac.Equal(expected, s.signatures[i][:]) {
				return nil
			}
		}
	}
	if tried == 0 {
		return fmt.Errorf("%w: no signing secret configured", ErrBadSignature)
	}
	return fmt.Errorf("%w: %d signature(s) checked against %d secret(s)", ErrBadSignature, len(s.signatures)+s.skipped, tried)
}

// Verify parses a Stripe-Signature header (ParseSignature) and checks it
// against payload (Signature.Verify).
func Verify(payload []byte, header string, secrets []string, tolerance time.Duration, now time.Time) error {
	sig, err := ParseSignature(header)
	if err != nil {
		return err
	}
	return sig.Verify(payload, secrets, tolerance, now)
}

// Sign returns a Stripe-Signature header value for payload signed with secret
// at t, in the form Stripe sends: "t=<unix seconds>,v1=<hex HMAC-SHA256>".
func Sign(payload []byte, secret string, t time.Time) string {
	sig := webhook.ComputeSignature(t, payload, secret)
	return "t=" + strconv.FormatInt(t.Unix(), 10) + "," + signatureScheme + "=" + hex.EncodeToString(sig)
}
