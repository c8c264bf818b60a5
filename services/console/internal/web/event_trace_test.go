package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/launchready/launchready/pkg/natsauth"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/consoletest"
	"github.com/launchready/launchready/services/console/internal/jaeger"
)

// The event page links to the trace the event was published in: from its
// dead letter's traceparent, else from Jaeger's span of ingress tagged
// with the event id; and says why when there is none.
func TestEventPageLinksToItsTrace(t *testing.T) {
	const (
		dlTrace     = "0af7651916cd43dd8448eb211c80319c"
		searchTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	)
	var mu sync.Mutex
	var searched []string
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		var tags map[string]string
		_ = json.Unmarshal([]byte(q.Get("tags")), &tags)
		mu.Lock()
		searched = append(searched, q.Get("service")+" "+tags["stripe.event_id"])
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/api/traces" && q.Get("service") == "ingress" && tags["stripe.event_id"] == "evt_T2" && q.Get("start") != "" && q.Get("end") != "" {
			_, _ = w.Write([]byte(`{"data":[{"traceID":"` + searchTrace + `","spans":[],"processes":{}}],"total":1,"limit":0,"offset":0,"errors":null}`))
			return
		}
		_, _ = w.Write([]byte(`{"data":[],"total":0,"limit":0,"offset":0,"errors":null}`))
	}))
	defer fake.Close()
	b := setupRead(t, &statusServer{})
	b.web.opts.Jaeger = &jaeger.Client{Base: fake.URL, UI: "https://jaeger.example.com"}
	b.addStaff(t, "viewer@example.com", auth.Viewer, goodPassword, false)
	br := b.browser(t)
	br.signIn("viewer@example.com", goodPassword)

	// A dead letter keeps the traceparent of the message it came from.
	consoletest.PutDeadLetter(t, b.ns, natsauth.CRMSync, &billingv1.BillingEvent{EventId: "evt_T1", Type: "invoice.paid", CustomerId: "cus_T1"}, "hubspot: 503",
		nats.Header{"traceparent": {"00-" + dlTrace + "-b7ad6b7169203331-01"}})
	p := br.get("/events/evt_T1")
	for _, want := range []string{
		`<a href="/traces/` + dlTrace + `" id="trace-link"><code>` + dlTrace + `</code></a> <span class="muted">(from its dead letter&#39;s traceparent)</span>`,
		`<a href="https://jaeger.example.com/trace/` + dlTrace + `" id="event-jaeger-link"`,
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the event page lacks %q: %s", want, between(p.body, `id="event-trace">`, "</p>"))
		}
	}
	mu.Lock()
	if len(searched) != 0 {
		t.Errorf("Jaeger searched for an event whose dead letter names its trace: %q", searched)
	}
	mu.Unlock()

	// No dead letter: Jaeger's span of ingress tagged with the event id.
	b.exec(t, `INSERT INTO billing.processed_events (event_id, event_type, customer_id, outcome) VALUES ('evt_T2', 'invoice.paid', 'cus_T2', 'applied')`)
	p = br.get("/events/evt_T2")
	want := `<a href="/traces/` + searchTrace + `" id="trace-link"><code>` + searchTrace + `</code></a> <span class="muted">(from Jaeger&#39;s spans of ingress)</span>`
	if !strings.Contains(p.body, want) {
		t.Errorf("the event page lacks %q: %s", want, between(p.body, `id="event-trace">`, "</p>"))
	}

	// Neither: it says so, having asked for ingress's and billing-state's
	// spans.
	mu.Lock()
	searched = nil
	mu.Unlock()
	p = br.get("/events/evt_T3")
	if !strings.Contains(p.body, `<span class="muted" id="no-trace">Jaeger holds no span of this event`) || strings.Contains(p.body, `id="trace-link"`) {
		t.Errorf("an event Jaeger does not know: %s", between(p.body, `id="event-trace">`, "</p>"))
	}
	mu.Lock()
	if strings.Join(searched, ",") != "ingress evt_T3,billing-state evt_T3" {
		t.Errorf("Jaeger was asked %q", searched)
	}
	mu.Unlock()

	// Without Jaeger, a dead letter's trace id still links to the trace
	// page, which says Jaeger is not configured; without one, the page
	// says why there is no link.
	b.web.opts.Jaeger = nil
	p = br.get("/events/evt_T1")
	if !strings.Contains(p.body, `href="/traces/`+dlTrace+`"`) || strings.Contains(p.body, `id="event-jaeger-link"`) {
		t.Errorf("without Jaeger, a dead letter's trace: %s", between(p.body, `id="event-trace">`, "</p>"))
	}
	p = br.get("/events/evt_T2")
	if !strings.Contains(p.body, "No Jaeger is configured (CONSOLE_JAEGER_URL)") {
		t.Errorf("without Jaeger: %s", between(p.body, `id="event-trace">`, "</p>"))
	}
}
