package fakes

import (
	"net/http/httptest"
	"time"

	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/zendeskfake"
)

// TB is what WaitFor needs of a test.
type TB = testkit.TB

// ZendeskTicket is a ticket as the fake desk holds it.
type ZendeskTicket = zendeskfake.Ticket

// ZendeskComment is one comment; the first is the ticket's description.
type ZendeskComment = zendeskfake.Comment

// Zendesk is a fake Zendesk Tickets API with API-token authentication
// (zendeskfake.Desk) behind the faults.
type Zendesk struct {
	faults
	*zendeskfake.Desk
	srv *httptest.Server
}

// NewZendesk serves a desk that accepts "email/token:token" basic auth.
func NewZendesk(email, token string) *Zendesk {
	z := &Zendesk{faults: newFaults(), Desk: zendeskfake.New(email, token)}
	z.srv = httptest.NewServer(z.serve(z.Desk))
	return z
}

// URL is the base URL for ZENDESK_BASE_URL.
func (z *Zendesk) URL() string { return z.srv.URL }

// Close stops the server.
func (z *Zendesk) Close() { closeServer(&z.faults, z.srv) }

// WaitFor waits until cond holds over the tickets, failing t at the
// deadline. It wakes on every change to the desk instead of polling.
func (z *Zendesk) WaitFor(t TB, timeout time.Duration, what string, cond func([]ZendeskTicket) bool) []ZendeskTicket {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ch := z.Desk.Changed()
		if ts := z.Tickets(); cond(ts) {
			return ts
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("zendesk: timed out after %s waiting for %s; tickets: %+v", timeout, what, z.Tickets())
			return nil
		}
	}
}
