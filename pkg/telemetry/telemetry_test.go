package telemetry_test

import (
	"context"
	"strings"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/redact"
	"github.com/launchready/launchready/pkg/telemetry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// setup returns a provider exporting synchronously to an in-memory exporter.
func setup(t *testing.T, cfg telemetry.Config) (*telemetry.Provider, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	cfg.Exporter, cfg.Syncer = exp, true
	if cfg.ServiceName == "" {
		cfg.ServiceName = "svc-test"
	}
	p, err := telemetry.Setup(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Setup: %v", err)
	}
	t.Cleanup(func() { _ = p.Shutdown(context.Background()) })
	return p, exp
}

func attrs(kvs []attribute.KeyValue) map[string]string {
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		m[string(kv.Key)] = kv.Value.String()
	}
	return m
}

func TestSetupResource(t *testing.T) {
	p, exp := setup(t, telemetry.Config{
		ServiceName:        "ingress",
		ResourceAttributes: "deployment.environment=staging,service.name=overridden,team=pay%20ments",
	})
	_, span := p.Tracer("t").Start(context.Background(), "op")
	span.End()
	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("exported %d spans, want 1", len(spans))
	}
	res := attrs(spans[0].Resource.Attributes())
	want := map[string]string{
		"service.name":           "ingress",
		"service.version":        telemetry.Version,
		"deployment.environment": "staging",
		"team":                   "pay ments",
		"telemetry.sdk.language": "go",
	}
	for k, v := range want {
		if res[k] != v {
			t.Errorf("resource %s = %q, want %q", k, res[k], v)
		}
	}
	if !p.Exporting() {
		t.Error("Exporting() = false with an exporter")
	}
}

func TestSetupRejectsBadResourceAttributes(t *testing.T) {
	_, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "x", ResourceAttributes: "novalue"})
	if err == nil || !strings.Contains(err.Error(), "OTEL_RESOURCE_ATTRIBUTES") {
		t.Fatalf("Setup error = %v, want one naming OTEL_RESOURCE_ATTRIBUTES", err)
	}
}

func TestConfigFromEnv(t *testing.T) {
	e := config.New(config.Map(map[string]string{
		"OTEL_SERVICE_NAME":           "crm",
		"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317",
		"OTEL_TRACES_SAMPLER":         "traceidratio",
		"OTEL_TRACES_SAMPLER_ARG":     "0.25",
		"OTEL_RESOURCE_ATTRIBUTES":    "a=b",
	}))
	cfg := telemetry.ConfigFromEnv(e, "crm-sync")
	if err := e.Err(); err != nil {
		t.Fatalf("env errors: %v", err)
	}
	if cfg.ServiceName != "crm" || cfg.Endpoint != "http://127.0.0.1:4317" || !cfg.Insecure ||
		cfg.Sampler != "traceidratio" || cfg.SampleRatio != 0.25 || cfg.ResourceAttributes != "a=b" || cfg.Disabled {
		t.Fatalf("ConfigFromEnv = %+v", cfg)
	}

	e = config.New(config.Map(map[string]string{"OTEL_TRACES_SAMPLER": "jaeger_remote", "OTEL_TRACES_EXPORTER": "none"}))
	cfg = telemetry.ConfigFromEnv(e, "crm-sync")
	if cfg.ServiceName != "crm-sync" || !cfg.Disabled {
		t.Fatalf("defaults: %+v", cfg)
	}
	if err := e.Err(); err == nil || !strings.Contains(err.Error(), "OTEL_TRACES_SAMPLER") {
		t.Fatalf("unsupported sampler not reported: %v", err)
	}

	e = config.New(config.Map(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "https://otel.example.com:4317", "OTEL_SDK_DISABLED": "true"}))
	cfg = telemetry.ConfigFromEnv(e, "x")
	if cfg.Insecure || !cfg.Disabled {
		t.Fatalf("https endpoint must not be insecure and OTEL_SDK_DISABLED must disable: %+v", cfg)
	}
}

