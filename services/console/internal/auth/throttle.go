package auth

import "time"

// Throttle is the answer to repeated failed sign-ins on one account: from
// SlowAfter failures on, each further attempt must wait, twice as long
// each time up to a minute; from LockAfter on, the account is locked for
// LockFor. A good sign-in resets the count.
type Throttle struct {
	SlowAfter int
	LockAfter int
	LockFor   time.Duration
}

// DefaultThrottle slows from the third failure and locks for 15 minutes at
// the tenth.
var DefaultThrottle = Throttle{SlowAfter: 3, LockAfter: 10, LockFor: 15 * time.Minute}

// After returns, for an account that has failed n times in a row at now,
// when the next attempt may come and until when the account is locked
// (zero times: no wait, no lock).
func (t Throttle) After(n int, now time.Time) (next, locked time.Time) {
	if n >= t.LockAfter {
		return time.Time{}, now.Add(t.LockFor)
	}
	if n >= t.SlowAfter {
		wait := time.Second << min(n-t.SlowAfter, 6)
		return now.Add(min(wait, time.Minute)), time.Time{}
	}
	return time.Time{}, time.Time{}
}
