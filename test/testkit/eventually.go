package testkit

import "time"

// PollInterval is how often Eventually looks again. Short enough
// that a test ends soon after its condition holds, long enough not to take
// a core from the system under test.
const PollInterval = 10 * time.Millisecond

// Eventually waits until cond holds, looking every PollInterval, and fails
// t naming what it waited for once within has passed.
func Eventually(t TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	if !Poll(within, PollInterval, cond) {
		t.Fatalf("timed out after %s waiting for %s", within, what)
	}
}

// Poll reports whether cond held before within passed, looking every
// interval: for waits whose failure needs more than a name, and for
// conditions too costly to check every PollInterval.
func Poll(within, interval time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(interval) // the polling interval, not a wait for an event
	}
	return true
}
