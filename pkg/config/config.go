// Package config reads a service's settings from the environment through an
// injected lookup, so tests pass a map and production passes os.Getenv.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/launchready/launchready/pkg/redact"
)

// Getenv looks a variable up; os.Getenv fits, and so does Map(m).Get.
type Getenv func(string) string

// Map adapts a map to Getenv, for tests and for `launchready dev`.
func Map(m map[string]string) Getenv { return func(k string) string { return m[k] } }

// Overlay returns a Getenv that prefers values in over and falls back to base.
func Overlay(base Getenv, over map[string]string) Getenv {
	return func(k string) string {
		if v, ok := over[k]; ok {
			return v
		}
		return base(k)
	}
}

// Env reads typed values and collects every parse error, so a service reports
// all of its bad settings at once instead of one per restart.
type Env struct {
	get  Getenv
	errs []error
}

// New wraps a lookup.
func New(get Getenv) *Env {
	if get == nil {
		get = func(string) string { return "" }
	}
	return &Env{get: get}
}

// Lookup returns the trimmed raw value.
func (e *Env) Lookup(key string) string { return strings.TrimSpace(e.get(key)) }

// String returns the value or def when unset.
func (e *Env) String(key, def string) string {
	if v := e.Lookup(key); v != "" {
		return v
	}
	return def
}

// Secret returns the value as a Secret, which never prints itself.
func (e *Env) Secret(key string) Secret { return Secret(e.Lookup(key)) }

// Require returns the value and records an error when it is empty.
func (e *Env) Require(key string) string {
	v := e.Lookup(key)
	if v == "" {
		e.errs = append(e.errs, fmt.Errorf("%s is required", key))
	}
	return v
}

// Int returns the value as an int or def.
func (e *Env) Int(key string, def int) int {
	return int(e.integer(key, int64(def), strconv.IntSize))
}

// Int64 returns the value as an int64 or def.
func (e *Env) Int64(key string, def int64) int64 {
	return e.integer(key, def, 64)
}

// integer reads a base-10 integer that fits in bits, or records why not
// and returns def.
func (e *Env) integer(key string, def int64, bits int) int64 {
	v := e.Lookup(key)
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, bits)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not an integer", key, v))
		return def
	}
	return n
}

// Float returns the value as a float64 or def.
func (e *Env) Float(key string, def float64) float64 {
	v := e.Lookup(key)
	if v == "" {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not a number", key, v))
		return def
	}
	return f
}

// Duration returns the value as a time.Duration ("250ms", "2h") or def.
func (e *Env) Duration(key string, def time.Duration) time.Duration {
	v := e.Lookup(key)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not a duration", key, v))
		return def
	}
	return d
}

// Bool returns the value as a bool ("true", "1", "false", "0") or def.
func (e *Env) Bool(key string, def bool) bool {
	v := e.Lookup(key)
	if v == "" {
		return def
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		e.errs = append(e.errs, fmt.Errorf("%s: %q is not a boolean", key, v))
		return def
	}
	return b
}

// List splits a comma-separated value, dropping empty items.
func (e *Env) List(key string) []string {
	var out []string
	for _, s := range strings.Split(e.Lookup(key), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// OneOf returns the value when it is one of allowed, def when unset, and
// records an error otherwise.
func (e *Env) OneOf(key, def string, allowed ...string) string {
	v := e.String(key, def)
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	e.errs = append(e.errs, fmt.Errorf("%s: %q is not one of %s", key, v, strings.Join(allowed, ", ")))
	return def
}

// Fail records an error found by the caller's own validation.
func (e *Env) Fail(format string, args ...any) { e.errs = append(e.errs, fmt.Errorf(format, args...)) }

// Err returns every problem found so far, joined, or nil.
func (e *Env) Err() error { return errors.Join(e.errs...) }

// Secret is a string that masks itself in fmt and slog output.
type Secret string

// String masks the value.
func (s Secret) String() string { return Mask(string(s)) }

// LogValue masks the value in slog output.
func (s Secret) LogValue() slog.Value { return slog.StringValue(Mask(string(s))) }

// Reveal returns the real value, for the one place that needs it.
func (s Secret) Reveal() string { return string(s) }

// Mask hides a secret but keeps enough to tell two apart: a known prefix
// (whsec_, sk_test_) and the last four characters of a long value.
func Mask(s string) string {
	if s == "" {
		return ""
	}
	prefix := ""
	for _, p := range []string{"whsec_", "sk_test_", "sk_live_", "rk_test_", "rk_live_"} {
		if strings.HasPrefix(s, p) {
			prefix = p
			break
		}
	}
	if len(s)-len(prefix) < 12 {
		return prefix + "****"
	}
	return prefix + "****" + s[len(s)-4:]
}

// MaskURL masks every secret in a URL, a list of URLs or a key/value DSN
// (DATABASE_URL, NATS_URL, an endpoint) for the start-up log line: see
// redact.ConnString for the forms.
func MaskURL(raw string) string { return redact.ConnString(raw) }
