package stripeapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/form"

	"github.com/launchready/launchready/pkg/vendorhttp"
)

// ErrRateLimited: Stripe kept answering rate-limit 429s for longer than
// Config.RateLimitPatience.
var ErrRateLimited = errors.New("stripe rate limit: still refused after backing off")

// Client reads the Stripe API. It is safe for concurrent use; every caller
// shares one rate budget.
type Client struct {
	cfg     Config
	backend stripe.Backend
	limiter *vendorhttp.Limiter
	backoff vendorhttp.Backoff

	requests    atomic.Int64
	rateLimited atomic.Int64
}

// New returns a client, or ErrNoKey without a key, or an error wrapping
// ErrWrongMode for a key of the other mode than cfg.Livemode.
func New(cfg Config) (*Client, error) {
	key := cfg.Key.Reveal()
	if key == "" {
		return nil, ErrNoKey
	}
	if err := CheckKey(key, cfg.Livemode); err != nil {
		return nil, err
	}
	if cfg.Rate <= 0 {
		cfg.Rate = DefaultRate
	}
	if cfg.MaxNetworkRetries == 0 {
		cfg.MaxNetworkRetries = DefaultMaxNetworkRetries
	}
	if cfg.MaxNetworkRetries < 0 {
		cfg.MaxNetworkRetries = 0
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.RateLimitPatience <= 0 {
		cfg.RateLimitPatience = DefaultRateLimitPatience
	}
	if cfg.RateLimitBackoff <= 0 {
		cfg.RateLimitBackoff = 500 * time.Millisecond
	}
	if cfg.RateLimitBackoffMax <= 0 {
		cfg.RateLimitBackoffMax = 10 * time.Second
	}
	c := &Client{
		cfg:     cfg,
		limiter: vendorhttp.NewLimiter(cfg.Rate, time.Second),
		backoff: vendorhttp.Backoff{Base: cfg.RateLimitBackoff, Max: cfg.RateLimitBackoffMax},
	}
	// The budget sits in the transport, under stripe-go: its own retries
	// are requests too, and count against the same rate.
	transport := http.DefaultTransport.(*http.Transport).Clone()
	bc := &stripe.BackendConfig{
		HTTPClient:        &http.Client{Timeout: cfg.Timeout, Transport: &budgeted{c: c, next: transport}},
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		MaxNetworkRetries: stripe.Int64(cfg.MaxNetworkRetries),
	}
	if cfg.Base != "" {
		bc.URL = stripe.String(cfg.Base)
	}
	c.backend = stripe.GetBackendWithConfig(stripe.APIBackend, bc)
	return c, nil
}

// Livemode is the mode of the client's key: "live", "test" or "" when the
// key does not say.
func (c *Client) Livemode() string { return KeyMode(c.cfg.Key.Reveal()) }

// Rate is the request budget per second.
func (c *Client) Rate() int { return c.cfg.Rate }

// Requests counts the HTTP requests sent, retries included.
func (c *Client) Requests() int64 { return c.requests.Load() }

// RateLimited counts the rate-limit 429s this client backed off on.
func (c *Client) RateLimited() int64 { return c.rateLimited.Load() }

// budgeted makes every request wait for the client's rate budget.
type budgeted struct {
	c    *Client
	next http.RoundTripper
}

func (b *budgeted) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := b.c.limiter.Wait(r.Context(), "stripe", b.c.cfg.RateLimitPatience); err != nil {
		return nil, err
	}
	b.c.requests.Add(1)
	return b.next.RoundTrip(r)
}

// get calls GET path with params into v, backing off on rate-limit 429s.
// op names the call in errors.
func (c *Client) get(ctx context.Context, op, path string, params stripe.ParamsContainer, setContext func(context.Context), v stripe.LastResponseSetter) error {
	setContext(ctx)
	// CallRaw rather than Call, as stripe-go's own list iterators do: Call
	// expects every params struct to have Metadata and Expand fields.
	values := &form.Values{}
	form.AppendTo(values, params)
	return c.call(ctx, op, http.MethodGet, path, values, params.GetParams(), v)
}

// call sends one request, backing off on rate-limit 429s. A write carries
// its idempotency key in params, so every attempt of it, stripe-go's own
// retries included, is the same request to Stripe.
func (c *Client) call(ctx context.Context, op, method, path string, values *form.Values, params *stripe.Params, v stripe.LastResponseSetter) error {
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := c.backend.CallRaw(method, path, c.cfg.Key.Reveal(), values, params, v)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", op, context.Cause(ctx))
		}
		var se *stripe.Error
		if !errors.As(err, &se) || se.HTTPStatusCode != http.StatusTooManyRequests {
			return fmt.Errorf("%s: %w", op, describe(err))
		}
		// stripe-go retried the lock-timeout 429s already; what is left is
		// Stripe's rate limit, which a prompt retry only prolongs. Every
		// caller of this client sits it out together.
		c.rateLimited.Add(1)
		d := c.backoff.Delay(attempt)
		if time.Since(start)+d > c.cfg.RateLimitPatience {
			return fmt.Errorf("%s: %w (%d attempts over %s)", op, ErrRateLimited, attempt, time.Since(start).Round(time.Second))
		}
		c.limiter.Pause(d)
	}
}

// APIError is what is kept of a Stripe error: its type, code and status,
// never its message, which can echo request details.
type APIError struct {
	Type      string
	Code      string
	Status    int
	RequestID string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("stripe %s error (http %d, code %q, request %s)", e.Type, e.Status, e.Code, e.RequestID)
}

// IsNotFound reports whether err is Stripe's 404 for an object.
func IsNotFound(err error) bool {
	var ae *APIError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

func describe(err error) error {
	var se *stripe.Error
	if errors.As(err, &se) {
		return &APIError{Type: string(se.Type), Code: string(se.Code), Status: se.HTTPStatusCode, RequestID: se.RequestID}
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, vendorhttp.ErrDeferred) {
		return err
	}
	// A transport error names the URL, which carries the query: kept out.
	return errors.New("stripe request failed: no answer")
}
