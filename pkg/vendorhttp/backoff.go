package vendorhttp

import (
	"math/rand/v2"
	"time"
)

// Backoff is how often, and after how long, a call is repeated in place
// when its answer or failure is worth retrying.
type Backoff struct {
	// Attempts is the most tries of one call, the first included; 0 or 1
	// means the call is made once and the bus does any retrying.
	Attempts int
	// Base is the wait before the second try, doubled for each further
	// one up to Max.
	Base, Max time.Duration
}

// Delay is the wait before try number attempt+1: the exponential step,
// with jitter over its upper half, so that workers that failed together do
// not come back together.
func (b Backoff) Delay(attempt int) time.Duration {
	base, ceiling := b.Base, b.Max
	if base <= 0 {
		base = 100 * time.Millisecond
	}
	if ceiling < base {
		ceiling = base
	}
	d := ceiling
	if shift := attempt - 1; shift < 32 && base<<shift < ceiling && base<<shift > 0 {
		d = base << shift
	}
	half := d / 2
	return half + rand.N(d-half+1)
}
