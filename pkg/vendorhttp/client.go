package vendorhttp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/redact"
	"github.com/launchready/launchready/pkg/wait"
)

// Outcomes of one attempt, as Call.Outcome reports them.
const (
	OutcomeOK          = "ok"
	OutcomeRateLimited = "rate_limited" // the vendor answered 429
	OutcomeServerError = "server_error" // 5xx
	OutcomeRejected    = "rejected"     // any other answer, redirects included
	OutcomeTimeout     = "timeout"
	OutcomeError       = "error"    // connection refused, reset, a broken answer
	OutcomeDeferred    = "deferred" // not sent: rate budget or a vendor pause
)

// ErrRedirect matches the error of a redirect answer, which is refused.
var ErrRedirect = errors.New("redirect refused")

// reasonLimit bounds a vendor's answer kept in an error.
const reasonLimit = 512

// Config is one vendor's client policy.
type Config struct {
	// Vendor names it in spans, errors and Call.
	Vendor string
	// Timeout bounds one attempt, answer included (default 10 s).
	Timeout time.Duration
	// MaxBody caps how much of an answer is read (default 64 KiB).
	MaxBody int64
	// Transport is the base transport; nil means one with dial, TLS and
	// response-header timeouts of its own.
	Transport      http.RoundTripper
	TracerProvider trace.TracerProvider
	// HideURLPath keeps the URL's path and query out of spans: a webhook
	// URL (Zapier, Make, Slack) is often itself the credential.
	HideURLPath bool
	// Secrets are removed, by value, from every error text and kept
	// answer.
	Secrets []string
	// Limiter, when set, is the rate budget every attempt waits for.
	Limiter *Limiter
	// MaxWait is the longest a call waits in place (rate budget, vendor
	// pause, backoff) before it gives up and lets the bus redeliver
	// (default 20 s).
	MaxWait time.Duration
	// Retry repeats a call in place; the zero value makes one attempt.
	Retry Backoff
	// RetryAfter reads a 429's (or 503's) Retry-After.
	RetryAfter RetryAfterPolicy
	// TransientStatuses are 4xx answers worth retrying besides 429 (for
	// example 408 and 409 for a vendor that reports edit conflicts).
	TransientStatuses []int
	// OnCall sees every attempt, for the service's metrics.
	OnCall func(Call)
}

// Call is one attempt, as metrics and a service's call log record it.
type Call struct {
	Op     string
	Status int
	// Outcome is one of the Outcome constants.
	Outcome string
	// Sent is true when the request reached the network.
	Sent     bool
	Duration time.Duration
	// Transient is true when the answer or failure is worth retrying.
	Transient bool
	// Detail is the redacted error or the start of a failed answer.
	Detail string
}

// Response is a vendor's answer, its body capped at Config.MaxBody.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// StatusError is an answer outside 2xx. Body is the start of the answer,
// redacted.
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

// Is makes a redirect answer match ErrRedirect.
func (e *StatusError) Is(target error) bool { return target == ErrRedirect && isRedirect(e.Status) }

// Status returns the HTTP status of err's StatusError, or 0.
func Status(err error) int {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Status
	}
	return 0
}

// Client calls one vendor; it is safe for concurrent use.
type Client struct {
	cfg  Config
	http *http.Client
}

// New builds a client.
func New(cfg Config) *Client {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 64 << 10
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 20 * time.Second
	}
	base := cfg.Transport
	if base == nil {
		base = newTransport(cfg.Timeout)
	}
	opts := []otelhttp.Option{otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
		return cfg.Vendor + " " + r.Method
	})}
	if cfg.TracerProvider != nil {
		opts = append(opts, otelhttp.WithTracerProvider(cfg.TracerProvider))
	}
	var rt http.RoundTripper = otelhttp.NewTransport(restoreURL{base}, opts...)
	if cfg.HideURLPath {
		rt = hideURL{rt}
	}
	return &Client{cfg: cfg, http: &http.Client{
		Transport: rt,
		Timeout:   cfg.Timeout,
		// A redirect would send the body (signed for the first URL) and
		// the credentials somewhere the configuration never named.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func newTransport(timeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
	}
}

