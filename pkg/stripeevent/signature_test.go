package stripeevent_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stripe/stripe-go/v76/webhook"

	"github.com/launchready/launchready/pkg/stripeevent"
)

const tolerance = 5 * time.Minute

var testPayload = []byte(`{"id":"evt_1","object":"event","type":"invoice.paid","data":{"object":{"id":"in_1","object":"invoice"}}}`)

func TestVerify(t *testing.T) {
	secret, other := newSecret(t), newSecret(t)
	now := time.Unix(1_700_000_000, 0)
	signed := stripeevent.Sign(testPayload, secret, now)
	sigOf := func(h string) string { _, sig, _ := strings.Cut(h, ",v1="); return sig }

	tests := []struct {
		name    string
		payload []byte
		header  string
		secrets []string
		now     time.Time
		want    error
	}{
		{name: "valid", header: signed, secrets: []string{secret}, now: now},
		{name: "tampered body", payload: []byte(strings.Replace(string(testPayload), "in_1", "in_2", 1)),
			header: signed, secrets: []string{secret}, now: now, want: stripeevent.ErrBadSignature},
		{name: "wrong secret", header: signed, secrets: []string{other}, now: now, want: stripeevent.ErrBadSignature},
		{name: "second secret of a rotation", header: signed, secrets: []string{other, secret}, now: now},
		{name: "several v1 signatures, the last valid",
			header:  fmt.Sprintf("t=%d,v1=%s,v0=%s,v1=%s", now.Unix(), sigOf(stripeevent.Sign(testPayload, other, now)), strings.Repeat("0", 64), sigOf(signed)),
			secrets: []string{secret}, now: now},
		{name: "several v1 signatures, none valid",
			header:  fmt.Sprintf("t=%d,v1=%s,v1=%s", now.Unix(), sigOf(stripeevent.Sign(testPayload, other, now)), strings.Repeat("ab", 32)),
			secrets: []string{secret}, now: now, want: stripeevent.ErrBadSignature},
		{name: "signature of another timestamp", header: fmt.Sprintf("t=%d,v1=%s", now.Unix()+1, sigOf(signed)),
			secrets: []string{secret}, now: now, want: stripeevent.ErrBadSignature},
		{name: "stale timestamp", header: signed, secrets: []string{secret}, now: now.Add(tolerance + time.Second), want: stripeevent.ErrStaleTimestamp},
		{name: "old but within tolerance", header: signed, secrets: []string{secret}, now: now.Add(tolerance)},
		{name: "future timestamp beyond tolerance", header: signed, secrets: []string{secret}, now: now.Add(-tolerance - time.Second), want: stripeevent.ErrFutureTimestamp},
		{name: "future timestamp within tolerance", header: signed, secrets: []string{secret}, now: now.Add(-tolerance)},
		{name: "stale is checked before the signature", header: stripeevent.Sign(testPayload, other, now), secrets: []string{secret},
			now: now.Add(time.Hour), want: stripeevent.ErrStaleTimestamp},
		{name: "missing header", header: "", secrets: []string{secret}, now: now, want: stripeevent.ErrNoSignature},
		{name: "blank header", header: "  ", secrets: []string{secret}, now: now, want: stripeevent.ErrNoSignature},
		{name: "only a v0 signature", header: strings.Replace(signed, "v1=", "v0=", 1), secrets: []string{secret}, now: now, want: stripeevent.ErrNoSignature},
		{name: "no timestamp", header: "v1=" + sigOf(signed), secrets: []string{secret}, now: now, want: stripeevent.ErrMalformedHeader},
		{name: "timestamp not a number", header: "t=yesterday,v1=" + sigOf(signed), secrets: []string{secret}, now: now, want: stripeevent.ErrMalformedHeader},
		{name: "two timestamps", header: fmt.Sprintf("t=%d,t=%d,v1=%s", now.Unix(), now.Unix(), sigOf(signed)), secrets: []string{secret}, now: now, want: stripeevent.ErrMalformedHeader},
		{name: "not key=value", header: "garbage", secrets: []string{secret}, now: now, want: stripeevent.ErrMalformedHeader},
		{name: "v1 not hex", header: fmt.Sprintf("t=%d,v1=%s", now.Unix(), strings.Repeat("zz", 32)), secrets: []string{secret}, now: now, want: stripeevent.ErrMalformedHeader},
		{name: "v1 too short", header: fmt.Sprintf("t=%d,v1=%s", now.Unix(), strings.Repeat("ab", 31)), secrets: []string{secret}, now: now, want: stripeevent.ErrMalformedHeader},
		{name: "a bad v1 next to a good one", header: fmt.Sprintf("t=%d,v1=zz,v1=%s", now.Unix(), sigOf(signed)), secrets: []string{secret}, now: now},
		{name: "signed timestamp", header: fmt.Sprintf("t=+%d,v1=%s", now.Unix(), sigOf(signed)), secrets: []string{secret}, now: now, want: stripeevent.ErrMalformedHeader},
		{name: "negative timestamp", header: "t=-1,v1=" + sigOf(signed), secrets: []string{secret}, now: now, want: stripeevent.ErrMalformedHeader},
		{name: "timestamp out of range", header: "t=99999999999999999999,v1=" + sigOf(signed), secrets: []string{secret}, now: now, want: stripeevent.ErrMalformedHeader},
		{name: "header too long", header: signed + ",v0=" + strings.Repeat("0", stripeevent.MaxSignatureHeaderLen), secrets: []string{secret}, now: now, want: stripeevent.ErrMalformedHeader},
		{name: "header at the length bound", header: signed + ",x=" + strings.Repeat("0", stripeevent.MaxSignatureHeaderLen-len(signed)-3), secrets: []string{secret}, now: now},
		{name: "no secrets configured", header: signed, secrets: nil, now: now, want: stripeevent.ErrBadSignature},
		// An empty HMAC key is public knowledge: a body signed with it must
		// not pass because a comma list had an empty element.
		{name: "empty secret is never used", header: stripeevent.Sign(testPayload, "", now), secrets: []string{"", other}, now: now, want: stripeevent.ErrBadSignature},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			payload := tc.payload
			if payload == nil {
				payload = testPayload
			}
			err := stripeevent.Verify(payload, tc.header, tc.secrets, tolerance, tc.now)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify err = %v, want %v", err, tc.want)
			}
			for _, s := range append([]string{secret, other}, tc.secrets...) {
				if s != "" && strings.Contains(err.Error(), s) {
					t.Fatalf("error %q contains a secret", err)
				}
			}
			if sig := sigOf(signed); strings.Contains(err.Error(), sig) {
				t.Fatalf("error %q contains a signature", err)
			}
		})
	}
}

