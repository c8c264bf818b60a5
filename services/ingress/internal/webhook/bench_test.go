package webhook

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/pkg/telemetry"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit"
)

// marshalPublisher does the publisher's CPU work (encoding) and nothing
// else, so the benchmark shows the handler's own cost.
type marshalPublisher struct{}

func (marshalPublisher) PublishEvent(_ context.Context, ev *billingv1.BillingEvent) (bus.PubResult, error) {
	_, err := proto.Marshal(ev)
	return bus.PubResult{}, err
}

// BenchmarkHandler is the request path without the network and without
// JetStream: read, verify, normalise, encode, answer.
func BenchmarkHandler(b *testing.B) {
	payload := benchPayload(b)
	key := "whsec_benchmark_only_not_a_secret"
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	h := New(Config{Secrets: []string{key}, Tolerance: 5 * time.Minute, MaxBody: 1 << 20, PublishTimeout: time.Second, RetryAfter: time.Second},
		marshalPublisher{}, m, logging.Discard(), noop.NewTracerProvider().Tracer("bench"))
	sig := stripeevent.Sign(payload, key, time.Now())
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(payload))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("Stripe-Signature", sig)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d %s", rec.Code, rec.Body)
		}
	}
}

// benchPayload is a real 6 KB subscription event from the shared fixtures.
func benchPayload(b *testing.B) []byte {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join(testkit.FixturesDir(b), "stripe-sync-engine", "subscription_created.json"))
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// BenchmarkHandlerInstrumented adds the otelhttp server wrapper with its
// metrics, as Run serves it (spans not exported).
func BenchmarkHandlerInstrumented(b *testing.B) {
	payload := benchPayload(b)
	key := "whsec_benchmark_only_not_a_secret"
	reg := prometheus.NewRegistry()
	tel, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "bench", Registerer: reg})
	if err != nil {
		b.Fatal(err)
	}
	m, err := NewMetrics(reg)
	if err != nil {
		b.Fatal(err)
	}
	var h http.Handler = New(Config{Secrets: []string{key}, Tolerance: 5 * time.Minute, MaxBody: 1 << 20, PublishTimeout: time.Second, RetryAfter: time.Second},
		marshalPublisher{}, m, logging.Discard(), tel.Tracer("bench"))
	h = tel.HTTPHandler(h, "POST "+Path)
	sig := stripeevent.Sign(payload, key, time.Now())
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(payload))
		req.Header.Set("Content-Type", "application/json; charset=utf-8")
		req.Header.Set("Stripe-Signature", sig)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d %s", rec.Code, rec.Body)
		}
	}
}
