package vendorhttp

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/wait"
)

// ErrDeferred means a call was not made because the shared rate budget or
// a vendor's Retry-After pause would have held it longer than the client
// may wait; the error wraps bus.RetryAfter, so the message is redelivered
// when the budget allows.
var ErrDeferred = errors.New("vendor call deferred by rate limit")

// Limiter is a rate budget shared by every worker of a process that calls
// one vendor, so the configured rate holds whatever the concurrency. It
// also holds every worker back for a vendor's Retry-After pause.
//
// A token bucket holds Limit/10 tokens (at least 1) and refills at
// (Limit - burst - 1) per Window, so that no interval of length Window
// sees more than Limit requests leave, a full burst included: vendors
// such as HubSpot count over a rolling window, where a plain
// Limit-per-Window rate with a Limit-sized burst could reach twice the
// limit. Behind the bucket a sliding-window log of the last Limit
// admissions is the hard cap: a request leaves only once the Limit-th
// request before it is more than Window old, measured when it actually
// leaves, so a worker descheduled after its token came due cannot bunch up
// with the next ones. A margin of 5% of Window (at least 50 ms) absorbs
// the jitter between leaving here and arriving at the vendor.
type Limiter struct {
	limit  int
	window time.Duration
	bucket *rate.Limiter
	margin time.Duration

	mu          sync.Mutex
	pausedUntil time.Time
	// sent holds the admission times of the last limit requests.
	sent []time.Time
}

// NewLimiter allows limit requests per window (at least 1 per window).
func NewLimiter(limit int, window time.Duration) *Limiter {
	limit = max(limit, 1)
	if window <= 0 {
		window = 10 * time.Second
	}
	burst, per := BucketFor(limit, window)
	return &Limiter{
		limit:  limit,
		window: window,
		bucket: rate.NewLimiter(per, burst),
		margin: max(window/20, 50*time.Millisecond),
		sent:   make([]time.Time, 0, limit),
	}
}

// Window is the limiter's window: a safe guess at how long a vendor that
// gave no Retry-After wants to be left alone.
func (l *Limiter) Window() time.Duration { return l.window }

// BucketFor returns the token bucket that keeps any window of length
// window at or under limit requests (see Limiter).
func BucketFor(limit int, window time.Duration) (burst int, per rate.Limit) {
	burst = max(limit/10, 1)
	refill := max(limit-burst-1, 1)
	return burst, rate.Limit(float64(refill) / window.Seconds())
}

// Pause holds every caller back for d, as a 429's Retry-After asks.
func (l *Limiter) Pause(d time.Duration) {
	until := time.Now().Add(d)
	l.mu.Lock()
	if until.After(l.pausedUntil) {
		l.pausedUntil = until
	}
	l.mu.Unlock()
}

// PausedFor is what is left of the current pause.
func (l *Limiter) PausedFor() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return max(time.Until(l.pausedUntil), 0)
}

// Wait takes one admission, first sitting out a vendor pause. The wait
// happens here, with the message kept alive by the bus, rather than by
// handing the message back: every redelivery counts toward MaxDeliver, and
// a message must not be dead-lettered for being patient. Only a wait
// longer than maxWait (or than ctx allows) hands it back, as a
// bus.RetryAfter wrapping ErrDeferred with that delay.
func (l *Limiter) Wait(ctx context.Context, vendor string, maxWait time.Duration) error {
	for {
		now := time.Now()
		l.mu.Lock()
		d := l.pausedUntil.Sub(now)
		l.mu.Unlock()
		if d <= 0 {
			break
		}
		if err := sleep(ctx, vendor, now, d, maxWait, "paused by Retry-After"); err != nil {
			return err
		}
	}
	now := time.Now()
	r := l.bucket.ReserveN(now, 1)
	if !r.OK() {
		return bus.RetryAfter(fmt.Errorf("%s: %w", vendor, ErrDeferred), l.window)
	}
	if d := r.DelayFrom(now); d > 0 {
		if err := sleep(ctx, vendor, now, d, maxWait, "rate budget"); err != nil {
			r.CancelAt(time.Now())
			return err
		}
	}
	return l.admit(ctx, vendor, maxWait)
}

// admit waits until a request may leave without putting more than limit
// requests in any window, and records it.
func (l *Limiter) admit(ctx context.Context, vendor string, maxWait time.Duration) error {
	for {
		l.mu.Lock()
		now := time.Now()
		var d time.Duration
		if len(l.sent) == l.limit {
			d = l.sent[0].Add(l.window + l.margin).Sub(now)
		}
		if d <= 0 {
			if len(l.sent) == l.limit {
				copy(l.sent, l.sent[1:])
				l.sent = l.sent[:len(l.sent)-1]
			}
			l.sent = append(l.sent, now)
			l.mu.Unlock()
			return nil
		}
		l.mu.Unlock()
		if err := sleep(ctx, vendor, now, d, maxWait, "rate window"); err != nil {
			return err
		}
	}
}

// sleep waits d, or hands the call back (ErrDeferred) when d is more than
// maxWait or than ctx has left.
func sleep(ctx context.Context, vendor string, now time.Time, d, maxWait time.Duration, why string) error {
	if dl, ok := ctx.Deadline(); d > maxWait || (ok && now.Add(d).After(dl)) {
		return bus.RetryAfter(fmt.Errorf("%s %s: %w", vendor, why, ErrDeferred), d)
	}
	if !wait.Sleep(ctx, d) {
		return fmt.Errorf("%s: wait for %s: %w", vendor, why, context.Cause(ctx))
	}
	return nil
}
