package web

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/jaeger"
)

// The trace view draws the spans of a trace Jaeger's query API serves
// (its real response shape, from the jaeger package's testdata), per
// service with durations, and links to Jaeger's own UI.
func TestTraceViewDrawsSpansFromJaeger(t *testing.T) {
	const id = "4bf92f3577b34da6a3ce929d0e0e4736"
	body, err := os.ReadFile("../jaeger/testdata/trace.json")
	if err != nil {
		t.Fatal(err)
	}
	var asked []string
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked = append(asked, r.URL.Path)
		if r.URL.Path != "/api/traces/"+id {
			http.Error(w, `{"data":null,"errors":[{"code":404,"msg":"trace not found"}]}`, http.StatusNotFound)
			return
		}
		_, _ = w.Write(body)
	}))
	defer fake.Close()
	b := setup(t, func(o *Options) { o.Jaeger = &jaeger.Client{Base: fake.URL} })
	b.addStaff(t, "viewer@example.com", auth.Viewer, goodPassword, false)
	br := b.browser(t)
	br.signIn("viewer@example.com", goodPassword)

	p := br.get("/traces/" + id)
	if p.status != 200 {
		t.Fatalf("trace page: %d %s", p.status, p.body)
	}
	for _, want := range []string{
		"5 spans across 3 services (billing-state, crm-sync, ingress), 35.000 ms",
		`<td class="num span-duration">30.000 ms</td>`, // crm-sync's process span
		`<td class="num span-duration">0.800 ms</td>`,  // billing-state's insert
		`data-service="crm-sync"`, `data-service="ingress"`,
		`href="` + fake.URL + `/trace/` + id + `"`,
		`<rect x="14.286" y="0" width="85.714"`,
		`<tr class="span bad" data-service="crm-sync">`, // the span with error=true
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("the trace page lacks %q", want)
		}
	}
	if strings.Contains(p.body, "<script") || strings.Contains(p.body, "style=") {
		t.Error("the trace page has script or inline style, which the CSP forbids")
	}

	if p := br.get("/traces/0123456789abcdef0123456789abcdef"); p.status != 404 || !strings.Contains(p.body, "Jaeger has no trace") {
		t.Errorf("unknown trace: %d", p.status)
	}
	n := len(asked)
	if p := br.get("/traces/not-a-trace"); p.status != 400 || len(asked) != n {
		t.Errorf("a bad id: %d, and Jaeger was asked %d times more", p.status, len(asked)-n)
	}
	if p := br.get("/traces?id=" + id); p.status != 303 || p.location != "/traces/"+id {
		t.Errorf("trace form: %d %s", p.status, p.location)
	}
}
