package stripeevent_test

import (
	"crypto/rand"
	"encoding/hex"
	"testing"
)

// newSecret makes a throwaway signing secret shaped like Stripe's.
func newSecret(tb testing.TB) string {
	tb.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		tb.Fatalf("random secret: %v", err)
	}
	return "whsec_" + hex.EncodeToString(b)
}
