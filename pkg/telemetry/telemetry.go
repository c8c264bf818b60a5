// Package telemetry sets up tracing for a service from the standard OTEL_*
// variables: OTLP over gRPC when an endpoint is set, W3C propagation always,
// and nothing exported (at almost no cost) when no endpoint is set. It also
// wraps the instrumentation every service shares (HTTP server and client,
// gRPC server, pgx) so that health checks stay out of traces and no secret
// reaches a span.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/config"
)

// Version is the build's version, set with -ldflags "-X .../telemetry.Version=...".
var Version = "dev"

// Attribute keys shared by every service. Never put emails, tokens or
// secrets in span attributes.
const (
	AttrEventID    = attribute.Key("stripe.event_id")
	AttrEventType  = attribute.Key("stripe.event_type")
	AttrCustomerID = attribute.Key("stripe.customer_id")
	// AttrEventSource is "api" or "snapshot" for what a backfill read
	// from Stripe's API; webhooks carry none.
	AttrEventSource = attribute.Key("launchready.event_source")
)

// Sampler names accepted in OTEL_TRACES_SAMPLER (the spec's built-in ones).
const (
	SamplerAlwaysOn                = "always_on"
	SamplerAlwaysOff               = "always_off"
	SamplerTraceIDRatio            = "traceidratio"
	SamplerParentBasedAlwaysOn     = "parentbased_always_on"
	SamplerParentBasedAlwaysOff    = "parentbased_always_off"
	SamplerParentBasedTraceIDRatio = "parentbased_traceidratio"
)

// Config says where spans go.
type Config struct {
	ServiceName string
	// Endpoint is OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT); empty
	// disables export.
	Endpoint string
	Insecure bool
	// Sampler is one of the Sampler* names; empty means
	// parentbased_traceidratio with SampleRatio.
	Sampler string
	// SampleRatio applies to root spans; children follow their parent.
	SampleRatio float64
	// ResourceAttributes is OTEL_RESOURCE_ATTRIBUTES (key=value,...,
	// values percent-encoded). service.name and service.version from this
	// Config win over it, so services sharing a process keep their names.
	ResourceAttributes string
	// Disabled turns export off whatever the endpoint (OTEL_SDK_DISABLED=true
	// or OTEL_TRACES_EXPORTER=none).
	Disabled bool
	// Exporter, when set, replaces OTLP (tests use an in-memory one).
	Exporter sdktrace.SpanExporter
	// Syncer exports each span as it ends instead of batching (tests).
	Syncer bool
	// Registerer, when set, receives the OTel meter provider's instruments
	// (HTTP and gRPC server durations from the wrappers on Provider) so they
	// appear on the service's /metrics next to its own metrics.
	Registerer prometheus.Registerer
}

// ConfigFromEnv reads OTEL_SERVICE_NAME (def when unset),
// OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_TRACES_ENDPOINT,
// OTEL_EXPORTER_OTLP_INSECURE, OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG,
// OTEL_RESOURCE_ATTRIBUTES, OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER. Bad
// values are recorded in e, so they surface with the service's other
// configuration errors.
func ConfigFromEnv(e *config.Env, def string) Config {
	ep := e.String("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", e.String("OTEL_EXPORTER_OTLP_ENDPOINT", ""))
	exporter := e.OneOf("OTEL_TRACES_EXPORTER", "otlp", "otlp", "none")
	return Config{
		ServiceName: e.String("OTEL_SERVICE_NAME", def),
		Endpoint:    ep,
		Insecure:    e.Bool("OTEL_EXPORTER_OTLP_INSECURE", strings.HasPrefix(ep, "http://") || !strings.Contains(ep, "://")),
		Sampler: e.OneOf("OTEL_TRACES_SAMPLER", SamplerParentBasedTraceIDRatio,
			SamplerAlwaysOn, SamplerAlwaysOff, SamplerTraceIDRatio,
			SamplerParentBasedAlwaysOn, SamplerParentBasedAlwaysOff, SamplerParentBasedTraceIDRatio),
		SampleRatio:        e.Float("OTEL_TRACES_SAMPLER_ARG", 1),
		ResourceAttributes: e.Lookup("OTEL_RESOURCE_ATTRIBUTES"),
		Disabled:           e.Bool("OTEL_SDK_DISABLED", false) || exporter == "none",
	}
}

// Provider is a service's tracer provider. Each service owns one, so that
// `launchready dev` can run four services in one process, each under its own
// service.name.
type Provider struct {
	tp *sdktrace.TracerProvider
	mp metric.MeterProvider
	// exporting is false when spans go nowhere.
	exporting bool
}

