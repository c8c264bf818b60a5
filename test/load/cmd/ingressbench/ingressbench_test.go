package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/stripeevent"
)

func TestTopLevelIDSplicesOnlyTheEnvelopeID(t *testing.T) {
	raw := []byte(`{"data":{"object":{"id":"cus_1"}},"id":"evt_old","type":"customer.created"}`)
	start, end, err := topLevelID(raw)
	if err != nil {
		t.Fatal(err)
	}
	p := payload{prefix: raw[:start], suffix: raw[end:]}
	got := p.render(nil, []byte("evt_new"))
	want := `{"data":{"object":{"id":"cus_1"}},"id":"evt_new","type":"customer.created"}`
	if string(got) != want {
		t.Fatalf("got %s", got)
	}
	if _, _, err := topLevelID([]byte(`{"type":"x"}`)); err == nil {
		t.Fatal("no id: want an error")
	}
}

// TestRawClientAgainstNetHTTP checks the lean client against the server
// ingress really runs on: status, body, keep-alive reuse and a server that
// closes the connection.
func TestRawClientAgainstNetHTTP(t *testing.T) {
	const secret = "whsec_test_only"
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := stripeevent.Verify(body, r.Header.Get("Stripe-Signature"), []string{secret}, time.Minute, time.Now()); err != nil {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"bad signature"}`)
			return
		}
		if bytes.Contains(body, []byte("close")) {
			w.Header().Set("Connection", "close")
		}
		_, _ = io.WriteString(w, `{"received":true,"duplicate":false}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	c, err := newRawClient(srv.URL + "/webhooks/stripe")
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	answer := make([]byte, 512)
	for i, body := range []string{`{"n":1}`, `{"n":2}`, `{"n":3,"close":1}`, `{"n":4}`} {
		code, n, err := c.post([]byte(body), stripeevent.Sign([]byte(body), secret, time.Now()), answer)
		if err != nil || code != http.StatusOK || !strings.Contains(string(answer[:n]), `"received":true`) {
			t.Fatalf("request %d: %d %q %v", i, code, answer[:n], err)
		}
	}
	if got := conns.Load(); got != 2 {
		t.Fatalf("%d connections, want 2 (keep-alive, then a new one after Connection: close)", got)
	}
	code, n, err := c.post([]byte(`{}`), "t=1,v1=00", answer)
	if err != nil || code != http.StatusBadRequest || !strings.Contains(string(answer[:n]), "bad signature") {
		t.Fatalf("refusal: %d %q %v", code, answer[:n], err)
	}
}
