package stripeevent_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit"
)

// addFixtureSeeds seeds a fuzz target with every JSON file under the shared
// fixtures, envelopes or not.
func addFixtureSeeds(f *testing.F, add func(raw []byte)) {
	f.Helper()
	dir := testkit.FixturesDir(f)
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		add(readFixture(f, dir, filepath.ToSlash(rel)))
		n++
		return nil
	})
	if err != nil {
		f.Fatalf("walk fixtures: %v", err)
	}
	if n < 200 {
		f.Fatalf("seeded %d fixture files, want at least 200", n)
	}
}

// FuzzNormalize: Normalize never panics, refuses exactly the bodies
// encoding/json calls invalid (and more: non-events), keeps the input byte
// for byte, and always yields an event that protobuf can carry.
func FuzzNormalize(f *testing.F) {
	addFixtureSeeds(f, func(raw []byte) { f.Add(raw) })
	for _, seed := range [][]byte{basilSubscriptionUpdated(), basilInvoicePaymentFailed(), basilInvoicePaidWithPayments(),
		basilCheckoutSessionCompleted(), cloverSubscriptionDeleted()} {
		f.Add(seed)
	}
	f.Add([]byte(`{"id":"evt_\ud800","type":"x","data":{"object":{"name":"\xff"}}}`))
	f.Add([]byte(`{"id":"evt_1","type":"x","data":{"object":{"amount":-9223372036854775808,"total":9223372036854775808}}}`))

	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := stripeevent.Normalize(raw)
		if err != nil {
			if !errors.Is(err, stripeevent.ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		if !json.Valid(raw) {
			t.Fatalf("accepted a body encoding/json rejects: %q", raw)
		}
		if !bytes.Equal(ev.GetRawJson(), raw) {
			t.Fatal("raw_json differs from the input bytes")
		}
		if ev.GetEventId() == "" || ev.GetType() == "" {
			t.Fatalf("accepted an event without id or type: %v", ev)
		}
		b, err := proto.Marshal(ev)
		if err != nil {
			t.Fatalf("proto.Marshal: %v", err)
		}
		var back billingv1.BillingEvent
		if err := proto.Unmarshal(b, &back); err != nil || !proto.Equal(&back, ev) {
			t.Fatalf("protobuf round trip: %v", err)
		}
	})
}

// FuzzNormalizeAgreesOnValidity checks the scanner against encoding/json on
// the envelope: any valid JSON object with a string id and type and an
// object in data.object is an event.
func FuzzNormalizeAgreesOnValidity(f *testing.F) {
	addFixtureSeeds(f, func(raw []byte) {
		var env struct {
			Data struct {
				Object json.RawMessage `json:"object"`
			} `json:"data"`
		}
		if json.Unmarshal(raw, &env) == nil && len(env.Data.Object) > 0 {
			f.Add([]byte(env.Data.Object))
		}
	})
	f.Fuzz(func(t *testing.T, object []byte) {
		raw := append(append([]byte(`{"id":"evt_1","type":"x","data":{"object":`), object...), "}}"...)
		_, err := stripeevent.Normalize(raw)
		var isObject bool
		if json.Valid(object) {
			var v any
			_ = json.Unmarshal(object, &v)
			_, isObject = v.(map[string]any)
		}
		if isObject && err != nil {
			t.Fatalf("refused a valid object: %v", err)
		}
		if !isObject && err == nil {
			t.Fatalf("accepted data.object %q", object)
		}
	})
}

func FuzzParseSignatureHeader(f *testing.F) {
	secret := newSecret(f)
	now := time.Unix(1_700_000_000, 0)
	f.Add(stripeevent.Sign(testPayload, secret, now))
	f.Add(stripeevent.Sign(testPayload, secret, now) + ",v1=" + strings.Repeat("0", 64) + ",v0=abc")
	for _, h := range []string{"", "t=", "t=1", "v1=", "t=1,v1=zz", "t=1,,v1=00", "t=-1,v1=" + strings.Repeat("f", 64),
		"t=99999999999999999999,v1=00", "t=1=2,v1=00", " t = 1 , v1 = 00 ", "t=1,t=2,v1=00", "\x00,=,"} {
		f.Add(h)
	}
	f.Fuzz(func(t *testing.T, header string) {
		ts, sigs, err := stripeevent.ParseSignatureHeader(header)
		if err != nil {
			if !errors.Is(err, stripeevent.ErrNoSignature) && !errors.Is(err, stripeevent.ErrMalformedHeader) {
				t.Fatalf("unexpected error kind: %v", err)
			}
			return
		}
		if sigs == 0 {
			t.Fatalf("parsed %q with no v1 value", header)
		}
		// A parsed header verifies or fails on its merits, never panics.
		verr := stripeevent.Verify(testPayload, header, []string{secret}, time.Minute, time.Unix(ts, 0))
		if verr != nil && !errors.Is(verr, stripeevent.ErrBadSignature) {
			t.Fatalf("Verify at the header's own time: %v", verr)
		}
	})
}

// FuzzVerify: a header made by Sign always verifies within tolerance and is
// refused outside it; arbitrary headers only ever produce the documented
// errors, none of which mentions the secret.
func FuzzVerify(f *testing.F) {
	secret := newSecret(f)
	base := time.Unix(1_700_000_000, 0)
	f.Add(testPayload, stripeevent.Sign(testPayload, secret, base), int64(0))
	f.Add(testPayload, stripeevent.Sign(testPayload, secret, base), int64(301))
	f.Add(testPayload, stripeevent.Sign(testPayload, secret, base), int64(-301))
	f.Add([]byte("{}"), stripeevent.Sign(testPayload, secret, base), int64(0))
	f.Add(testPayload, "t=1700000000,v1=", int64(0))
	f.Add(testPayload, "garbage", int64(0))
	f.Add([]byte{}, "", int64(0))

	f.Fuzz(func(t *testing.T, payload []byte, header string, skew int64) {
		skew %= 1 << 32
		now := base.Add(time.Duration(skew) * time.Second)
		tol := 300 * time.Second

		err := stripeevent.Verify(payload, stripeevent.Sign(payload, secret, base), []string{newSecret(t), secret}, tol, now)
		switch {
		case skew > 300:
			if !errors.Is(err, stripeevent.ErrStaleTimestamp) {
				t.Fatalf("skew %d: err = %v, want ErrStaleTimestamp", skew, err)
			}
		case skew < -300:
			if !errors.Is(err, stripeevent.ErrFutureTimestamp) {
				t.Fatalf("skew %d: err = %v, want ErrFutureTimestamp", skew, err)
			}
		case err != nil:
			t.Fatalf("skew %d: Sign's header refused: %v", skew, err)
		}

		err = stripeevent.Verify(payload, header, []string{secret}, tol, now)
		if err == nil {
			return
		}
		known := false
		for _, want := range []error{stripeevent.ErrNoSignature, stripeevent.ErrMalformedHeader, stripeevent.ErrBadSignature,
			stripeevent.ErrStaleTimestamp, stripeevent.ErrFutureTimestamp} {
			known = known || errors.Is(err, want)
		}
		if !known {
			t.Fatalf("undocumented error: %v", err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatal("error contains the secret")
		}
	})
}