func TestNoEndpointRecordsNothingButKeepsIDs(t *testing.T) {
	for name, cfg := range map[string]telemetry.Config{
		"no endpoint": {ServiceName: "x"},
		"disabled":    {ServiceName: "x", Endpoint: "http://127.0.0.1:1", Disabled: true},
	} {
		t.Run(name, func(t *testing.T) {
			p, err := telemetry.Setup(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Shutdown(context.Background())
			if p.Exporting() {
				t.Fatal("Exporting() = true with no endpoint")
			}
			_, span := p.Tracer("t").Start(context.Background(), "op")
			defer span.End()
			if span.IsRecording() {
				t.Error("span records with no exporter")
			}
			if !span.SpanContext().IsValid() {
				t.Error("span context invalid: logs would lose trace_id")
			}
		})
	}
}

func TestSamplers(t *testing.T) {
	// High trace ids, so a tiny ratio never samples them.
	hi := trace.TraceID{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe}
	remoteSampled := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: hi, SpanID: trace.SpanID{1}, TraceFlags: trace.FlagsSampled, Remote: true,
	}))
	remoteUnsampled := trace.ContextWithRemoteSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: hi, SpanID: trace.SpanID{2}, Remote: true,
	}))
	cases := []struct {
		sampler                     string
		ratio                       float64
		root, sampledKid, unsampled bool
	}{
		{"", 1, true, true, false},
		{telemetry.SamplerAlwaysOn, 1, true, true, true},
		{telemetry.SamplerAlwaysOff, 1, false, false, false},
		{telemetry.SamplerParentBasedAlwaysOff, 1, false, true, false},
		{telemetry.SamplerParentBasedTraceIDRatio, 1e-12, false, true, false},
		{telemetry.SamplerTraceIDRatio, 1e-12, false, false, false},
	}
	for _, c := range cases {
		t.Run(c.sampler, func(t *testing.T) {
			p, _ := setup(t, telemetry.Config{Sampler: c.sampler, SampleRatio: c.ratio})
			tr := p.Tracer("t")
			for _, k := range []struct {
				ctx  context.Context
				want bool
				what string
			}{
				{context.Background(), c.root, "root"},
				{remoteSampled, c.sampledKid, "child of sampled"},
				{remoteUnsampled, c.unsampled, "child of unsampled"},
			} {
				_, span := tr.Start(k.ctx, "op")
				if span.IsRecording() != k.want {
					t.Errorf("%s: recording = %v, want %v", k.what, span.IsRecording(), k.want)
				}
				span.End()
			}
		})
	}
	if _, err := telemetry.Setup(context.Background(), telemetry.Config{Sampler: "xray"}); err == nil {
		t.Error("Setup accepted an unsupported sampler")
	}
}

// Health checks stay out of traces even when instrumented without the
// package's wrappers.
func TestSamplerSkipsHealthChecks(t *testing.T) {
	p, exp := setup(t, telemetry.Config{Sampler: telemetry.SamplerAlwaysOn})
	tr := p.Tracer("t")
	server := trace.WithSpanKind(trace.SpanKindServer)
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		_, span := tr.Start(context.Background(), "GET", server, trace.WithAttributes(attribute.String("url.path", path)))
		if span.IsRecording() {
			t.Errorf("%s is traced", path)
		}
		span.End()
	}
	_, span := tr.Start(context.Background(), "grpc.health.v1.Health/Check", server)
	span.End()
	_, span = tr.Start(context.Background(), "POST", server, trace.WithAttributes(attribute.String("url.path", "/webhooks/stripe")))
	span.End()
	if got := exp.GetSpans(); len(got) != 1 || got[0].Name != "POST" {
		t.Fatalf("exported %v, want only the webhook span", got.Snapshots())
	}
}

func TestRedactsSecretsBeforeExport(t *testing.T) {
	p, exp := setup(t, telemetry.Config{})
	_, span := p.Tracer("t").Start(context.Background(), "POST hooks.slack.com",
		trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("url.full", "https://hooks.slack.com/services/T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx"),
			attribute.String("customer.email", "someone@example.com"),
			attribute.String("stripe.customer_id", "cus_Q1"),
		))
	span.End()
	got := attrs(exp.GetSpans()[0].Attributes)
	if got["url.full"] != "https://hooks.slack.com/services/"+redact.Placeholder+"/"+redact.Placeholder+"/"+redact.Placeholder {
		t.Errorf("url.full = %q", got["url.full"])
	}
	if got["customer.email"] != redact.Placeholder {
		t.Errorf("customer.email = %q", got["customer.email"])
	}
	if got["stripe.customer_id"] != "cus_Q1" {
		t.Errorf("customer id changed: %q", got["stripe.customer_id"])
	}
}

// BenchmarkSpanNoEndpoint is the cost every instrumented call pays in a
// service started without OTEL_EXPORTER_OTLP_ENDPOINT.
func BenchmarkSpanNoEndpoint(b *testing.B) {
	p, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	tr := p.Tracer("bench")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, span := tr.Start(ctx, "op", trace.WithAttributes(telemetry.AttrEventID.String("evt_1")))
		span.End()
	}
}

// BenchmarkSpanExporting is the same span recorded and handed to an
// exporter, for comparison.
func BenchmarkSpanExporting(b *testing.B) {
	exp := tracetest.NewNoopExporter()
	p, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "bench", Exporter: exp, Syncer: true})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Shutdown(context.Background())
	tr := p.Tracer("bench")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, span := tr.Start(ctx, "op", trace.WithAttributes(telemetry.AttrEventID.String("evt_1")))
		span.End()
	}
}
