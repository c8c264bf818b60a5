package webhook

import (
	"context"
	"time"
)

// admission bounds how many request bodies are held in memory at once.
//
// Every request that reads its body takes a slot of all. A request whose
// body is not known to be short (no Content-Length, or one above the short
// bound) also takes a slot of long, which has room for only part of all:
// the rest is kept back for short bodies. Every Stripe event is a few KiB,
// so a flood of large uploads, signed or not, can fill long but never all,
// and a real event still finds a slot. Memory held by bodies is bounded by
// len(long)*MaxBody + (len(all)-len(long))*shortBody.
//
// A request that finds no slot waits up to wait, in arrival order (Go
// channel senders queue FIFO), then gives up.
type admission struct {
	all  chan struct{}
	long chan struct{}
	wait time.Duration
}

// newAdmission lets long bodies use a quarter of the slots, rounded down
// but at least one, and keeps the rest for short bodies. A quarter because
// each long body may be MaxBody (1 MiB by default) while a short one is at
// most ShortBody: with the default of 32, large uploads hold 8 MiB at most.
func newAdmission(slots int, wait time.Duration) *admission {
	return &admission{
		all:  make(chan struct{}, slots),
		long: make(chan struct{}, longSlots(slots)),
		wait: wait,
	}
}

// longSlots is how many of n slots bodies not known to be short may use.
func longSlots(n int) int { return max(1, n/4) }

// acquire takes the slots a request needs, waiting at most a.wait in all.
// It reports false when the wait ran out or ctx ended first; nothing is
// held then.
func (a *admission) acquire(ctx context.Context, short bool) bool {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	if !short && !a.take(ctx, a.long, &timer) {
		return false
	}
	if !a.take(ctx, a.all, &timer) {
		if !short {
			<-a.long
		}
		return false
	}
	return true
}

// take sends on sem at once when it has room, else waits on it until the
// shared timer (started on the first wait) fires or ctx ends.
func (a *admission) take(ctx context.Context, sem chan struct{}, timer **time.Timer) bool {
	select {
	case sem <- struct{}{}:
		return true
	default:
	}
	if *timer == nil {
		*timer = time.NewTimer(a.wait)
	}
	select {
	case sem <- struct{}{}:
		return true
	case <-(*timer).C:
		return false
	case <-ctx.Done():
		return false
	}
}

// release returns what acquire took.
func (a *admission) release(short bool) {
	<-a.all
	if !short {
		<-a.long
	}
}