// TestVerifyDefaultTolerance: a zero tolerance means Stripe's default, not
// "reject everything" or "accept everything".
func TestVerifyDefaultTolerance(t *testing.T) {
	secret := newSecret(t)
	now := time.Unix(1_700_000_000, 0)
	header := stripeevent.Sign(testPayload, secret, now)
	if err := stripeevent.Verify(testPayload, header, []string{secret}, 0, now.Add(webhook.DefaultTolerance)); err != nil {
		t.Fatalf("at the default tolerance: %v", err)
	}
	err := stripeevent.Verify(testPayload, header, []string{secret}, 0, now.Add(webhook.DefaultTolerance+time.Second))
	if !errors.Is(err, stripeevent.ErrStaleTimestamp) {
		t.Fatalf("past the default tolerance: err = %v, want ErrStaleTimestamp", err)
	}
}

// TestSignInteroperatesWithStripeGo checks Sign and Verify against the
// pinned stripe-go, which is what Stripe's own tooling produces and checks.
func TestSignInteroperatesWithStripeGo(t *testing.T) {
	secret := newSecret(t)
	now := time.Now()

	if err := webhook.ValidatePayloadWithTolerance(testPayload, stripeevent.Sign(testPayload, secret, now), secret, tolerance); err != nil {
		t.Fatalf("stripe-go rejects Sign's header: %v", err)
	}
	sp := webhook.GenerateTestSignedPayload(&webhook.UnsignedPayload{Payload: testPayload, Secret: secret, Timestamp: now})
	if err := stripeevent.Verify(testPayload, sp.Header, []string{secret}, tolerance, now); err != nil {
		t.Fatalf("Verify rejects stripe-go's header: %v", err)
	}
	if got, want := stripeevent.Sign(testPayload, secret, now), sp.Header; got != want {
		t.Fatalf("Sign = %q, stripe-go = %q", got, want)
	}
}

