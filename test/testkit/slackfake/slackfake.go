// Package slackfake is Slack's pace for the fake incoming webhook of
// testkit/fakes: about one message a second per webhook, 429 with
// Retry-After beyond it, counting the clients that did not wait as told.
package slackfake

import (
	"math"
	"strconv"
	"sync"
	"time"
)

// Pacer admits one message per Interval. A message that comes sooner is
// refused with the time left as Retry-After; one that comes before an
// earlier Retry-After has run out is counted as an unanswered 429.
type Pacer struct {
	mu       sync.Mutex
	interval time.Duration
	last     time.Time // last admission
	until    time.Time // end of the last Retry-After given
	refused  int
	ignored  int
	admitted int
}

// NewPacer admits one message per interval (0: every message).
func NewPacer(interval time.Duration) *Pacer { return &Pacer{interval: interval} }

// SetInterval changes the pace (0: none).
func (p *Pacer) SetInterval(d time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.interval = d
}

// Admit decides on a message arriving at now. When it is refused,
// retryAfter is the Retry-After header value to send with the 429.
func (p *Pacer) Admit(now time.Time) (ok bool, retryAfter string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Before(p.until) {
		p.ignored++
	}
	if p.interval <= 0 || p.last.IsZero() || now.Sub(p.last) >= p.interval {
		p.last = now
		p.admitted++
		return true, ""
	}
	wait := p.last.Add(p.interval).Sub(now)
	// Slack sends whole seconds; round up so that a client that waits
	// exactly as told arrives after the pace allows it.
	secs := int(math.Ceil(wait.Seconds()))
	p.until = now.Add(time.Duration(secs) * time.Second)
	p.refused++
	return false, strconv.Itoa(secs)
}

// Stats are the pacer's counts.
type Stats struct {
	// Admitted messages, and Refused ones (answered 429).
	Admitted, Refused int
	// Unanswered counts messages that arrived before the Retry-After of an
	// earlier 429 had run out: a client that did not honour it.
	Unanswered int
}

// Stats returns the counts so far.
func (p *Pacer) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return Stats{Admitted: p.admitted, Refused: p.refused, Unanswered: p.ignored}
}
