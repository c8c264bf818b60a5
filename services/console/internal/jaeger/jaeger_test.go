package jaeger_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/launchready/launchready/services/console/internal/jaeger"
)

const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"

// fakeJaeger serves testdata/trace.json (the shape of Jaeger's query API:
// a webhook through ingress to billing-state and crm-sync) for traceID,
// and Jaeger's 404 for any other id.
func fakeJaeger(t testing.TB) *httptest.Server {
	t.Helper()
	body, err := os.ReadFile("testdata/trace.json")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/traces/"+traceID {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"data":null,"total":0,"limit":0,"offset":0,"errors":[{"code":404,"msg":"trace not found"}]}`))
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestTraceLaysSpansOutByParentAndTime(t *testing.T) {
	c := &jaeger.Client{Base: fakeJaeger(t).URL}
	tr, err := c.Trace(t.Context(), traceID)
	if err != nil {
		t.Fatal(err)
	}
	if tr.Duration != 35*time.Millisecond {
		t.Errorf("duration %s, want 35ms (the first start to the last end)", tr.Duration)
	}
	if len(tr.Services) != 3 || tr.Services[0] != "billing-state" || tr.Services[2] != "ingress" {
		t.Errorf("services %v", tr.Services)
	}
	type row struct {
		svc, op string
		depth   int
		offset  time.Duration
		dur     time.Duration
	}
	want := []row{
		{"ingress", "POST /webhooks/stripe", 0, 0, 4200 * time.Microsecond},
		{"ingress", "billing.events.invoice.payment_failed publish", 1, time.Millisecond, 2500 * time.Microsecond},
		{"billing-state", "billing.events.invoice.payment_failed process", 2, 4 * time.Millisecond, 12 * time.Millisecond},
		{"billing-state", "INSERT billing.customers", 3, 6 * time.Millisecond, 800 * time.Microsecond},
		{"crm-sync", "billing.events.invoice.payment_failed process", 2, 5 * time.Millisecond, 30 * time.Millisecond},
	}
	if len(tr.Spans) != len(want) {
		t.Fatalf("%d spans, want %d", len(tr.Spans), len(want))
	}
	for i, w := range want {
		s := tr.Spans[i]
		if s.Service != w.svc || s.Operation != w.op || s.Depth != w.depth || s.Offset != w.offset || s.Duration != w.dur {
			t.Errorf("span %d: %+v, want %+v", i, s, w)
		}
	}
	crm := tr.Spans[4]
	if !crm.Error || crm.LeftPct < 14.28 || crm.LeftPct > 14.29 || crm.WidthPct < 85.7 || crm.WidthPct > 85.72 {
		t.Errorf("crm-sync's span: error %v, bar at %.2f%% for %.2f%%", crm.Error, crm.LeftPct, crm.WidthPct)
	}
	if got := c.UIURL(traceID); got != c.Base+"/trace/"+traceID {
		t.Errorf("UI link %s", got)
	}
}

func TestTraceNotFoundAndBadIDs(t *testing.T) {
	c := &jaeger.Client{Base: fakeJaeger(t).URL}
	if _, err := c.Trace(t.Context(), "0123456789abcdef0123456789abcdef"); !errors.Is(err, jaeger.ErrNotFound) {
		t.Errorf("unknown trace: %v", err)
	}
	for _, bad := range []string{"", "../../api/services", "xyz", "4bf92f3577b34da6a3ce929d0e0e473"} {
		if _, err := c.Trace(t.Context(), bad); err == nil {
			t.Errorf("trace %q accepted", bad)
		}
	}
}
