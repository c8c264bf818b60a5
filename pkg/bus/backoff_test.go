package bus

import (
	"testing"
	"time"
)

func TestBackoffBounds(t *testing.T) {
	base, maxDelay := 100*time.Millisecond, 2*time.Second
	for n := uint64(1); n <= 12; n++ {
		b := min(maxDelay, base<<(n-1))
		for range 200 {
			d := backoff(base, maxDelay, n)
			if d < b/2 || d > b {
				t.Fatalf("backoff(n=%d) = %s, want within [%s, %s]", n, d, b/2, b)
			}
		}
	}
	// A huge delivery count must not overflow into a negative delay.
	if d := backoff(base, maxDelay, 1<<40); d < maxDelay/2 || d > maxDelay {
		t.Fatalf("backoff(huge n) = %s", d)
	}
}
