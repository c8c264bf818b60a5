package vendorhttp

import (
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// maxRetryAfterSeconds keeps a vendor's number from overflowing a Duration;
// every policy caps far below it.
const maxRetryAfterSeconds = 1 << 31

// ParseRetryAfter reads a Retry-After value: delta-seconds (a fraction is
// accepted) or an HTTP date. ok is false when v is empty, negative or
// unreadable. A date already past reads as 0 with ok true: the vendor gave
// advice, and it is "now".
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if math.IsNaN(secs) || secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, maxRetryAfterSeconds) * float64(time.Second)), true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

// RetryAfterPolicy turns a vendor's Retry-After into the wait a service
// honours.
type RetryAfterPolicy struct {
	// Default is the wait when the header is absent or unreadable.
	Default time.Duration
	// Min and Max bound the vendor's value (0 means no bound).
	Min, Max time.Duration
	// ZeroIsAbsent treats "0", or a date already past, as no advice, so
	// Default applies rather than Min.
	ZeroIsAbsent bool
}

// Delay is the wait for an answer's headers.
func (p RetryAfterPolicy) Delay(h http.Header, now time.Time) time.Duration {
	d, ok := ParseRetryAfter(h.Get("Retry-After"), now)
	if !ok || (d == 0 && p.ZeroIsAbsent) {
		d = p.Default
	}
	if d < p.Min {
		d = p.Min
	}
	if p.Max > 0 && d > p.Max {
		d = p.Max
	}
	return d
}
