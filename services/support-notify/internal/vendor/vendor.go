// Package vendor is support-notify's use of the shared vendor client
// (pkg/vendorhttp) for Zendesk and Slack: its timeouts, refusal of
// redirects, Retry-After reading and redaction, with support-notify's own
// policy and metric. 429 waits for the vendor's Retry-After, 5xx, 408,
// 409 and timeouts retry with the bus's backoff, any other answer is
// permanent and dead-letters with a redacted body.
package vendor

import (
	"net/http"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/vendorhttp"

	"github.com/launchready/launchready/services/support-notify/internal/metrics"
)

// Config is one vendor's client.
type Config struct {
	// Vendor is "zendesk" or "slack": metric label and error prefix.
	Vendor string
	// Timeout bounds every call, so a hanging vendor costs one bounded
	// worker slot, never a stuck consumer.
	Timeout        time.Duration
	TracerProvider trace.TracerProvider
	Metrics        *metrics.Metrics
	// Secrets are removed from errors and kept answers by value.
	Secrets []string
	// HideURLPath keeps the path out of spans (a Slack webhook URL is the
	// credential).
	HideURLPath bool
	// Limiter, when set, is the vendor's rate budget (ZENDESK_RATE_LIMIT
	// per ZENDESK_RATE_WINDOW); a 429 pauses it for the Retry-After.
	Limiter *vendorhttp.Limiter
}

// maxBody bounds what a vendor answer may make us buffer.
const maxBody = 1 << 20

// retryAfter bounds a vendor's Retry-After: at least a second so a "0"
// cannot spin, at most 15 minutes so a confused vendor cannot park an
// event for a day; 30 s when the vendor gives none.
var retryAfter = vendorhttp.RetryAfterPolicy{Default: 30 * time.Second, Min: time.Second, Max: 15 * time.Minute, ZeroIsAbsent: true}

// New builds the client. A call is made once: the bus retries, so a
// ticket or an alert never waits in a worker for a vendor to recover.
func New(cfg Config) *vendorhttp.Client {
	return vendorhttp.New(vendorhttp.Config{
		Vendor:         cfg.Vendor,
		Timeout:        cfg.Timeout,
		MaxBody:        maxBody,
		TracerProvider: cfg.TracerProvider,
		HideURLPath:    cfg.HideURLPath,
		Secrets:        cfg.Secrets,
		RetryAfter:     retryAfter,
		Limiter:        cfg.Limiter,
		// 408 and 409 (Zendesk's edit conflict) clear up on their own.
		TransientStatuses: []int{http.StatusRequestTimeout, http.StatusConflict},
		OnCall: func(c vendorhttp.Call) {
			if cfg.Metrics != nil {
				cfg.Metrics.Calls.WithLabelValues(cfg.Vendor, outcomeLabel(c)).Inc()
			}
		},
	})
}

// outcomeLabel is lr_support_calls_total's outcome: ok, rate_limited,
// retryable, rejected or error.
func outcomeLabel(c vendorhttp.Call) string {
	switch c.Outcome {
	case vendorhttp.OutcomeOK, vendorhttp.OutcomeRateLimited:
		return c.Outcome
	case vendorhttp.OutcomeServerError:
		return "retryable"
	case vendorhttp.OutcomeRejected:
		if c.Transient {
			return "retryable"
		}
		return "rejected"
	}
	return "error"
}
