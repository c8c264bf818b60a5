package endpoint

import (
	"context"
	"time"
)

// ScheduleFirstAfter is schedule, for tests that cannot wait FirstCheckDelay.
func (c *Checker) ScheduleFirstAfter(ctx context.Context, first, interval time.Duration) error {
	return c.schedule(ctx, first, interval)
}
