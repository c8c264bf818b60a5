package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/test/testkit"
)

// TestHeaderRefusedBeforeTheBodyIsRead: a request without a well-shaped,
// timely Stripe-Signature is answered 400 from its headers alone, and the
// connection is closed rather than drained.
func TestHeaderRefusedBeforeTheBodyIsRead(t *testing.T) {
	f := newFixture(t, false, nil)
	payload := event("evt_hdr", "customer.created", "cus_hdr")
	now := time.Now()
	hex64 := strings.Repeat("ab", 32)
	tests := []struct {
		name, header, answer string
		reason               sigReason
		o                    outcome
	}{
		{"missing", "", "missing Stripe-Signature header", sigMissing, outcomeBadSignature},
		{"blank", "   ", "missing Stripe-Signature header", sigMissing, outcomeBadSignature},
		{"not key=value", "garbage", "malformed Stripe-Signature header", sigMalformed, outcomeBadSignature},
		{"no timestamp", "v1=" + hex64, "malformed Stripe-Signature header", sigMalformed, outcomeBadSignature},
		{"timestamp not digits", "t=now,v1=" + hex64, "malformed Stripe-Signature header", sigMalformed, outcomeBadSignature},
		{"v1 not 64 hex", fmt.Sprintf("t=%d,v1=abc", now.Unix()), "malformed Stripe-Signature header", sigMalformed, outcomeBadSignature},
		{"only v0", fmt.Sprintf("t=%d,v0=%s", now.Unix(), hex64), "no v1 signature", sigMalformed, outcomeBadSignature},
		{"too long", fmt.Sprintf("t=%d,v1=%s,v0=%s", now.Unix(), hex64, strings.Repeat("0", stripeevent.MaxSignatureHeaderLen)), "malformed Stripe-Signature header", sigMalformed, outcomeBadSignature},
		{"stale", stripeevent.Sign(payload, f.key, now.Add(-time.Hour)), "signed too long ago", sigStale, outcomeStale},
		{"future", stripeevent.Sign(payload, f.key, now.Add(time.Hour)), "signed in the future", sigFuture, outcomeStale},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			body := newWatchedBody(payload)
			req := httptest.NewRequest(http.MethodPost, Path, body)
			req.ContentLength = int64(len(payload))
			req.Header.Set("Content-Type", "application/json")
			if tc.header != "" {
				req.Header.Set("Stripe-Signature", tc.header)
			}
			before, sigBefore := f.counted(tc.o), f.sigCounted(tc.reason)
			rec := f.serve(req)
			if rec.Code != http.StatusBadRequest || !strings.Contains(errorOf(t, rec), tc.answer) {
				t.Fatalf("answer %d %s, want 400 saying %q", rec.Code, rec.Body, tc.answer)
			}
			if body.read.Load() {
				t.Fatal("the body was read before the header was judged")
			}
			if got := rec.Header().Get("Connection"); got != "close" {
				t.Fatalf("Connection %q, want close: an unread body must not be drained", got)
			}
			if f.counted(tc.o) != before+1 || f.sigCounted(tc.reason) != sigBefore+1 {
				t.Fatalf("outcome %s or reason %s not counted", tc.o, sigReasonNames[tc.reason])
			}
		})
	}
	if f.pub.published() != 0 {
		t.Fatalf("%d events published", f.pub.published())
	}
}

func TestWrongSecretIsRefusedAfterReading(t *testing.T) {
	f := newFixture(t, false, nil)
	payload := event("evt_wrong", "customer.created", "cus_wrong")
	req := f.request(payload)
	req.Header.Set("Stripe-Signature", stripeevent.Sign(payload, "whsec_"+strings.Repeat("0", 32), time.Now()))
	rec := f.serve(req)
	if rec.Code != http.StatusBadRequest || !strings.Contains(errorOf(t, rec), "does not match") {
		t.Fatalf("answer %d %s, want 400 mismatch", rec.Code, rec.Body)
	}
	if f.pub.published() != 0 || f.sigCounted(sigMismatch) != 1 {
		t.Fatalf("published %d, mismatches %v", f.pub.published(), f.sigCounted(sigMismatch))
	}
}