// TestVerifyBasilEvent: stripe-go v76 refuses to construct events of any API
// version but 2023-10-16; Verify does not look at the body at all, and
// Normalize reads the basil shape.
func TestVerifyBasilEvent(t *testing.T) {
	secret := newSecret(t)
	now := time.Unix(1_745_000_000, 0)
	payload := basilSubscriptionUpdated()
	header := stripeevent.Sign(payload, secret, now)

	if _, err := webhook.ConstructEventWithTolerance(payload, header, secret, 100*365*24*time.Hour); err == nil {
		t.Fatal("stripe-go v76 accepted a basil event; the reason for Verify's own path is gone")
	}
	if err := stripeevent.Verify(payload, header, []string{secret}, tolerance, now); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	ev, err := stripeevent.Normalize(payload)
	if err != nil {
		t.Fatalf("Normalize: %v", err)
	}
	if ev.GetApiVersion() != "2025-03-31.basil" || ev.GetSubscriptionId() != "sub_1RBasilSub0001" ||
		ev.GetCurrentPeriodEnd().GetSeconds() != 1_748_000_000 || ev.GetStatus() != "past_due" || ev.GetPreviousStatus() != "active" {
		t.Fatalf("basil event normalised to api_version=%q subscription=%q period_end=%d status=%q previous=%q",
			ev.GetApiVersion(), ev.GetSubscriptionId(), ev.GetCurrentPeriodEnd().GetSeconds(), ev.GetStatus(), ev.GetPreviousStatus())
	}
}

// TestParseSignatureNeedsNoBody: the shape and the timestamp of a header
// are judged before any body exists, and the parsed header then verifies
// the body exactly as Verify does.
func TestParseSignatureNeedsNoBody(t *testing.T) {
	secret := newSecret(t)
	now := time.Unix(1_700_000_000, 0)
	sig, err := stripeevent.ParseSignature(stripeevent.Sign(testPayload, secret, now))
	if err != nil {
		t.Fatalf("ParseSignature: %v", err)
	}
	if sig.Timestamp() != now.Unix() {
		t.Fatalf("timestamp %d, want %d", sig.Timestamp(), now.Unix())
	}
	if err := sig.CheckTimestamp(tolerance, now.Add(tolerance+time.Second)); !errors.Is(err, stripeevent.ErrStaleTimestamp) {
		t.Fatalf("CheckTimestamp past the tolerance: %v, want ErrStaleTimestamp", err)
	}
	if err := sig.CheckTimestamp(tolerance, now.Add(-tolerance-time.Second)); !errors.Is(err, stripeevent.ErrFutureTimestamp) {
		t.Fatalf("CheckTimestamp before the signing: %v, want ErrFutureTimestamp", err)
	}
	if err := sig.Verify(testPayload, []string{secret}, tolerance, now); err != nil {
		t.Fatalf("Signature.Verify: %v", err)
	}
	if err := sig.Verify(append([]byte(" "), testPayload...), []string{secret}, tolerance, now); !errors.Is(err, stripeevent.ErrBadSignature) {
		t.Fatalf("Signature.Verify of another body: %v, want ErrBadSignature", err)
	}
	if err := (stripeevent.Signature{}).Verify(testPayload, []string{secret}, tolerance, time.Unix(0, 0)); !errors.Is(err, stripeevent.ErrBadSignature) {
		t.Fatalf("the zero Signature verified: %v", err)
	}
}
