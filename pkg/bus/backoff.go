package bus

import (
	"math/rand/v2"
	"time"
)

// retryDelay is how long a failed delivery waits before the next attempt:
// what the handler asked for with RetryAfter, else the backoff.
func (c *Consumer) retryDelay(handlerErr error, delivered uint64) time.Duration {
	if d, ok := retryAfter(handlerErr); ok {
		return d
	}
	return backoff(c.cfg.BackoffBase, c.cfg.BackoffMax, delivered)
}

// backoff is the delay after the n-th failed delivery:
// b = min(max, base*2^(n-1)), then a random value in [b/2, b] so that a
// burst of failures does not come back as a burst.
func backoff(base, maxDelay time.Duration, delivered uint64) time.Duration {
	b := base
	for i := uint64(1); i < delivered && b < maxDelay; i++ {
		b *= 2
	}
	b = min(b, maxDelay)
	half := b / 2
	return half + rand.N(b-half+1) // #nosec G404 -- retry jitter needs spread, not unpredictability
}
