package crm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"
	"golang.org/x/time/rate"

	"github.com/launchready/launchready/pkg/bus"
)

// Call outcomes, the values of lr_crm_calls_total's outcome label.
const (
	OutcomeOK          = "ok"
	OutcomeRateLimited = "rate_limited" // the vendor answered 429
	OutcomeServerError = "server_error" // 5xx
	OutcomeRejected    = "rejected"     // any other 4xx
	OutcomeTimeout     = "timeout"
	OutcomeError       = "error"    // connection refused, reset, ...
	OutcomeDeferred    = "deferred" // not sent: local budget or a vendor pause
)

// ErrDeferred means a call was not made because the shared rate budget or a
// vendor's Retry-After pause would have held it too long; the message is
// redelivered when the budget allows.
var ErrDeferred = errors.New("crm call deferred by rate limit")

// maxBody caps what is read from a response: enough for any id or error.
const maxBody = 64 << 10

// Metrics are the CRM call metrics.
type Metrics struct {
	Calls   *prometheus.CounterVec
	Seconds *prometheus.HistogramVec
}

// NewMetrics registers lr_crm_calls_total and lr_crm_call_seconds on reg,
// reusing them when a service in the same process already did.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "lr_crm_calls_total",
			Help: "Outbound CRM calls by vendor and outcome (ok, rate_limited, server_error, rejected, timeout, error, deferred).",
		}, []string{"vendor", "outcome"}),
		Seconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "lr_crm_call_seconds",
			Help:    "Duration of outbound CRM calls that reached the network.",
			Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"vendor"}),
	}
	if reg == nil {
		return m
	}
	m.Calls = register(reg, m.Calls)
	m.Seconds = register(reg, m.Seconds)
	return m
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
	}
	return c
}

// CallerConfig configures the shared HTTP caller.
type CallerConfig struct {
	Vendor string
	// Timeout bounds one request (CRM_TIMEOUT).
	Timeout time.Duration
	// Limit requests per Window (CRM_RATE_LIMIT per CRM_RATE_WINDOW).
	Limit  int
	Window time.Duration
	// MaxWait is the longest a call waits for the rate budget or a vendor
	// pause before the message is handed back to the bus with that delay
	// (default 20 s).
	MaxWait time.Duration
	// Transport is the base transport; nil means http.DefaultTransport.
	Transport      http.RoundTripper
	TracerProvider trace.TracerProvider
	Metrics        *Metrics
	// Secrets are removed from any response body kept as an error reason.
	Secrets []string
	// HideURLPath keeps the URL's path and query out of spans: a webhook
	// URL (Zapier, Make, Slack-style) is often itself the credential.
	HideURLPath bool
}

// Caller makes every outbound CRM request of one service instance. Its
// token bucket is shared by all workers, so the configured rate holds for
// the process whatever the consumer concurrency.
type Caller struct {
	cfg     CallerConfig
	client  *http.Client
	limiter *rate.Limiter
	metrics *Metrics

	mu          sync.Mutex
	pausedUntil time.Time
	// sent holds the admission times of the last Limit requests: the hard
	// sliding-window cap behind the token bucket.
	sent   []time.Time
	margin time.Duration
}

// NewCaller builds the caller.
//
// The bucket holds Limit/10 tokens (at least 1) and refills at
// (Limit - burst - 1) per Window, so that no interval of length Window
// sees more than Limit requests leave, a full burst included. HubSpot
// counts its limits over a rolling window, so a plain Limit-per-Window rate
// with a Limit-sized burst could reach twice the limit in one window.
// Behind the bucket a sliding-window log of the last Limit admissions is
// the hard cap: a request is let through only once the Limit-th request
// before it is more than Window old, measured when it actually leaves, so
// a worker that was descheduled after its token came due cannot bunch up
// with the next ones. A margin of 5% of Window (at least 50 ms) absorbs
// the scheduling and connection jitter between leaving here and arriving
// at the vendor.
func NewCaller(cfg CallerConfig) *Caller {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Limit <= 0 {
		cfg.Limit = 100
	}
	if cfg.Window <= 0 {
		cfg.Window = 10 * time.Second
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = 20 * time.Second
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	base := cfg.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	var topts []otelhttp.Option
	if cfg.TracerProvider != nil {
		topts = append(topts, otelhttp.WithTracerProvider(cfg.TracerProvider))
	}
	topts = append(topts, otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
		return cfg.Vendor + " " + r.Method
	}))
	var rt http.RoundTripper = otelhttp.NewTransport(restoreURL{base}, topts...)
	if cfg.HideURLPath {
		rt = hideURL{rt}
	}
	burst, per := BucketFor(cfg.Limit, cfg.Window)
	return &Caller{
		cfg:     cfg,
		client:  &http.Client{Timeout: cfg.Timeout, Transport: rt},
		limiter: rate.NewLimiter(per, burst),
		metrics: cfg.Metrics,
		sent:    make([]time.Time, 0, cfg.Limit),
		margin:  max(cfg.Window/20, 50*time.Millisecond),
	}
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