var w3c = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// Setup builds the provider. It also installs the W3C propagator globally;
// the tracer provider is not made global, so services in one process keep
// their own names.
func Setup(ctx context.Context, cfg Config) (*Provider, error) {
	otel.SetTextMapPropagator(w3c)
	res, err := newResource(ctx, cfg)
	if err != nil {
		return nil, err
	}
	sampler, err := newSampler(cfg.Sampler, cfg.SampleRatio)
	if err != nil {
		return nil, err
	}
	opts := []sdktrace.TracerProviderOption{
		sdktrace.WithResource(res),
		sdktrace.WithSampler(skipHealthChecks{next: sampler}),
	}
	exp := cfg.Exporter
	if exp == nil && cfg.Endpoint != "" && !cfg.Disabled {
		eopts := []otlptracegrpc.Option{otlptracegrpc.WithEndpointURL(endpointURL(cfg.Endpoint, cfg.Insecure))}
		if cfg.Insecure {
			eopts = append(eopts, otlptracegrpc.WithInsecure())
		}
		exp, err = otlptracegrpc.New(ctx, eopts...)
		if err != nil {
			return nil, fmt.Errorf("otlp exporter: %w", err)
		}
	}
	if exp != nil {
		exp = redactingExporter{next: exp}
	}
	switch {
	case exp != nil && cfg.Syncer:
		opts = append(opts, sdktrace.WithSyncer(exp))
	case exp != nil:
		opts = append(opts, sdktrace.WithBatcher(exp))
	default:
		// No exporter: record nothing. Spans still carry valid ids, so logs
		// keep their trace_id and context still propagates downstream.
		opts = append(opts, sdktrace.WithSampler(sdktrace.NeverSample()))
	}
	p := &Provider{tp: sdktrace.NewTracerProvider(opts...), mp: metricnoop.NewMeterProvider(), exporting: exp != nil}
	if cfg.Registerer != nil {
		pe, err := otelprom.New(otelprom.WithRegisterer(cfg.Registerer), otelprom.WithoutScopeInfo())
		if err != nil {
			_ = p.tp.Shutdown(ctx)
			return nil, fmt.Errorf("otel prometheus exporter: %w", err)
		}
		p.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(pe), sdkmetric.WithResource(res))
	}
	return p, nil
}

func newResource(ctx context.Context, cfg Config) (*resource.Resource, error) {
	env, err := parseResourceAttributes(cfg.ResourceAttributes)
	if err != nil {
		return nil, err
	}
	res, err := resource.New(ctx,
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithAttributes(env...),
		resource.WithAttributes(semconv.ServiceName(cfg.ServiceName), semconv.ServiceVersion(Version)),
	)
	if err != nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	return res, nil
}

// parseResourceAttributes reads the OTEL_RESOURCE_ATTRIBUTES format from the
// injected environment rather than through resource.WithFromEnv, which reads
// the process environment: tests and `launchready dev` pass their own.
func parseResourceAttributes(s string) ([]attribute.KeyValue, error) {
	var out []attribute.KeyValue
	for _, kv := range strings.Split(s, ",") {
		if strings.TrimSpace(kv) == "" {
			continue
		}
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok || k == "" {
			return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: %q is not key=value", kv)
		}
		dv, err := url.PathUnescape(strings.TrimSpace(v))
		if err != nil {
			return nil, fmt.Errorf("OTEL_RESOURCE_ATTRIBUTES: value of %s: %w", k, err)
		}
		out = append(out, attribute.String(k, dv))
	}
	return out, nil
}

func endpointURL(ep string, insecure bool) string {
	if strings.Contains(ep, "://") {
		return ep
	}
	if insecure {
		return "http://" + ep
	}
	return "https://" + ep
}

// TracerProvider returns the provider for instrumentation libraries.
func (p *Provider) TracerProvider() trace.TracerProvider {
	if p == nil || p.tp == nil {
		return otel.GetTracerProvider()
	}
	return p.tp
}

// MeterProvider returns the OTel meter provider: one exporting to
// Config.Registerer, or a no-op one when none was given.
func (p *Provider) MeterProvider() metric.MeterProvider {
	if p == nil || p.mp == nil {
		return metricnoop.NewMeterProvider()
	}
	return p.mp
}

// Exporting reports whether spans leave the process.
func (p *Provider) Exporting() bool { return p != nil && p.exporting }

// Tracer returns a named tracer.
func (p *Provider) Tracer(name string) trace.Tracer { return p.TracerProvider().Tracer(name) }

// Shutdown flushes and stops export.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil || p.tp == nil {
		return nil
	}
	var errs []error
	if err := p.tp.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		errs = append(errs, fmt.Errorf("telemetry shutdown: %w", err))
	}
	if mp, ok := p.mp.(*sdkmetric.MeterProvider); ok {
		if err := mp.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("telemetry meter shutdown: %w", err))
		}
	}
	return errors.Join(errs...)
}

// Propagator is the W3C trace-context (and baggage) propagator every hop
// uses. It does not depend on Setup having run, so a library used before or
// without Setup still injects and extracts the same headers.
func Propagator() propagation.TextMapPropagator { return w3c }
