package telemetry

import (
	"fmt"
	"strings"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// opsPaths are probed by load balancers, Kubernetes and Prometheus every few
// seconds; tracing them would bury the traces anyone looks for.
var opsPaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true}

// IsOpsPath reports whether an HTTP path is a health, readiness or metrics
// endpoint, which are never traced.
func IsOpsPath(path string) bool { return opsPaths[path] }

const grpcHealthService = "grpc.health.v1.Health"

func newSampler(name string, ratio float64) (sdktrace.Sampler, error) {
	// Zero is the unset value of Config; ConfigFromEnv defaults it to 1.
	// To sample nothing, use always_off.
	if ratio <= 0 || ratio > 1 {
		ratio = 1
	}
	switch name {
	case SamplerAlwaysOn:
		return sdktrace.AlwaysSample(), nil
	case SamplerAlwaysOff:
		return sdktrace.NeverSample(), nil
	case SamplerTraceIDRatio:
		return sdktrace.TraceIDRatioBased(ratio), nil
	case SamplerParentBasedAlwaysOn:
		return sdktrace.ParentBased(sdktrace.AlwaysSample()), nil
	case SamplerParentBasedAlwaysOff:
		return sdktrace.ParentBased(sdktrace.NeverSample()), nil
	case "", SamplerParentBasedTraceIDRatio:
		return sdktrace.ParentBased(sdktrace.TraceIDRatioBased(ratio)), nil
	}
	return nil, fmt.Errorf("OTEL_TRACES_SAMPLER: unsupported sampler %q", name)
}

// skipHealthChecks drops spans of health, readiness and metrics requests
// whatever the configured sampler says. The HTTP and gRPC wrappers in this
// package already skip them; this catches instrumentation set up without
// them (a handler wrapped with otelhttp directly, a gRPC health probe).
type skipHealthChecks struct{ next sdktrace.Sampler }

func (s skipHealthChecks) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	if isHealthCheck(p) {
		return sdktrace.SamplingResult{
			Decision:   sdktrace.Drop,
			Tracestate: trace.SpanContextFromContext(p.ParentContext).TraceState(),
		}
	}
	return s.next.ShouldSample(p)
}

func (s skipHealthChecks) Description() string {
	return "SkipHealthChecks{" + s.next.Description() + "}"
}

func isHealthCheck(p sdktrace.SamplingParameters) bool {
	if strings.HasPrefix(p.Name, grpcHealthService+"/") {
		return true
	}
	if p.Kind != trace.SpanKindServer {
		return false
	}
	for _, kv := range p.Attributes {
		switch kv.Key {
		case "url.path", "http.target", "http.route":
			if IsOpsPath(kv.Value.AsString()) {
				return true
			}
		case "rpc.service":
			if kv.Value.AsString() == grpcHealthService {
				return true
			}
		}
	}
	return false
}