func TestContentTypeMustBeJSON(t *testing.T) {
	f := newFixture(t, false, nil)
	for i, ct := range []string{"", "text/plain", "application/xml", "application/jsonx", "application/json-patch+json", "multipart/form-data; boundary=x", "json"} {
		t.Run("refused "+ct, func(t *testing.T) {
			payload := event(fmt.Sprintf("evt_ct_refused_%d", i), "customer.created", "cus_ct")
			body := newWatchedBody(payload)
			req := httptest.NewRequest(http.MethodPost, Path, body)
			req.ContentLength = int64(len(payload))
			req.Header.Set("Stripe-Signature", stripeevent.Sign(payload, f.key, time.Now()))
			if ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			rec := f.serve(req)
			if rec.Code != http.StatusUnsupportedMediaType || !strings.Contains(errorOf(t, rec), "application/json") {
				t.Fatalf("Content-Type %q: %d %s, want 415 naming application/json", ct, rec.Code, rec.Body)
			}
			if body.read.Load() {
				t.Fatal("the body was read")
			}
		})
	}
	for i, ct := range []string{"application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8", " application/json ; charset=latin1"} {
		t.Run("accepted "+ct, func(t *testing.T) {
			req := f.request(event(fmt.Sprintf("evt_ct_ok_%d", i), "customer.created", "cus_ct"))
			req.Header.Set("Content-Type", ct)
			if rec := f.serve(req); rec.Code != http.StatusOK {
				t.Fatalf("Content-Type %q: %d %s, want 200", ct, rec.Code, rec.Body)
			}
		})
	}
	if got := f.counted(outcomeContentType); got != 7 {
		t.Fatalf("content_type counted %v, want 7", got)
	}
	if f.pub.published() != 4 {
		t.Fatalf("published %d, want the 4 JSON ones", f.pub.published())
	}
}

func TestOversizeBodiesAnswer413(t *testing.T) {
	f := newFixture(t, false, func(c *Config) { c.MaxBody = 4096 })
	big := append(event("evt_big", "customer.created", "cus_big"), bytes.Repeat([]byte(" "), 5000)...)

	// Declared too large: refused from the header, unread.
	body := newWatchedBody(big)
	req := f.request(big)
	req.Body = io.NopCloser(body)
	rec := f.serve(req)
	if rec.Code != http.StatusRequestEntityTooLarge || !strings.Contains(errorOf(t, rec), "larger than 4096 bytes") {
		t.Fatalf("declared: %d %s, want 413", rec.Code, rec.Body)
	}
	if body.read.Load() {
		t.Fatal("a body declared too large was read")
	}

	// Length unknown (chunked): the read stops at the limit.
	req = f.request(big)
	req.Body = io.NopCloser(io.MultiReader(bytes.NewReader(big)))
	req.ContentLength = -1
	rec = f.serve(req)
	if rec.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("chunked: %d %s, want 413", rec.Code, rec.Body)
	}
	if f.counted(outcomeTooLarge) != 2 || f.pub.published() != 0 {
		t.Fatalf("too_large counted %v, published %d", f.counted(outcomeTooLarge), f.pub.published())
	}
}

// TestImplausibleEventsAreRefused: signed, well-formed JSON that Stripe
// would never send gets 400 with the reason, and nothing reaches the bus.
func TestImplausibleEventsAreRefused(t *testing.T) {
	f := newFixture(t, false, nil)
	tests := []struct {
		name, id, typ, customer, reason string
	}{
		{"type of 5,000 characters", "evt_long", "customer." + strings.Repeat("x", 5000), "cus_1", "event type is 5009 bytes, at most 100 allowed"},
		{"type with capitals", "evt_caps", "Customer.Created", "cus_1", "not dot-separated lowercase words"},
		{"type of one word", "evt_one", "customer", "cus_1", "1 words"},
		{"type with a full wildcard", "evt_gt", "customer.>", "cus_1", "not dot-separated lowercase words"},
		{"type with a space", "evt_space", "customer. created", "cus_1", "not dot-separated lowercase words"},
		{"event id with a dot", "evt_1.2", "customer.created", "cus_1", "event id"},
		{"event id of 300 bytes", "evt_" + strings.Repeat("a", 296), "customer.created", "cus_1", "event id"},
		{"customer id with a wildcard", "evt_cus", "customer.created", "cus_*", "data.object.id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := f.counted(outcomeImplausible)
			rec := f.serve(f.request(event(tc.id, tc.typ, tc.customer)))
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("%d %s, want 400", rec.Code, rec.Body)
			}
			msg := errorOf(t, rec)
			if !strings.Contains(msg, "implausible") || !strings.Contains(msg, tc.reason) {
				t.Fatalf("answer %q, want the reason %q", msg, tc.reason)
			}
			if len(msg) > 200 {
				t.Fatalf("answer is %d bytes: it echoes the input", len(msg))
			}
			if f.counted(outcomeImplausible) != before+1 {
				t.Fatal("implausible not counted")
			}
		})
	}
	if f.pub.published() != 0 {
		t.Fatalf("%d implausible events published", f.pub.published())
	}
	if strings.Contains(f.logs.String(), strings.Repeat("x", 100)) {
		t.Fatal("the log carries the 5,000-character type")
	}
}

