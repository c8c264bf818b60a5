package telemetry

import (
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
)

// HTTPHandler traces h's requests as server spans named operation, taking
// the parent from W3C headers. /healthz, /readyz and /metrics pass through
// untraced.
func HTTPHandler(h http.Handler, tp trace.TracerProvider, operation string) http.Handler {
	return httpHandler(h, tp, metricnoop.NewMeterProvider(), operation)
}

// HTTPHandler is the package function with this provider's tracer and meter.
func (p *Provider) HTTPHandler(h http.Handler, operation string) http.Handler {
	return httpHandler(h, p.TracerProvider(), p.MeterProvider(), operation)
}

func httpHandler(h http.Handler, tp trace.TracerProvider, mp metric.MeterProvider, operation string) http.Handler {
	return otelhttp.NewHandler(h, operation,
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithMeterProvider(mp),
		otelhttp.WithPropagators(Propagator()),
		otelhttp.WithFilter(func(r *http.Request) bool { return !IsOpsPath(r.URL.Path) }),
	)
}

// HTTPTransport traces outbound requests (HubSpot, Zendesk, Slack, generic
// webhooks) as client spans and injects traceparent. base nil means
// http.DefaultTransport. URLs are redacted before export (see redact.RequestURL).
func HTTPTransport(base http.RoundTripper, tp trace.TracerProvider) http.RoundTripper {
	return httpTransport(base, tp, metricnoop.NewMeterProvider())
}

// HTTPTransport is the package function with this provider's tracer and meter.
func (p *Provider) HTTPTransport(base http.RoundTripper) http.RoundTripper {
	return httpTransport(base, p.TracerProvider(), p.MeterProvider())
}

func httpTransport(base http.RoundTripper, tp trace.TracerProvider, mp metric.MeterProvider) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return otelhttp.NewTransport(base,
		otelhttp.WithTracerProvider(tp),
		otelhttp.WithMeterProvider(mp),
		otelhttp.WithPropagators(Propagator()),
		// The host names the vendor, which is what an operator scans for.
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string {
			return r.Method + " " + r.URL.Host
		}),
	)
}