// BucketFor returns the token bucket that keeps any window of length window
// at or under limit requests (see NewCaller).
func BucketFor(limit int, window time.Duration) (burst int, per rate.Limit) {
	burst = limit / 10
	if burst < 1 {
		burst = 1
	}
	refill := limit - burst - 1
	if refill < 1 {
		refill = 1
	}
	return burst, rate.Limit(float64(refill) / window.Seconds())
}

// Response is a vendor's answer, body capped at 64 KiB.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Do sends req once the shared budget allows. It returns an error only when
// no HTTP answer arrived: a deferral (bus.RetryAfter wrapping ErrDeferred),
// a timeout or a transport error (plain errors, retried with backoff). A
// 429 pauses every worker of the process for its Retry-After.
func (c *Caller) Do(ctx context.Context, op string, req *http.Request) (*Response, Call, error) {
	call := Call{Op: op}
	if err := c.wait(ctx); err != nil {
		call.Outcome = OutcomeDeferred
		if !errors.Is(err, ErrDeferred) {
			call.Outcome = OutcomeTimeout
		}
		c.metrics.Calls.WithLabelValues(c.cfg.Vendor, call.Outcome).Inc()
		call.Detail = err.Error()
		return nil, call, err
	}
	start := time.Now()
	resp, err := c.client.Do(req.WithContext(ctx))
	call.Duration = time.Since(start)
	c.metrics.Seconds.WithLabelValues(c.cfg.Vendor).Observe(call.Duration.Seconds())
	if err != nil {
		call.Outcome = OutcomeError
		if isTimeout(err) {
			call.Outcome = OutcomeTimeout
		}
		c.metrics.Calls.WithLabelValues(c.cfg.Vendor, call.Outcome).Inc()
		// The URL in a transport error is ours and carries no secret, but
		// the error text is kept short and generic all the same.
		err = fmt.Errorf("%s %s: %s", c.cfg.Vendor, op, transportReason(err))
		call.Detail = err.Error()
		return nil, call, err
	}
	defer resp.Body.Close()
	body, rerr := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	out := &Response{Status: resp.StatusCode, Header: resp.Header, Body: body}
	call.Status = resp.StatusCode
	call.Outcome = outcomeFor(resp.StatusCode)
	c.metrics.Calls.WithLabelValues(c.cfg.Vendor, call.Outcome).Inc()
	if resp.StatusCode == http.StatusTooManyRequests {
		c.pause(retryAfter(resp.Header, time.Now(), c.cfg.Window))
	}
	if rerr != nil && resp.StatusCode < 300 {
		call.Outcome = OutcomeError
		err := fmt.Errorf("%s %s: read response: %s", c.cfg.Vendor, op, transportReason(rerr))
		call.Detail = err.Error()
		return nil, call, err
	}
	return out, call, nil
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

// wait takes one token from the shared bucket, first sitting out a
// vendor's Retry-After pause. The wait happens here, with the message kept
// alive by the bus, rather than by handing the message back: every
// redelivery counts toward MaxDeliver, and a message must not be
// dead-lettered for being patient. Only a wait longer than MaxWait (or than
// ctx allows) hands the message back with that delay.
func (c *Caller) wait(ctx context.Context) error {
	for {
		now := time.Now()
		c.mu.Lock()
		paused := c.pausedUntil
		c.mu.Unlock()
		d := paused.Sub(now)
		if d <= 0 {
			break
		}
		if err := c.sleep(ctx, now, d, "paused by Retry-After"); err != nil {
			return err
		}
	}
	now := time.Now()
	r := c.limiter.ReserveN(now, 1)
	if !r.OK() {
		return bus.RetryAfter(fmt.Errorf("%s: %w", c.cfg.Vendor, ErrDeferred), c.cfg.Window)
	}
	d := r.DelayFrom(now)
	if d > 0 {
		if err := c.sleep(ctx, now, d, "rate budget"); err != nil {
			r.CancelAt(time.Now())
			return err
		}
	}
	return c.admit(ctx)
}

// admit waits until a request may leave without putting more than Limit
// requests in any window, and records it.
func (c *Caller) admit(ctx context.Context) error {
	for {
		c.mu.Lock()
		now := time.Now()
		var d time.Duration
		if len(c.sent) == c.cfg.Limit {
			d = c.sent[0].Add(c.cfg.Window + c.margin).Sub(now)
		}
		if d <= 0 {
			if len(c.sent) == c.cfg.Limit {
				copy(c.sent, c.sent[1:])
				c.sent = c.sent[:len(c.sent)-1]
			}
			c.sent = append(c.sent, now)
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock()
		if err := c.sleep(ctx, now, d, "rate window"); err != nil {
			return err
		}
	}
}

func (c *Caller) sleep(ctx context.Context, now time.Time, d time.Duration, why string) error {
	if dl, ok := ctx.Deadline(); d > c.cfg.MaxWait || (ok && now.Add(d).After(dl)) {
		return bus.RetryAfter(fmt.Errorf("%s %s: %w", c.cfg.Vendor, why, ErrDeferred), d)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("%s: wait for %s: %w", c.cfg.Vendor, why, ctx.Err())
	}
}

func (c *Caller) pause(d time.Duration) {
	until := time.Now().Add(d)
	c.mu.Lock()
	if until.After(c.pausedUntil) {
		c.pausedUntil = until
	}
	c.mu.Unlock()
}

// Classify turns an HTTP answer into the bus's retry decision: nil for 2xx;
// bus.RetryAfter with the vendor's Retry-After for 429; a plain error for
// 5xx (backoff); bus.Permanent with the response body, secrets stripped,
// for any other status, so the message is dead-lettered with its reason.
func (c *Caller) Classify(op string, resp *Response) error {
	switch {
	case resp.Status < 300:
		return nil
	case resp.Status == http.StatusTooManyRequests:
		return bus.RetryAfter(fmt.Errorf("%s %s: 429 rate limited", c.cfg.Vendor, op),
			retryAfter(resp.Header, time.Now(), c.cfg.Window))
	case resp.Status >= 500:
		return fmt.Errorf("%s %s: %d %s", c.cfg.Vendor, op, resp.Status, c.Reason(resp.Body, 200))
	}
	return bus.Permanent(fmt.Errorf("%s %s: %d %s", c.cfg.Vendor, op, resp.Status, c.Reason(resp.Body, 700)))
}

// Reason is a response body fit for an error message and the DLQ: our own
// credentials removed, then anything bus.Redact recognises as a secret, on
// one line, at most limit bytes.
func (c *Caller) Reason(body []byte, limit int) string {
	s := string(bytes.TrimSpace(body))
	for _, sec := range c.cfg.Secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "[redacted]")
		}
	}
	s = bus.Redact(s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return s
}

// retryAfter reads Retry-After (seconds or an HTTP date). Without one, the
// rate window is a safe guess: HubSpot's limits reset within it.
func retryAfter(h http.Header, now time.Time, def time.Duration) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return def
	}
	if n, err := strconv.Atoi(v); err == nil && n >= 0 {
		d := time.Duration(n) * time.Second
		if d == 0 {
			d = 100 * time.Millisecond
		}
		return min(d, time.Hour)
	}
	if t, err := http.ParseTime(v); err == nil {
		return min(max(t.Sub(now), 100*time.Millisecond), time.Hour)
	}
	return def
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

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
	return "transport error"
}
