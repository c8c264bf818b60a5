package telemetry

import (
	"context"
	"net/url"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

const redacted = "REDACTED"

// redactingExporter rewrites attributes that can carry secrets before spans
// leave the process. Outbound URLs are the real risk: a Slack incoming
// webhook URL is itself the credential, and otelhttp records url.full (after
// the span starts, so a span processor's OnStart would not see it).
type redactingExporter struct{ next sdktrace.SpanExporter }

func (e redactingExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	var out []sdktrace.ReadOnlySpan
	for i, s := range spans {
		fixed, changed := redactAttrs(s.Attributes())
		if !changed {
			if out != nil {
				out = append(out, s)
			}
			continue
		}
		if out == nil {
			out = append(make([]sdktrace.ReadOnlySpan, 0, len(spans)), spans[:i]...)
		}
		stub := tracetest.SpanStubFromReadOnlySpan(s)
		stub.Attributes = fixed
		out = append(out, stub.Snapshot())
	}
	if out == nil {
		out = spans
	}
	return e.next.ExportSpans(ctx, out)
}

func (e redactingExporter) Shutdown(ctx context.Context) error { return e.next.Shutdown(ctx) }

// redactAttrs returns kvs with sensitive values replaced, and whether any was.
func redactAttrs(kvs []attribute.KeyValue) ([]attribute.KeyValue, bool) {
	var out []attribute.KeyValue
	for i, kv := range kvs {
		v, bad := redactValue(string(kv.Key), kv.Value)
		if !bad {
			if out != nil {
				out = append(out, kv)
			}
			continue
		}
		if out == nil {
			out = append(make([]attribute.KeyValue, 0, len(kvs)), kvs[:i]...)
		}
		out = append(out, attribute.String(string(kv.Key), v))
	}
	if out == nil {
		return kvs, false
	}
	return out, true
}

func redactValue(k string, v attribute.Value) (string, bool) {
	switch {
	case k == "url.full" || k == "http.url":
		r := RedactURL(v.String())
		return r, r != v.String()
	case k == "url.query":
		return redacted, v.String() != redacted
	case sensitiveKey(k):
		return redacted, v.String() != redacted
	}
	return "", false
}

func sensitiveKey(k string) bool {
	k = strings.ToLower(k)
	for _, w := range []string{"authorization", "password", "secret", "token", "email", "api_key", "apikey", "cookie"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// RedactURL keeps what helps debugging (scheme, host, the shape of the path)
// and drops what may authenticate: user info, the query string, and path
// segments that look like credentials (long or mixing letters and digits,
// such as the last three segments of a Slack webhook URL).
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return redacted
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = redacted
	}
	u.Fragment = ""
	segs := strings.Split(u.EscapedPath(), "/")
	for i, seg := range segs {
		if looksSecret(seg) {
			segs[i] = redacted
		}
	}
	return u.Scheme + "://" + u.Host + strings.Join(segs, "/") + querySuffix(u)
}

func querySuffix(u *url.URL) string {
	if u.RawQuery == "" {
		return ""
	}
	return "?" + u.RawQuery
}

func looksSecret(seg string) bool {
	if len(seg) >= 24 {
		return true
	}
	if len(seg) < 8 {
		return false
	}
	var letters, digits bool
	for _, r := range seg {
		switch {
		case r >= '0' && r <= '9':
			digits = true
		case r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
			letters = true
		}
	}
	return letters && digits
}
