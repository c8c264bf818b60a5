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

// Errors returned by Verify. They never carry a secret or a signature.
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

type signatureHeader struct {
	timestamp  int64
	signatures [][sha256Size]byte
	// skipped counts v1 values that were not 64 hex digits.
	skipped int
}

// parseSignatureHeader reads "t=1492774577,v1=5257a8...,v1=...,v0=...".
// Unknown keys are ignored so Stripe can add schemes; a v1 value that is not
// a SHA-256 in hex is skipped rather than rejected, as stripe-go does, because
// it simply cannot match.
func parseSignatureHeader(header string) (signatureHeader, error) {
	var h signatureHeader
	if strings.TrimSpace(header) == "" {
		return h, ErrNoSignature
	}
	seenT := false
	for pair := range strings.SplitSeq(header, ",") {
		key, value, ok := strings.Cut(pair, "=")
		if !ok {
			return signatureHeader{}, fmt.Errorf("%w: element without '='", ErrMalformedHeader)
		}
		key, value = strings.TrimSpace(key), strings.TrimSpace(value)
		switch key {
		case "t":
			if seenT {
				return signatureHeader{}, fmt.Errorf("%w: more than one timestamp", ErrMalformedHeader)
			}
			ts, err := strconv.ParseInt(value, 10, 64)
			if err != nil {
				return signatureHeader{}, fmt.Errorf("%w: timestamp is not an integer", ErrMalformedHeader)
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
	if !seenT {
		return signatureHeader{}, fmt.Errorf("%w: no timestamp", ErrMalformedHeader)
	}
	if len(h.signatures) == 0 && h.skipped == 0 {
		return signatureHeader{}, fmt.Errorf("%w: no %s signature in header", ErrNoSignature, signatureScheme)
	}
	return h, nil
}

// Verify checks a Stripe-Signature header against payload.
//
// Every secret is tried, so an endpoint can accept both the old and the new
// secret while one is being rolled, and every v1 signature in the header is
// tried, because Stripe sends one per active secret during its own rolls.
// The timestamp must lie within tolerance of now in both directions: stripe-go
// only rejects old timestamps and measures age with time.Since, so the clock
// check is done here, against the caller's now, before any HMAC is computed.
// The HMAC itself is stripe-go's webhook.ComputeSignature, compared in
// constant time. Empty secrets are skipped: an empty HMAC key is a key anyone
// can use.
func Verify(payload []byte, header string, secrets []string, tolerance time.Duration, now time.Time) error {
	h, err := parseSignatureHeader(header)
	if err != nil {
		return err
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	signedAt := time.Unix(h.timestamp, 0)
	if now.Sub(signedAt) > tolerance {
		return fmt.Errorf("%w: signed at %d, now %d, tolerance %s", ErrStaleTimestamp, h.timestamp, now.Unix(), tolerance)
	}
	if signedAt.Sub(now) > tolerance {
		return fmt.Errorf("%w: signed at %d, now %d, tolerance %s", ErrFutureTimestamp, h.timestamp, now.Unix(), tolerance)
	}
	tried := 0
	for _, secret := range secrets {
		if secret == "" {
			continue
		}
		tried++
		expected := webhook.ComputeSignature(signedAt, payload, secret)
		for i := range h.signatures {
			if hmac.Equal(expected, h.signatures[i][:]) {
				return nil
			}
		}
	}
	if tried == 0 {
		return fmt.Errorf("%w: no signing secret configured", ErrBadSignature)
	}
	return fmt.Errorf("%w: %d signature(s) checked against %d secret(s)", ErrBadSignature, len(h.signatures)+h.skipped, tried)
}

// Sign returns a Stripe-Signature header value for payload signed with secret
// at t, in the form Stripe sends: "t=<unix seconds>,v1=<hex HMAC-SHA256>".
func Sign(payload []byte, secret string, t time.Time) string {
	sig := webhook.ComputeSignature(t, payload, secret)
	return "t=" + strconv.FormatInt(t.Unix(), 10) + "," + signatureScheme + "=" + hex.EncodeToString(sig)
}
