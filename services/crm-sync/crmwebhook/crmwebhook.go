package crmwebhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Header names of the scheme.
const (
	SignatureHeader   = "Launchready-Signature"
	IdempotencyHeader = "Idempotency-Key"
)

// MaxDocuments is the most documents one POST carries.
const MaxDocuments = 100

// DefaultTolerance is how far a timestamp may be from the receiver's clock
// when Verify is given a tolerance of 0.
const DefaultTolerance = 5 * time.Minute

// Verification failures, so a receiver can log why it refused a request
// without echoing the header.
var (
	ErrNoSignature     = errors.New("crmwebhook: no signature header")
	ErrMalformedHeader = errors.New("crmwebhook: malformed signature header")
	ErrBadSignature    = errors.New("crmwebhook: signature does not match")
	ErrStaleTimestamp  = errors.New("crmwebhook: timestamp too old")
	ErrFutureTimestamp = errors.New("crmwebhook: timestamp in the future")
)

// Sign returns the Launchready-Signature header value for body at t.
func Sign(secret string, body []byte, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + mac(secret, ts, body)
}

func mac(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// Verify checks header (the Launchready-Signature value) against body with
// secret: any v1 must match, and t must be within tolerance of now in either
// direction (0 means DefaultTolerance).
func Verify(secret, header string, body []byte, tolerance time.Duration, now time.Time) error {
	header = strings.TrimSpace(header)
	if header == "" {
		return ErrNoSignature
	}
	if tolerance <= 0 {
		tolerance = DefaultTolerance
	}
	var ts string
	var sigs [][]byte
	for _, item := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok {
			return ErrMalformedHeader
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				// A malformed v1 cannot match; another v1 still may.
				continue
			}
			sigs = append(sigs, b)
		}
	}
	if ts == "" {
		return ErrMalformedHeader
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return ErrMalformedHeader
	}
	if len(sigs) == 0 {
		return ErrNoSignature
	}
	want, _ := hex.DecodeString(mac(secret, ts, body))
	matched := false
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			matched = true
		}
	}
	if !matched {
		return ErrBadSignature
	}
	at := time.Unix(sec, 0)
	switch {
	case now.Sub(at) > tolerance:
		return ErrStaleTimestamp
	case at.Sub(now) > tolerance:
		return ErrFutureTimestamp
	}
	return nil
}

// IdempotencyKey derives the key of one change: the Stripe event id, the
// kind and id of the object changed, and the document's body. Equal inputs
// give equal keys, on every retry and in every process.
func IdempotencyKey(eventID, kind, objectID string, body []byte) string {
	h := sha256.New()
	for _, p := range []string{"launchready-crm/1", eventID, kind, objectID} {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	h.Write(body)
	return "lrcrm_" + hex.EncodeToString(h.Sum(nil))[:40]
}

// BatchKey derives the Idempotency-Key of one POST from the keys of the
// documents it carries, in order: a retry of the same POST carries the same
// key. A retry may also carry fewer documents (a refused POST is split), so
// receivers dedupe on each document's idempotency_key as well.
func BatchKey(documentKeys []string) string {
	h := sha256.New()
	h.Write([]byte("launchready-crm-batch/1"))
	for _, k := range documentKeys {
		h.Write([]byte{0})
		h.Write([]byte(k))
	}
	return "lrcrm_" + hex.EncodeToString(h.Sum(nil))[:40]
}
