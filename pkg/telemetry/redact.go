package telemetry

import (
	"context"
	"strings"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/launchready/launchready/pkg/redact"
)

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
		r := redact.RequestURL(v.String())
		return r, r != v.String()
	case k == "url.query":
		return redact.Placeholder, v.String() != redact.Placeholder
	case sensitiveKey(k):
		return redact.Placeholder, v.String() != redact.Placeholder
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
