// Package wait pauses a goroutine for a while, unless its context ends
// first: the one sleep that retry loops, pollers and backoffs share.
package wait

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx ends; it reports whether d elapsed with ctx
// still live. A d of zero or less does not wait.
func Sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