// TestWildcardTypeIsAcknowledgedAndIgnored: "customer.*" is a pattern;
// publishing it would be a NATS wildcard, refusing it would have Stripe
// retry for three days.
func TestWildcardTypeIsAcknowledgedAndIgnored(t *testing.T) {
	f := newFixture(t, false, nil)
	rec := f.serve(f.request(event("evt_wild", "customer.*", "cus_wild")))
	if rec.Code != http.StatusOK || !strings.Contains(rec.Body.String(), `"ignored":true`) {
		t.Fatalf("%d %s, want 200 ignored", rec.Code, rec.Body)
	}
	if f.pub.published() != 0 {
		t.Fatal("a wildcard type was published")
	}
	if f.counted(outcomeIgnored) != 1 {
		t.Fatalf("ignored counted %v", f.counted(outcomeIgnored))
	}
	logs := f.logs.String()
	if !strings.Contains(logs, `"msg":"webhook ignored"`) || !strings.Contains(logs, `"outcome":"ignored"`) || !strings.Contains(logs, `"event_id":"evt_wild"`) {
		t.Fatalf("no ignored log line with its event id:\n%s", logs)
	}
}

// TestUnknownConcreteTypesArePublished: consumers ack what they do not
// handle, so a new Stripe type must not be lost at the door.
func TestUnknownConcreteTypesArePublished(t *testing.T) {
	f := newFixture(t, false, nil)
	rec := f.serve(f.request(event("evt_new", "customer.brand_new_thing.v2", "cus_new")))
	if rec.Code != http.StatusOK || f.pub.published() != 1 {
		t.Fatalf("%d %s, published %d: want 200 and one event", rec.Code, rec.Body, f.pub.published())
	}
}

// TestBusRefusalIsNever500: what the bus refuses for good is a 400, what
// may pass on a retry a 503; no signed event is answered 500.
func TestBusRefusalIsNever500(t *testing.T) {
	tests := []struct {
		name string
		err  error
		code int
		o    outcome
	}{
		{"payload over max_payload", fmt.Errorf("publish evt_x: %w", nats.ErrMaxPayload), http.StatusBadRequest, outcomeUnstorable},
		{"bad subject", fmt.Errorf("publish evt_x: %w", nats.ErrBadSubject), http.StatusBadRequest, outcomeUnstorable},
		{"unknown error", errors.New("something new"), http.StatusBadRequest, outcomeUnstorable},
		{"broker unavailable", fmt.Errorf("publish evt_x: %w: %w", bus.ErrUnavailable, nats.ErrConnectionClosed), http.StatusServiceUnavailable, outcomeUnavailable},
		{"client went away", fmt.Errorf("publish: %w", context.Canceled), http.StatusServiceUnavailable, outcomeUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, false, nil)
			f.pub.err = tc.err
			rec := f.serve(f.request(event("evt_bus", "invoice.paid", "cus_bus")))
			if rec.Code != tc.code || f.counted(tc.o) != 1 {
				t.Fatalf("%d %s (outcome %s counted %v), want %d", rec.Code, rec.Body, tc.o, f.counted(tc.o), tc.code)
			}
			if tc.code == http.StatusServiceUnavailable && rec.Header().Get("Retry-After") != "3" {
				t.Fatalf("Retry-After %q, want 3", rec.Header().Get("Retry-After"))
			}
		})
	}
}

// TestEveryFixtureIsAccepted: each envelope in the shared fixtures, signed,
// gets 200 and is published.
func TestEveryFixtureIsAccepted(t *testing.T) {
	f := newFixture(t, false, nil)
	dir := testkit.FixturesDir(t)
	index, err := os.ReadFile(filepath.Join(dir, "INDEX.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	for _, line := range strings.Split(strings.TrimSpace(string(index)), "\n")[1:] {
		cols := strings.Split(line, "\t")
		if cols[1] != "envelope" {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(cols[0])))
		if err != nil {
			t.Fatal(err)
		}
		if rec := f.serve(f.request(raw)); rec.Code != http.StatusOK {
			t.Errorf("%s: %d %s", cols[0], rec.Code, rec.Body)
		}
		sent++
	}
	if sent < 150 || f.pub.published() != sent {
		t.Fatalf("sent %d envelopes, published %d", sent, f.pub.published())
	}
}

// TestMalformedEventAnswerIsBounded: a signed body that is not an event
// is refused with its reason, clipped: the reason may quote the body.
func TestMalformedEventAnswerIsBounded(t *testing.T) {
	f := newFixture(t, false, nil)
	noType := fmt.Appendf(nil, `{"id":%q,"data":{"object":{}}}`, strings.Repeat("e", 100_000))
	rec := f.serve(f.request(noType))
	if rec.Code != http.StatusBadRequest || !strings.Contains(errorOf(t, rec), "malformed event") {
		t.Fatalf("%d %.200s, want 400 malformed event", rec.Code, rec.Body)
	}
	if rec.Body.Len() > 400 {
		t.Fatalf("answer is %d bytes: it echoes the body", rec.Body.Len())
	}
}
