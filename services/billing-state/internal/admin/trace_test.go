package admin

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"
	"go.uber.org/goleak"

	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/pkg/stripeapi"
	"github.com/launchready/launchready/services/billing-state/internal/state"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// traceStripe answers refunds, the first time with no answer at all, and
// records the traceparent each request carries.
type traceStripe struct {
	mu    sync.Mutex
	seen  []string
	calls int
}

func (f *traceStripe) Refund(ctx context.Context, r stripeapi.RefundRequest) (stripeapi.Object, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seen = append(f.seen, stripeapi.ActionTrace(ctx))
	f.calls++
	if f.calls == 1 {
		return stripeapi.Object{}, errors.New("connection reset")
	}
	return stripeapi.Object{ID: "re_Trace1"}, nil
}

func (f *traceStripe) CancelSubscription(context.Context, string, string, bool) (stripeapi.Object, error) {
	return stripeapi.Object{}, errors.New("not in this test")
}

func (f *traceStripe) ChangeSubscriptionPlan(context.Context, stripeapi.PlanChange) (stripeapi.Object, error) {
	return stripeapi.Object{}, errors.New("not in this test")
}

func inTrace(ctx context.Context, traceID, spanID string) context.Context {
	tid, _ := trace.TraceIDFromHex(traceID)
	sid, _ := trace.SpanIDFromHex(spanID)
	return trace.ContextWithSpanContext(ctx, trace.NewSpanContext(trace.SpanContextConfig{TraceID: tid, SpanID: sid, TraceFlags: trace.FlagsSampled}))
}

// An action carries the trace it was first made in to Stripe, and a retry
// made later, in another trace, carries the same one: Stripe refuses an
// idempotency key reused with other parameters.
func TestActionKeepsItsFirstTraceAcrossRetries(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := state.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	fake := &traceStripe{}
	s := New(pool, fake)
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	s.now = func() time.Time { return now }
	req := Request{ActionID: "act_Trace1", Actor: Actor{Email: "ana@example.com"}, CustomerID: "cus_Trace1", Reason: "double charge"}
	refund := stripeapi.RefundRequest{Charge: "ch_Trace1", Amount: 500}

	if _, err := s.Refund(inTrace(ctx, "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"), req, refund); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("first call: %v, want no answer", err)
	}
	now = now.Add(StaleAfter + time.Second)
	a, err := s.Refund(inTrace(ctx, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"), req, refund)
	if err != nil || a.State != StateSucceeded {
		t.Fatalf("retry: %+v %v", a, err)
	}
	want := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	if len(fake.seen) != 2 || fake.seen[0] != want || fake.seen[1] != want {
		t.Fatalf("traceparents sent %q, want %q twice", fake.seen, want)
	}
}
