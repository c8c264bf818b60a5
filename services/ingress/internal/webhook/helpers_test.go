package webhook

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// fixture is a test's handler with what it needs to look inside.
type fixture struct {
	t       testing.TB
	h       *Handler
	m       *Metrics
	pub     *recordingPublisher
	key     string
	logs    *syncBuffer
	release chan struct{} // closed to let a holding publisher return
}

// newFixture builds a handler with a fresh secret; change edits the Config
// before New. The publisher records events and, when hold is set, blocks
// each publish until f.release is closed.
func newFixture(t testing.TB, hold bool, change func(*Config)) *fixture {
	t.Helper()
	secret := make([]byte, 16)
	if _, err := rand.Read(secret); err != nil {
		t.Fatal(err)
	}
	f := &fixture{t: t, key: "whsec_" + hex.EncodeToString(secret), logs: &syncBuffer{}, release: make(chan struct{})}
	f.pub = &recordingPublisher{}
	if hold {
		f.pub.hold = f.release
	}
	cfg := Config{
		Secrets: []string{f.key}, Tolerance: 5 * time.Minute, MaxBody: 1 << 20,
		PublishTimeout: 10 * time.Second, RetryAfter: 3 * time.Second,
	}
	if change != nil {
		change(&cfg)
	}
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	f.m = m
	log := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.h = New(cfg, f.pub, m, log, noop.NewTracerProvider().Tracer("test"))
	t.Cleanup(f.unblock)
	return f
}

// unblock lets every held publish return; safe to call twice.
func (f *fixture) unblock() {
	select {
	case <-f.release:
	default:
		close(f.release)
	}
}

// request builds a signed POST of body as Stripe sends it.
func (f *fixture) request(body []byte) *http.Request {
	req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Stripe-Signature", stripeevent.Sign(body, f.key, time.Now()))
	return req
}

func (f *fixture) serve(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.h.ServeHTTP(rec, req)
	return rec
}

// counted reads the requests counter of one outcome.
func (f *fixture) counted(o outcome) float64 { return testutil.ToFloat64(f.m.requests[o]) }

// sigCounted reads the signature failures counter of one reason.
func (f *fixture) sigCounted(r sigReason) float64 { return testutil.ToFloat64(f.m.sigFailures[r]) }

// errorOf decodes {"error": ...} from an answer.
func errorOf(t testing.TB, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Fatalf("answer %q is not JSON: %v", rec.Body, err)
	}
	return body.Error
}

// recordingPublisher stores nothing; it counts, keeps the last event and
// answers err when set.
type recordingPublisher struct {
	mu     sync.Mutex
	events []*billingv1.BillingEvent
	err    error
	hold   <-chan struct{}
	active atomic.Int32 // publishes in progress
}

func (p *recordingPublisher) PublishEvent(ctx context.Context, ev *billingv1.BillingEvent) (bus.PubResult, error) {
	p.active.Add(1)
	defer p.active.Add(-1)
	if p.hold != nil {
		select {
		case <-p.hold:
		case <-ctx.Done():
			return bus.PubResult{}, fmt.Errorf("publish: %w", ctx.Err())
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return bus.PubResult{}, p.err
	}
	p.events = append(p.events, ev)
	return bus.PubResult{Seq: uint64(len(p.events))}, nil
}

func (p *recordingPublisher) published() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.events)
}

// watchedBody is a request body that records whether anyone read it, and
// can block its reads until released.
type watchedBody struct {
	r       io.Reader
	read    atomic.Bool
	started chan struct{} // closed at the first Read
	once    sync.Once
	gate    <-chan struct{} // when set, reads wait for it
}

func newWatchedBody(b []byte) *watchedBody {
	return &watchedBody{r: bytes.NewReader(b), started: make(chan struct{})}
}

func (w *watchedBody) Read(p []byte) (int, error) {
	w.read.Store(true)
	w.once.Do(func() { close(w.started) })
	if w.gate != nil {
		<-w.gate
	}
	return w.r.Read(p)
}

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// event is a minimal signed-able envelope of the given id, type and
// customer.
func event(id, typ, customer string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"object":"event","api_version":"2023-10-16","created":1700000000,"livemode":false,"type":%q,"data":{"object":{"id":%q,"object":"customer"}}}`, id, typ, customer)
}
