package telemetry

import (
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc/filters"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/stats"
)

// GRPCServerHandler traces gRPC calls as server spans, taking the parent
// from the call's metadata. Health checks and reflection are not traced.
// Use it with grpc.StatsHandler(...).
func GRPCServerHandler(tp trace.TracerProvider) stats.Handler {
	return grpcServerHandler(tp, metricnoop.NewMeterProvider())
}

// GRPCServerHandler is the package function with this provider's tracer and meter.
func (p *Provider) GRPCServerHandler() stats.Handler {
	return grpcServerHandler(p.TracerProvider(), p.MeterProvider())
}

func grpcServerHandler(tp trace.TracerProvider, mp metric.MeterProvider) stats.Handler {
	return otelgrpc.NewServerHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithMeterProvider(mp),
		otelgrpc.WithPropagators(Propagator()),
		otelgrpc.WithFilter(filters.None(
			filters.HealthCheck(),
			filters.ServicePrefix("grpc.reflection."),
		)),
	)
}

// GRPCClientHandler traces outbound gRPC calls (the operator CLI) and
// injects the trace context into their metadata.
func GRPCClientHandler(tp trace.TracerProvider) stats.Handler {
	return otelgrpc.NewClientHandler(
		otelgrpc.WithTracerProvider(tp),
		otelgrpc.WithMeterProvider(metricnoop.NewMeterProvider()),
		otelgrpc.WithPropagators(Propagator()),
	)
}
