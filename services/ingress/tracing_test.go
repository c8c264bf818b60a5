package ingress_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/services/ingress"
)

const (
	callerTraceID = "4bf92f3577b34da6a3ce929d0e0e4736"
	callerParent  = "00-" + callerTraceID + "-00f067aa0ba902b7-01"
)

// postTraced posts an event with a caller's traceparent and returns the
// traceparent on the published message.
func postTraced(t *testing.T, b *bundle, id string) string {
	t.Helper()
	payload := event(id, "customer.created", false)
	a := b.do(http.MethodPost, "/webhooks/stripe", payload, http.Header{
		"Content-Type":     {"application/json"},
		"Stripe-Signature": {stripeevent.Sign(payload, b.secrets[0], time.Now())},
		"Traceparent":      {callerParent},
	})
	if a.code != http.StatusOK {
		t.Fatalf("post: %d %s", a.code, a.raw)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := b.js().Stream(ctx, "BILLING_EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	msg, err := st.GetLastMsgForSubject(ctx, "billing.events.customer.created")
	if err != nil {
		t.Fatal(err)
	}
	return msg.Header.Get("traceparent")
}

func TestTraceContextReachesTheMessageWithoutExport(t *testing.T) {
	b := setup(t, nil)
	if tp := postTraced(t, b, "evt_ingress_trace_noexport"); !strings.Contains(tp, callerTraceID) {
		t.Fatalf("message traceparent %q does not continue the caller's trace %s", tp, callerTraceID)
	}
}

func TestSpansWhenExporting(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	b := setupWith(t, nil, func(c *ingress.Config) {
		c.Telemetry.Exporter = exp
		c.Telemetry.Syncer = true
	})
	tp := postTraced(t, b, "evt_ingress_trace_export")
	if !strings.Contains(tp, callerTraceID) {
		t.Fatalf("message traceparent %q does not continue the caller's trace", tp)
	}
	// Probes are never traced.
	b.doAt(b.ops, http.MethodGet, "/readyz", nil, http.Header{"Traceparent": {callerParent}})

	kinds := map[string]trace.SpanKind{}
	for _, s := range exp.GetSpans() {
		if s.SpanContext.TraceID().String() != callerTraceID {
			t.Errorf("span %q is in trace %s, want the caller's", s.Name, s.SpanContext.TraceID())
		}
		kinds[s.Name] = s.SpanKind
	}
	if kinds["POST /webhooks/stripe"] != trace.SpanKindServer {
		t.Errorf("no server span for the webhook; spans: %v", kinds)
	}
	if _, ok := kinds["verify"]; !ok {
		t.Errorf("no verify span; spans: %v", kinds)
	}
	if kinds["publish billing.events.customer.created"] != trace.SpanKindProducer {
		t.Errorf("no producer span for the publish; spans: %v", kinds)
	}
	for name := range kinds {
		if strings.Contains(name, "readyz") {
			t.Errorf("probe traced: %s", name)
		}
	}
}
