package crmwebhook_test

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/services/crm-sync/crmwebhook"
)

func newSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func TestVerify(t *testing.T) {
	sec, other := newSecret(t), newSecret(t)
	body := []byte(`{"kind":"customer","event_id":"evt_1"}`)
	now := time.Unix(1_700_000_000, 0)
	good := crmwebhook.Sign(sec, body, now)
	otherSig := crmwebhook.Sign(other, body, now)
	v1 := func(h string) string { return h[strings.Index(h, "v1="):] }
	cases := []struct {
		name   string
		header string
		body   []byte
		at     time.Time
		want   error
	}{
		{"valid", good, body, now, nil},
		{"valid within tolerance", good, body, now.Add(4 * time.Minute), nil},
		{"rotation: any v1 matches", "t=1700000000," + v1(otherSig) + "," + v1(good), body, now, nil},
		{"unknown keys ignored", good + ",v0=abc,scheme=x", body, now, nil},
		{"empty", "", body, now, crmwebhook.ErrNoSignature},
		{"no v1", "t=1700000000", body, now, crmwebhook.ErrNoSignature},
		{"no t", v1(good), body, now, crmwebhook.ErrMalformedHeader},
		{"garbage", "nonsense", body, now, crmwebhook.ErrMalformedHeader},
		{"tampered body", good, []byte(`{"kind":"customer","event_id":"evt_2"}`), now, crmwebhook.ErrBadSignature},
		{"wrong secret", otherSig, body, now, crmwebhook.ErrBadSignature},
		{"timestamp swapped", "t=1700000001," + v1(good), body, now, crmwebhook.ErrBadSignature},
		{"stale", good, body, now.Add(6 * time.Minute), crmwebhook.ErrStaleTimestamp},
		{"future", good, body, now.Add(-6 * time.Minute), crmwebhook.ErrFutureTimestamp},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := crmwebhook.Verify(sec, c.header, c.body, 0, c.at)
			if !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
		})
	}
}

func TestIdempotencyKey(t *testing.T) {
	a := crmwebhook.IdempotencyKey("evt_1", "customer", "cus_1", []byte(`{"a":1}`))
	if a != crmwebhook.IdempotencyKey("evt_1", "customer", "cus_1", []byte(`{"a":1}`)) {
		t.Fatal("same change, different keys")
	}
	for _, other := range []string{
		crmwebhook.IdempotencyKey("evt_2", "customer", "cus_1", []byte(`{"a":1}`)),
		crmwebhook.IdempotencyKey("evt_1", "subscription", "cus_1", []byte(`{"a":1}`)),
		crmwebhook.IdempotencyKey("evt_1", "customer", "cus_2", []byte(`{"a":1}`)),
		crmwebhook.IdempotencyKey("evt_1", "customer", "cus_1", []byte(`{"a":2}`)),
	} {
		if other == a {
			t.Fatalf("different changes share key %s", a)
		}
	}
}

// A receiver checks each request before trusting its body.
func ExampleVerify() {
	secret := "a-secret-shared-with-crm-sync" // CRM_WEBHOOK_SECRET
	body := []byte(`{"kind":"customer","event_id":"evt_1","customer":{"customer_id":"cus_1","billing_status":"active"}}`)
	sent := time.Unix(1_700_000_000, 0)
	header := crmwebhook.Sign(secret, body, sent) // what crm-sync puts in Launchready-Signature

	fmt.Println(crmwebhook.Verify(secret, header, body, 5*time.Minute, sent.Add(time.Second)))
	fmt.Println(crmwebhook.Verify(secret, header, []byte(`{"kind":"customer"}`), 5*time.Minute, sent))
	// Output:
	// <nil>
	// crmwebhook: signature does not match
}