// Vendor is the configured vendor name.
func (c *Client) Vendor() string { return c.cfg.Vendor }

// Do sends req (op names it in errors and calls, e.g. "create ticket") and
// returns the vendor's answer, whatever its status, with one Call per
// attempt. The error is non-nil only when no usable answer came: a
// deferral (bus.RetryAfter wrapping ErrDeferred), a timeout or transport
// failure (plain errors, with the URL left out), a broken 2xx answer, or a
// redirect (bus.Permanent of a StatusError matching ErrRedirect).
func (c *Client) Do(ctx context.Context, op string, req *http.Request) (*Response, []Call, error) {
	var calls []Call
	for attempt := 1; ; attempt++ {
		resp, call, err := c.attempt(ctx, op, req)
		calls = append(calls, call)
		delay, again := c.again(ctx, attempt, call, resp)
		if !again || !c.rewind(req) || !wait.Sleep(ctx, delay) {
			return resp, calls, err
		}
	}
}

// Send is Do then Classify: the body of a 2xx answer, or an error the bus
// knows how to retry.
func (c *Client) Send(ctx context.Context, op string, req *http.Request) ([]byte, error) {
	resp, _, err := c.Do(ctx, op, req)
	if err != nil {
		return nil, err
	}
	if err := c.Classify(op, resp); err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// Classify turns an answer into the bus's retry decision: nil for 2xx;
// bus.RetryAfter with the vendor's Retry-After for 429; a plain
// *StatusError for 5xx and the transient statuses (backoff);
// bus.Permanent of a *StatusError for anything else, so the message is
// dead-lettered with the vendor's reason.
func (c *Client) Classify(op string, resp *Response) error {
	if resp.Status >= 200 && resp.Status < 300 {
		return nil
	}
	se := &StatusError{Vendor: c.cfg.Vendor, Op: op, Status: resp.Status, Body: c.Reason(resp.Body, reasonLimit)}
	switch {
	case resp.Status == http.StatusTooManyRequests:
		return bus.RetryAfter(se, c.cfg.RetryAfter.Delay(resp.Header, time.Now()))
	case c.transient(resp.Status):
		return se
	}
	return bus.Permanent(se)
}

// Reason is an answer fit for an error message or a call log: redacted
// (the configured secrets by value, then anything shaped like one), on one
// line, at most limit bytes.
func (c *Client) Reason(body []byte, limit int) string {
	s := redact.Text(string(bytes.TrimSpace(body)), c.cfg.Secrets...)
	return redact.Truncate(strings.Join(strings.Fields(s), " "), limit)
}

func (c *Client) transient(status int) bool {
	return status >= 500 || status == http.StatusTooManyRequests || slices.Contains(c.cfg.TransientStatuses, status)
}

// attempt makes one try: the rate budget, the request, the answer read.
func (c *Client) attempt(ctx context.Context, op string, req *http.Request) (*Response, Call, error) {
	call := Call{Op: op}
	defer func() {
		if c.cfg.OnCall != nil {
			c.cfg.OnCall(call)
		}
	}()
	if c.cfg.Limiter != nil {
		if err := c.cfg.Limiter.Wait(ctx, c.cfg.Vendor, c.cfg.MaxWait); err != nil {
			call.Outcome = OutcomeDeferred
			if !errors.Is(err, ErrDeferred) {
				call.Outcome = OutcomeTimeout
			}
			call.Detail = redact.Error(err, c.cfg.Secrets...)
			return nil, call, err
		}
	}
	start := time.Now()
	resp, err := c.http.Do(req.WithContext(ctx))
	call.Sent = true
	call.Duration = time.Since(start)
	if err != nil {
		call.Outcome, call.Transient = OutcomeError, ctx.Err() == nil
		if isTimeout(err) {
			call.Outcome = OutcomeTimeout
		}
		// url.Error prints the URL, which may be the credential itself.
		err = fmt.Errorf("%s %s: %s", c.cfg.Vendor, op, redact.Text(transportReason(err), c.cfg.Secrets...))
		call.Detail = err.Error()
		return nil, call, err
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, c.cfg.MaxBody))
	// Drain a little more so the connection can be reused.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	call.Status = resp.StatusCode
	call.Outcome = outcomeFor(resp.StatusCode)
	call.Transient = c.transient(resp.StatusCode)
	if resp.StatusCode >= 300 {
		call.Detail = c.Reason(body, 500)
	}
	if resp.StatusCode == http.StatusTooManyRequests && c.cfg.Limiter != nil {
		c.cfg.Limiter.Pause(c.cfg.RetryAfter.Delay(resp.Header, time.Now()))
	}
	if isRedirect(resp.StatusCode) {
		call.Detail = ErrRedirect.Error()
		return nil, call, bus.Permanent(fmt.Errorf("%w (not followed: the request is never sent again)",
			&StatusError{Vendor: c.cfg.Vendor, Op: op, Status: resp.StatusCode, Body: ErrRedirect.Error()}))
	}
	if rerr != nil && resp.StatusCode < 300 {
		// The vendor accepted the call; the answer broke on the way. The
		// retry is safe because every vendor write carries its own key.
		call.Outcome, call.Transient = OutcomeError, true
		err := fmt.Errorf("%s %s: read answer: %s", c.cfg.Vendor, op, transportReason(rerr))
		call.Detail = err.Error()
		return nil, call, err
	}
	return &Response{Status: resp.StatusCode, Header: resp.Header, Body: body}, call, nil
}

