package stripeevent_test

import (
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/test/testkit"
)

// benchFixture is a 6.4 KB customer.subscription.created: two items, each
// with an embedded plan and price, the size of a typical billing event.
const benchFixture = "stripe-sync-engine/subscription_created.json"

func BenchmarkVerify(b *testing.B) {
	payload := readFixture(b, testkit.FixturesDir(b), benchFixture)
	secret := newSecret(b)
	now := time.Unix(1_700_000_000, 0)
	header := stripeevent.Sign(payload, secret, now)
	for _, tc := range []struct {
		name    string
		secrets []string
	}{
		{"one_secret", []string{secret}},
		{"rotation_match_second", []string{newSecret(b), secret}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.SetBytes(int64(len(payload)))
			b.ReportAllocs()
			for b.Loop() {
				if err := stripeevent.Verify(payload, header, tc.secrets, 5*time.Minute, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkNormalize(b *testing.B) {
	dir := testkit.FixturesDir(b)
	for _, name := range []string{
		benchFixture,
		"stripe-sync-engine/invoice_paid.json",
		"stripe-ruby-mock/payment_intent.payment_failed.json",
	} {
		raw := readFixture(b, dir, name)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := stripeevent.Normalize(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
