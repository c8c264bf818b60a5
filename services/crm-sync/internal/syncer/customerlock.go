package syncer

import (
	"context"
	"sync"
)

// customerLocks lets one delivery per customer through at a time within
// this process, from its intent to its outcome, without holding a database
// connection while it waits or while the CRM is called. Deliveries in other
// processes are ordered by the overlap check instead (see the package
// comment); this lock only spares a single process the repair pushes.
type customerLocks struct {
	mu   sync.Mutex
	held map[string]*customerLock
}

type customerLock struct {
	// sem holds one token while a delivery of the customer runs.
	sem  chan struct{}
	refs int
}

// lock waits for key's turn; the returned func gives it back and must be
// called exactly once (defer it, so a panic gives it back too).
func (l *customerLocks) lock(ctx context.Context, key string) (func(), error) {
	l.mu.Lock()
	if l.held == nil {
		l.held = map[string]*customerLock{}
	}
	e := l.held[key]
	if e == nil {
		e = &customerLock{sem: make(chan struct{}, 1)}
		l.held[key] = e
	}
	e.refs++
	l.mu.Unlock()
	forget := func() {
		l.mu.Lock()
		if e.refs--; e.refs == 0 {
			delete(l.held, key)
		}
		l.mu.Unlock()
	}
	select {
	case e.sem <- struct{}{}:
		return func() { <-e.sem; forget() }, nil
	case <-ctx.Done():
		forget()
		return nil, ctx.Err()
	}
}
