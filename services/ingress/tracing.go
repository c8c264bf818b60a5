package ingress

import (
	"net/http"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/telemetry"
)

// traced wraps the webhook handler in a server span.
//
// With an exporter it is otelhttp (telemetry's wrapper), with the full HTTP
// attributes. Without one no span is ever recorded, and otelhttp would still
// compute every attribute and wrap every response writer: about a tenth of
// the CPU of an accepted event. Then only what other services see matters:
// the caller's W3C context is extracted and a non-recording server span
// carries the trace id into the log lines and the published message's
// traceparent, exactly as otelhttp would.
func traced(tel *telemetry.Provider, h http.Handler, operation string) http.Handler {
	if tel.Exporting() {
		return tel.HTTPHandler(h, operation)
	}
	tracer := tel.Tracer(ServiceName)
	prop := telemetry.Propagator()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		ctx, span := tracer.Start(ctx, operation, trace.WithSpanKind(trace.SpanKindServer))
		defer span.End()
		h.ServeHTTP(w, r.WithContext(ctx))
	})
}
