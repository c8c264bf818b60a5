package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// defaultStallAfter is how long a consumer may go without taking a message
// while its durable has messages waiting before it counts as stalled. It is
// well above what a leader election takes (a few seconds), and well below
// what anyone would wait before asking why the CRM is behind.
const defaultStallAfter = 30 * time.Second

// errStalled ends a pull loop that the watchdog found stuck, so that it
// sets the durable up again and pulls afresh.
var errStalled = errors.New("no progress while messages are pending")

// progress is what the watchdog knows of the runner: when it last took or
// settled a message, why its last pull failed, and whether it is stalled.
type progress struct {
	last    atomic.Int64 // unix nanoseconds
	pullErr atomic.Pointer[string]

	mu      sync.Mutex
	stalled error
	// pendingSince is when the watchdog first saw messages pending with no
	// progress since; zero when it saw none.
	pendingSince time.Time
}

func (p *progress) moved(now time.Time) { p.last.Store(now.UnixNano()) }

func (p *progress) lastMoved() time.Time { return time.Unix(0, p.last.Load()) }

func (p *progress) pullFailed(err error) {
	s := Redact(err.Error())
	p.pullErr.Store(&s)
}

func (p *progress) lastPullError() string {
	if s := p.pullErr.Load(); s != nil {
		return *s
	}
	return ""
}

// Stalled returns why the consumer counts as stalled: it has taken no
// message for StallAfter while its durable had messages waiting. It
// returns nil once messages flow again. A service puts it in /readyz.
func (c *Consumer) Stalled() error {
	c.progress.mu.Lock()
	defer c.progress.mu.Unlock()
	return c.progress.stalled
}

// markMoved records progress, and clears a stall once messages flow again.
func (c *Consumer) markMoved() {
	now := time.Now()
	c.progress.moved(now)
	c.progress.mu.Lock()
	was := c.progress.stalled
	c.progress.stalled = nil
	c.progress.pendingSince = time.Time{}
	c.progress.mu.Unlock()
	if was != nil {
		c.log.Info("consumer moving again", "was", was.Error())
	}
}

// watchProgress checks, while Run pulls, that the runner keeps taking
// messages whenever its durable has some waiting. When it has taken none
// for StallAfter with messages pending, it logs why, makes Stalled (and so
// /readyz) fail, and tells the pull loop to set the durable up again; it
// keeps doing so every StallAfter until messages flow.
//
// It asks JetStream only when the runner has been idle for a check
// interval, so a busy consumer costs nothing.
func (c *Consumer) watchProgress(ctx context.Context, held func() int, reset chan<- struct{}) {
	every := max(c.stallAfter/6, 50*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	var lastReset time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		idle := now.Sub(c.progress.lastMoved())
		if idle < every {
			continue
		}
		pending, ackPending, waiting, err := c.durableBacklog(ctx)
		if err != nil {
			// JetStream does not answer: the pull loop sees the same and
			// retries; without numbers there is no verdict either way.
			continue
		}
		p := &c.progress
		p.mu.Lock()
		if pending == 0 {
			p.pendingSince = time.Time{}
			was := p.stalled
			p.stalled = nil
			p.mu.Unlock()
			if was != nil {
				c.log.Info("consumer has nothing pending any more", "was", was.Error())
			}
			continue
		}
		if p.pendingSince.IsZero() {
			p.pendingSince = now
		}
		since := p.pendingSince
		if last := p.lastMoved(); last.After(since) {
			since = last
		}
		stuckFor := now.Sub(since)
		if stuckFor < c.stallAfter {
			p.mu.Unlock()
			continue
		}
		p.stalled = fmt.Errorf("consumer %s: %w: none taken for %s while %d wait (%d delivered and unacknowledged)",
			c.cfg.Durable, errStalled, stuckFor.Round(time.Second), pending, ackPending)
		p.mu.Unlock()
		if now.Sub(lastReset) < c.stallAfter {
			continue
		}
		lastReset = now
		c.log.Error("consumer made no progress while messages are pending; pulling again from a fresh consumer",
			"stuck_for", stuckFor.Round(time.Second).String(), "pending", pending, "ack_pending", ackPending,
			"pull_requests_waiting", waiting, "held", held(), "last_pull_error", p.lastPullErrorOrNone())
		select {
		case reset <- struct{}{}:
		default:
		}
	}
}

func (p *progress) lastPullErrorOrNone() string {
	if s := p.lastPullError(); s != "" {
		return s
	}
	return "none"
}

// durableBacklog asks the durable's leader for its numbers: messages not
// yet delivered, delivered and unacknowledged, and pull requests waiting.
func (c *Consumer) durableBacklog(ctx context.Context) (pending, ackPending uint64, waiting int, err error) {
	ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cons, err := c.js.Consumer(ictx, c.cfg.Stream, c.cfg.Durable)
	if err != nil {
		return 0, 0, 0, err
	}
	info := cons.CachedInfo()
	return info.NumPending, uint64(info.NumAckPending), info.NumWaiting, nil // #nosec G115 -- JetStream counts are never negative
}
