package zendeskfake_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/launchready/launchready/test/testkit/zendeskfake"
)

func TestDeskFollowsZendesksRules(t *testing.T) {
	d := zendeskfake.New("ops@example.com", "tok")
	srv := httptest.NewServer(d)
	defer srv.Close()
	call := func(method, path, key, body string, auth bool) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if auth {
			req.SetBasicAuth("ops@example.com/token", "tok")
		}
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	const ticket = `{"ticket":{"subject":"s","comment":{"body":"b","public":false},"requester":{"email":"a@example.com"},"external_id":"evt_1"}}`
	if r := call("POST", "/api/v2/tickets.json", "", ticket, false); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no credentials: %d", r.StatusCode)
	}
	if r := call("POST", "/api/v2/tickets.json", "k1", ticket, true); r.StatusCode != http.StatusCreated {
		t.Fatalf("create: %d", r.StatusCode)
	}
	if r := call("POST", "/api/v2/tickets.json", "k1", ticket, true); r.StatusCode != http.StatusCreated || r.Header.Get("x-idempotency-lookup") != "hit" {
		t.Fatalf("repeat: %d %q", r.StatusCode, r.Header.Get("x-idempotency-lookup"))
	}
	if r := call("POST", "/api/v2/tickets.json", "k1", strings.Replace(ticket, `"s"`, `"other"`, 1), true); r.StatusCode != http.StatusBadRequest {
		t.Fatalf("same key, other payload: %d", r.StatusCode)
	}
	ts := d.Tickets()
	if len(ts) != 1 || ts[0].Requester.Email != "a@example.com" || ts[0].Comments[0].Public || ts[0].ExternalID != "evt_1" {
		t.Fatalf("tickets = %+v", ts)
	}
	changed := d.Changed()
	if r := call("PUT", "/api/v2/tickets/1001.json", "", `{"ticket":{"status":"solved","comment":{"body":"done"}}}`, true); r.StatusCode != http.StatusOK {
		t.Fatalf("update: %d", r.StatusCode)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed by the update")
	}
	d.Close(1001)
	if r := call("PUT", "/api/v2/tickets/1001.json", "", `{"ticket":{"comment":{"body":"again"}}}`, true); r.StatusCode != http.StatusUnprocessableEntity {
		t.Fatalf("update of a closed ticket: %d", r.StatusCode)
	}
	if posts, puts, hits := d.Counts(); posts != 3 || puts != 2 || hits != 1 {
		t.Fatalf("counts = %d posts, %d puts, %d hits; want 3, 2, 1", posts, puts, hits)
	}
	if got := d.Tickets()[0]; got.Status != "closed" || len(got.Comments) != 2 {
		t.Fatalf("ticket after updates = %+v", got)
	}
}
