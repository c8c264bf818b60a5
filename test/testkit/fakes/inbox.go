package fakes

import (
	"sync"
	"time"
)

// inbox holds what a fake vendor accepted, in arrival order, and wakes
// whoever waits on each arrival.
type inbox[T any] struct {
	mu       sync.Mutex
	items    []T
	accepted chan struct{}
}

func newInbox[T any]() *inbox[T] { return &inbox[T]{accepted: make(chan struct{})} }

func (b *inbox[T]) add(x T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.items = append(b.items, x)
	close(b.accepted)
	b.accepted = make(chan struct{})
}

func (b *inbox[T]) all() []T {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]T(nil), b.items...)
}

// waitFor waits until cond holds over the accepted items, failing tb at
// the deadline; vendor and what word the failure.
func (b *inbox[T]) waitFor(tb TB, vendor string, timeout time.Duration, what string, cond func([]T) bool) []T {
	tb.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		b.mu.Lock()
		ch := b.accepted
		b.mu.Unlock()
		if items := b.all(); cond(items) {
			return items
		}
		select {
		case <-ch:
		case <-deadline.C:
			tb.Fatalf("%s: timed out after %s waiting for %s; got %d messages", vendor, timeout, what, len(b.all()))
			return nil
		}
	}
}
