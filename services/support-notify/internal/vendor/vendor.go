// Package vendor makes support-notify's outbound HTTP calls (Zendesk,
// Slack) and turns their answers into the bus's retry vocabulary: 429 waits
// for the vendor's Retry-After, 5xx and timeouts retry with backoff, any
// other 4xx is permanent and dead-letters with a redacted body.
package vendor

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/bus"

	"github.com/launchready/launchready/services/support-notify/internal/metrics"
)

// NewHTTPClient returns a traced client whose every call ends within
// timeout, so a hanging vendor costs one bounded worker slot, never a stuck
// consumer.
func NewHTTPClient(timeout time.Duration, tp trace.TracerProvider) *http.Client {
	base := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	}
	var opts []otelhttp.Option
	if tp != nil {
		opts = append(opts, otelhttp.WithTracerProvider(tp))
	}
	return &http.Client{
		Transport: otelhttp.NewTransport(base, opts...),
		Timeout:   timeout,
		// Vendors answer API calls directly; a redirect would resend
		// credentials somewhere unexpected.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Caller sends requests to one vendor and classifies the answers.
type Caller struct {
	Vendor  string // "zendesk", "slack": metric label and error prefix
	HTTP    *http.Client
	Metrics *metrics.Metrics
	// DefaultRetryAfter is used for a 429 without a readable Retry-After.
	DefaultRetryAfter time.Duration
}

// StatusError is a non-2xx answer. Body is redacted and at most 512 bytes.
type StatusError struct {
	Vendor string
	Op     string
	Status int
	Body   string
}

func (e *StatusError) Error() string {
	if e.Body == "" {
		return fmt.Sprintf("%s %s: HTTP %d", e.Vendor, e.Op, e.Status)
	}
	return fmt.Sprintf("%s %s: HTTP %d: %s", e.Vendor, e.Op, e.Status, e.Body)
}

// Status returns the HTTP status of err's StatusError, or 0.
func Status(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// maxBody bounds what a vendor answer may make us buffer.
const maxBody = 1 << 20

// Do sends req (op names it in errors, e.g. "create ticket") and returns the
// body of a 2xx answer. Errors are already classified for the bus:
// bus.RetryAfter for 429, bus.Permanent for other 4xx, plain errors for
// 5xx, 408, 409 and transport failures.
func (c *Caller) Do(req *http.Request, op string) ([]byte, error) {
	resp, err := c.HTTP.Do(req)
	if err != nil {
		c.count("error")
		return nil, fmt.Errorf("%s %s: %w", c.Vendor, op, stripURL(err))
	}
	defer resp.Body.Close()
	body, readErr := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		if readErr != nil {
			// The vendor accepted the call; the answer broke on the way.
			// Retrying is safe because every call carries its own
			// idempotency (Idempotency-Key, sent-alert record).
			c.count("error")
			return nil, fmt.Errorf("%s %s: read answer: %w", c.Vendor, op, stripURL(readErr))
		}
		c.count("ok")
		return body, nil
	}
	se := &StatusError{Vendor: c.Vendor, Op: op, Status: resp.StatusCode, Body: clip(bus.Redact(string(body)), 512)}
	switch {
	case resp.StatusCode == http.StatusTooManyRequests:
		c.count("rate_limited")
		return nil, bus.RetryAfter(se, c.retryAfter(resp.Header.Get("Retry-After"), time.Now()))
	case resp.StatusCode >= 500, resp.StatusCode == http.StatusRequestTimeout, resp.StatusCode == http.StatusConflict:
		c.count("retryable")
		return nil, se
	default:
		c.count("rejected")
		return nil, bus.Permanent(se)
	}
}

func (c *Caller) count(outcome string) {
	if c.Metrics != nil {
		c.Metrics.Calls.WithLabelValues(c.Vendor, outcome).Inc()
	}
}

// Retry-After bounds: at least a second so a "0" cannot spin, at most 15
// minutes so a confused vendor cannot park an event for a day.
const (
	minRetryAfter = time.Second
	maxRetryAfter = 15 * time.Minute
)

func (c *Caller) retryAfter(h string, now time.Time) time.Duration {
	d := ParseRetryAfter(h, now)
	if d <= 0 {
		d = c.DefaultRetryAfter
		if d <= 0 {
			d = 30 * time.Second
		}
	}
	return min(max(d, minRetryAfter), maxRetryAfter)
}

// ParseRetryAfter reads delta-seconds or an HTTP date; 0 when absent or
// unreadable.
func ParseRetryAfter(h string, now time.Time) time.Duration {
	h = strings.TrimSpace(h)
	if h == "" {
		return 0
	}
	if secs, err := strconv.ParseFloat(h, 64); err == nil {
		if secs < 0 {
			return 0
		}
		return time.Duration(secs * float64(time.Second))
	}
	if t, err := http.ParseTime(h); err == nil {
		if d := t.Sub(now); d > 0 {
			return d
		}
	}
	return 0
}

// stripURL drops the request URL from transport errors: a Slack webhook URL
// is itself the secret, and url.Error prints it.
func stripURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		if ue.Timeout() {
			return fmt.Errorf("%s: timeout: %w", ue.Op, ue.Err)
		}
		return fmt.Errorf("%s: %w", ue.Op, ue.Err)
	}
	return err
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}
