package jaeger_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/launchready/launchready/services/console/internal/jaeger"
)

// Jaeger's search answers the traces with a span of the service tagged
// as asked, within the time range; an empty list when there is none.
func TestFindTraceSearchesByServiceAndTag(t *testing.T) {
	body, err := os.ReadFile("testdata/trace.json")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2026, 12, 3, 9, 0, 0, 0, time.UTC)
	end := start.Add(2 * time.Hour)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path != "/api/traces" || q.Get("service") != "ingress" || q.Get("tags") != `{"stripe.event_id":"evt_1"}` ||
			q.Get("start") != strconv.FormatInt(start.UnixMicro(), 10) || q.Get("end") != strconv.FormatInt(end.UnixMicro(), 10) || q.Get("limit") != "1" {
			_, _ = w.Write([]byte(`{"data":[],"total":0,"limit":0,"offset":0,"errors":null}`))
			return
		}
		_, _ = w.Write(body)
	}))
	defer srv.Close()
	c := &jaeger.Client{Base: srv.URL}

	id, err := c.FindTrace(t.Context(), "ingress", "stripe.event_id", "evt_1", start, end)
	if err != nil || id != traceID {
		t.Fatalf("found %q, %v; want %s", id, err, traceID)
	}
	if _, err := c.FindTrace(t.Context(), "ingress", "stripe.event_id", "evt_2", start, end); !errors.Is(err, jaeger.ErrNotFound) {
		t.Fatalf("no such event: %v", err)
	}
	if _, err := c.FindTrace(t.Context(), "billing-state", "stripe.event_id", "evt_1", start, end); !errors.Is(err, jaeger.ErrNotFound) {
		t.Fatalf("another service: %v", err)
	}
}

func TestUIURLPrefersTheUIAddress(t *testing.T) {
	c := &jaeger.Client{Base: "http://jaeger-query.observability:16686", UI: "https://jaeger.example.com/"}
	if got := c.UIURL(traceID); got != "https://jaeger.example.com/trace/"+traceID {
		t.Fatalf("UI link %s", got)
	}
}
