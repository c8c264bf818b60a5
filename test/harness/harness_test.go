package harness

import "testing"

// Two thousand probes of a range of about 28,000 ports repeat one with
// near certainty (the birthday bound), unless FreePort refuses repeats.
func TestFreePortNeverHandsOutAPortTwice(t *testing.T) {
	seen := map[int]bool{}
	for range 2000 {
		p := FreePort(t)
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
	}
}
