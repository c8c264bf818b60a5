package stripeapi

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/launchready/launchready/pkg/config"
)

// Defaults for the environment variables and the client policy.
const (
	DefaultRate              = 20
	DefaultMaxNetworkRetries = 2
	DefaultTimeout           = 30 * time.Second
	DefaultRateLimitPatience = 5 * time.Minute
)

// Config is how to reach the Stripe API.
type Config struct {
	// Key is STRIPE_API_KEY (sk_... or a restricted rk_... with read
	// access). Empty means the API is not used.
	Key config.Secret
	// Base is STRIPE_API_BASE: the API's URL, for stripe-mock and tests;
	// empty means api.stripe.com.
	Base string
	// Rate is STRIPE_API_RATE: at most this many requests a second.
	Rate int
	// Livemode is STRIPE_LIVEMODE: "test" refuses a live key, "live" a
	// test key, "" accepts either.
	Livemode string
	// MaxNetworkRetries is stripe-go's own retry count for connection
	// errors, 409s, 5xx and lock-timeout 429s.
	MaxNetworkRetries int64
	// Timeout bounds one HTTP request.
	Timeout time.Duration
	// RateLimitPatience is how long one call keeps backing off on
	// rate-limit 429s before it fails.
	RateLimitPatience time.Duration
	// RateLimitBackoff is the first wait after a rate-limit 429, doubled
	// for each further one up to RateLimitBackoffMax (defaults 500 ms and
	// 10 s).
	RateLimitBackoff, RateLimitBackoffMax time.Duration
}

// ConfigFromEnv reads STRIPE_API_KEY, STRIPE_API_BASE, STRIPE_API_RATE and
// STRIPE_LIVEMODE. Problems are collected in e.
func ConfigFromEnv(e *config.Env) Config {
	c := Config{
		Key:      e.Secret("STRIPE_API_KEY"),
		Base:     e.String("STRIPE_API_BASE", ""),
		Rate:     e.Int("STRIPE_API_RATE", DefaultRate),
		Livemode: e.OneOf("STRIPE_LIVEMODE", "", "", "live", "test"),
	}
	if c.Rate <= 0 {
		e.Fail("STRIPE_API_RATE: must be positive, got %d", c.Rate)
	}
	if err := CheckKey(c.Key.Reveal(), c.Livemode); err != nil {
		e.Fail("STRIPE_API_KEY: %v", err)
	}
	return c
}

// Configured reports whether a key is set.
func (c Config) Configured() bool { return c.Key.Reveal() != "" }

// LogValue logs the settings with the key masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("key", c.Key.String()),
		slog.String("base", config.MaskURL(c.Base)),
		slog.Int("rate", c.Rate),
		slog.String("livemode", c.Livemode),
	)
}

var (
	// ErrNoKey: the API was asked for without STRIPE_API_KEY.
	ErrNoKey = errors.New("STRIPE_API_KEY is not set")
	// ErrWrongMode: the key's mode is not the one STRIPE_LIVEMODE names.
	ErrWrongMode = errors.New("API key mode does not match STRIPE_LIVEMODE")
)

// KeyMode is "live" or "test" for a Stripe secret or restricted key, ""
// when the key does not say.
func KeyMode(key string) string {
	for _, p := range []string{"sk_", "rk_"} {
		if rest, ok := strings.CutPrefix(key, p); ok {
			switch {
			case strings.HasPrefix(rest, "live_"):
				return "live"
			case strings.HasPrefix(rest, "test_"):
				return "test"
			}
		}
	}
	return ""
}

// CheckKey refuses a key whose mode contradicts livemode ("live", "test"
// or "" for either). An empty key passes: whether one is needed is the
// caller's to say.
func CheckKey(key, livemode string) error {
	if key == "" || livemode == "" {
		return nil
	}
	if m := KeyMode(key); m != "" && m != livemode {
		return fmt.Errorf("%w: a %s key with STRIPE_LIVEMODE=%s", ErrWrongMode, m, livemode)
	}
	return nil
}