// again decides whether to try once more, and after how long.
func (c *Client) again(ctx context.Context, attempt int, call Call, resp *Response) (time.Duration, bool) {
	if attempt >= c.cfg.Retry.Attempts || !call.Transient || ctx.Err() != nil {
		return 0, false
	}
	delay := c.cfg.Retry.Delay(attempt)
	if resp != nil && (resp.Status == http.StatusTooManyRequests || resp.Status == http.StatusServiceUnavailable) &&
		resp.Header.Get("Retry-After") != "" {
		delay = c.cfg.RetryAfter.Delay(resp.Header, time.Now())
	}
	if c.cfg.Limiter != nil {
		// The limiter sits the vendor's pause out before the next try.
		delay = max(delay, c.cfg.Limiter.PausedFor())
	}
	if dl, ok := ctx.Deadline(); delay > c.cfg.MaxWait || (ok && time.Until(dl) < delay+c.cfg.Timeout) {
		return 0, false
	}
	return delay, true
}

// rewind makes req's body readable again for the next try.
func (c *Client) rewind(req *http.Request) bool {
	if req.Body == nil || req.Body == http.NoBody {
		return true
	}
	if req.GetBody == nil {
		return false
	}
	b, err := req.GetBody()
	if err != nil {
		return false
	}
	req.Body = b
	return true
}

func outcomeFor(code int) string {
	switch {
	case code < 300:
		return OutcomeOK
	case code == http.StatusTooManyRequests:
		return OutcomeRateLimited
	case code >= 500:
		return OutcomeServerError
	}
	return OutcomeRejected
}

// isRedirect is every 3xx that names another location (304 answers a
// conditional request and names none).
func isRedirect(code int) bool {
	return code >= 300 && code < 400 && code != http.StatusNotModified
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// transportReason describes a failure without the request URL, which
// url.Error would print.
func transportReason(err error) string {
	switch {
	case isTimeout(err):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Op + ": " + op.Err.Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return "transport error: " + ue.Err.Error()
	}
	return "transport error"
}

type realURLKey struct{}

// hideURL shows the tracing transport a URL without path or query; the
// real one travels in the request context to restoreURL, under it.
type hideURL struct{ next http.RoundTripper }

func (h hideURL) RoundTrip(r *http.Request) (*http.Response, error) {
	shown := &url.URL{Scheme: r.URL.Scheme, Host: r.URL.Host, Path: "/"}
	r2 := r.Clone(context.WithValue(r.Context(), realURLKey{}, r.URL))
	r2.URL = shown
	return h.next.RoundTrip(r2)
}

type restoreURL struct{ next http.RoundTripper }

func (t restoreURL) RoundTrip(r *http.Request) (*http.Response, error) {
	if u, ok := r.Context().Value(realURLKey{}).(*url.URL); ok {
		r = r.Clone(r.Context())
		r.URL = u
	}
	return t.next.RoundTrip(r)
}
