package telemetry_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/launchready/launchready/pkg/redact"
	"github.com/launchready/launchready/pkg/telemetry"
)

func TestHTTPHandlerTracesRequestsButNotOpsEndpoints(t *testing.T) {
	p, exp := setup(t, telemetry.Config{})
	mux := http.NewServeMux()
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/webhooks/stripe"} {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })
	}
	srv := httptest.NewServer(telemetry.HTTPHandler(mux, p.TracerProvider(), "ingress"))
	defer srv.Close()

	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	parent := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{0xaa, 1}, SpanID: trace.SpanID{0xbb, 1}, TraceFlags: trace.FlagsSampled, Remote: true,
	})
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/webhooks/stripe", strings.NewReader("{}"))
	req.Header.Set("traceparent", "00-"+parent.TraceID().String()+"-"+parent.SpanID().String()+"-01")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()

	spans := exp.GetSpans()
	if len(spans) != 1 {
		t.Fatalf("exported %d spans (%v), want only the webhook's", len(spans), spans.Snapshots())
	}
	s := spans[0]
	if s.SpanKind != trace.SpanKindServer || s.Parent.SpanID() != parent.SpanID() || s.SpanContext.TraceID() != parent.TraceID() {
		t.Fatalf("server span %q kind %v parent %v trace %v: want a server child of the traceparent", s.Name, s.SpanKind, s.Parent.SpanID(), s.SpanContext.TraceID())
	}
}

func TestHTTPTransportInjectsContextAndRedacts(t *testing.T) {
	p, exp := setup(t, telemetry.Config{})
	var gotParent string
	vendor := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotParent = r.Header.Get("traceparent")
		io.WriteString(w, "ok")
	}))
	defer vendor.Close()

	ctx, parent := p.Tracer("t").Start(context.Background(), "handle")
	client := &http.Client{Transport: telemetry.HTTPTransport(nil, p.TracerProvider())}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, vendor.URL+"/services/T0123ABCD/B0456EFGH/abcdefghijklmnopqrstuvwx", nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	parent.End()

	for _, s := range exp.GetSpans() {
		if s.SpanKind != trace.SpanKindClient {
			continue
		}
		if s.Parent.SpanID() != parent.SpanContext().SpanID() {
			t.Errorf("client span parent = %v, want %v", s.Parent.SpanID(), parent.SpanContext().SpanID())
		}
		if !strings.Contains(gotParent, s.SpanContext.SpanID().String()) {
			t.Errorf("vendor saw traceparent %q, want the client span %v", gotParent, s.SpanContext.SpanID())
		}
		full := attrs(s.Attributes)["url.full"]
		if strings.Contains(full, "abcdefghijklmnopqrstuvwx") || !strings.HasSuffix(full, "/services/"+redact.Placeholder+"/"+redact.Placeholder+"/"+redact.Placeholder) {
			t.Errorf("url.full = %q: the webhook credential must not be exported", full)
		}
		if want := "POST " + strings.TrimPrefix(vendor.URL, "http://"); s.Name != want {
			t.Errorf("client span name %q, want %q", s.Name, want)
		}
		return
	}
	t.Fatalf("no client span among %v", exp.GetSpans().Snapshots())
}

// echoDesc is a one-method gRPC service, enough to see a traced call next to
// an untraced health check.
var echoDesc = grpc.ServiceDesc{
	ServiceName: "test.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Ping",
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(emptypb.Empty)
			return in, dec(in)
		},
	}},
}

func TestGRPCServerHandlerSkipsHealthChecks(t *testing.T) {
	p, exp := setup(t, telemetry.Config{})
	srv := grpc.NewServer(grpc.StatsHandler(telemetry.GRPCServerHandler(p.TracerProvider())))
	healthpb.RegisterHealthServer(srv, health.NewServer())
	srv.RegisterService(&echoDesc, struct{}{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	defer srv.Stop()
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithStatsHandler(telemetry.GRPCClientHandler(p.TracerProvider())))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatalf("health check: %v", err)
	}
	if err := conn.Invoke(ctx, "/test.Echo/Ping", &emptypb.Empty{}, &emptypb.Empty{}); err != nil {
		t.Fatalf("ping: %v", err)
	}
	var server, client []string
	for _, s := range exp.GetSpans() {
		switch s.SpanKind {
		case trace.SpanKindServer:
			server = append(server, s.Name)
		case trace.SpanKindClient:
			client = append(client, s.Name)
		}
	}
	if len(server) != 1 || server[0] != "test.Echo/Ping" {
		t.Fatalf("server spans %v, want only test.Echo/Ping", server)
	}
	// The client side is the caller's business; only its context must
	// reach the server, which the shared trace id below checks.
	if len(client) == 0 {
		t.Fatal("no client span")
	}
	spans := exp.GetSpans()
	if spans[0].SpanContext.TraceID() != spans[len(spans)-1].SpanContext.TraceID() {
		t.Error("client and server spans are in different traces")
	}
}

func TestProviderMetersIntoRegistry(t *testing.T) {
	reg := prometheus.NewRegistry()
	p, _ := setup(t, telemetry.Config{Registerer: reg})
	srv := httptest.NewServer(p.HTTPHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), "ingress"))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/webhooks/stripe")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "http_server_request_duration_seconds" {
			if n := mf.GetMetric()[0].GetHistogram().GetSampleCount(); n != 1 {
				t.Fatalf("request duration count = %d, want 1", n)
			}
			return
		}
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	t.Fatalf("http_server_request_duration_seconds not registered; have %v", names)
}
