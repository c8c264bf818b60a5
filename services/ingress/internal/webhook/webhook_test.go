package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// stalledPublisher never gets a PubAck: it waits for the deadline, as a
// publish does when JetStream is reachable but does not answer.
type stalledPublisher struct{ calls atomic.Int32 }

func (p *stalledPublisher) PublishEvent(ctx context.Context, _ *billingv1.BillingEvent) (bus.PubResult, error) {
	p.calls.Add(1)
	<-ctx.Done()
	return bus.PubResult{}, fmt.Errorf("publish: %w", ctx.Err())
}

func TestPubAckTimeoutAnswers503(t *testing.T) {
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	key := "whsec_" + hex.EncodeToString(secret)
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	pub := &stalledPublisher{}
	h := New(Config{
		Secrets: []string{key}, Tolerance: 5 * time.Minute, MaxBody: 1 << 20,
		PublishTimeout: 50 * time.Millisecond, RetryAfter: 3 * time.Second,
	}, pub, m, logging.Discard(), noop.NewTracerProvider().Tracer("test"))

	payload := []byte(`{"id":"evt_stalled","object":"event","type":"customer.created","created":1700000000,"livemode":false,"data":{"object":{"id":"cus_1","object":"customer"}}}`)
	req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", stripeevent.Sign(payload, key, time.Now()))
	rec := httptest.NewRecorder()
	start := time.Now()
	h.ServeHTTP(rec, req)

	if rec.Code != http.StatusServiceUnavailable {
		t.Fatalf("status %d %s, want 503", rec.Code, rec.Body)
	}
	if got := rec.Header().Get("Retry-After"); got != "3" {
		t.Fatalf("Retry-After %q, want 3", got)
	}
	if !strings.Contains(rec.Body.String(), `"error"`) {
		t.Fatalf("body %s has no error field", rec.Body)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("answered after %s; the publish timeout is 50ms", took)
	}
	if pub.calls.Load() != 1 {
		t.Fatalf("publisher called %d times", pub.calls.Load())
	}
	if got := testutil.ToFloat64(m.requests[outcomeUnavailable]); got != 1 {
		t.Fatalf("unavailable counted %v", got)
	}
}

func TestReadAllGrowsPastItsBufferUpToTheLimit(t *testing.T) {
	want := bytes.Repeat([]byte("0123456789"), 5000)
	got, err := readAll(bytes.NewReader(want), make([]byte, 0, 16), int64(len(want))+1)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read %d bytes (%v), want %d", len(got), err, len(want))
	}
	if cap(got) > len(want)+1 {
		t.Fatalf("buffer grew to %d bytes for a limit of %d", cap(got), len(want)+1)
	}
	_, err = readAll(bytes.NewReader(want), make([]byte, 0, 16), 100)
	var tooBig *http.MaxBytesError
	if !errors.As(err, &tooBig) {
		t.Fatalf("past the limit: %v, want a MaxBytesError", err)
	}
}
