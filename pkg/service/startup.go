package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/redact"
)

// The one start-up policy, for every dependency step of every service: a
// step whose failure is transient (the database or the broker not up yet)
// is retried after 250 ms, then twice as long each time up to 5 s, until
// Spec.StartTimeout; any other failure (a bad URL, a migration that does
// not apply) fails the start at once. Compose and Kubernetes start
// everything together, so waiting a little is normal; waiting forever
// would hide a dependency that never comes.
const (
	firstRetry = 250 * time.Millisecond
	maxRetry   = 5 * time.Second
)

// retry runs step under the start-up policy.
func (s *supervisor) retry(ctx context.Context, what string, transient func(error) bool, step func(context.Context) error) error {
	wait := firstRetry
	for attempt := 1; ; attempt++ {
		err := step(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || !transient(err) {
			return fmt.Errorf("%s: %w", what, err)
		}
		s.log.WarnContext(ctx, what+" failed; retrying", "attempt", attempt, "retry_in", wait.String(), "error", redact.Error(err))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w", what, errors.Join(err, ctx.Err()))
		case <-s.dead:
			t.Stop()
			return fmt.Errorf("%s: %w", what, err)
		case <-t.C:
		}
		wait = min(2*wait, maxRetry)
	}
}

func isNATSUnavailable(err error) bool { return errors.Is(err, bus.ErrUnavailable) }
