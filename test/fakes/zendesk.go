package fakes

import (
	"net/http"
	"net/http/httptest"

	"github.com/launchready/launchready/services/support-notify/zendeskfake"
)

// Ticket is a ticket as the fake desk holds it.
type Ticket = zendeskfake.Ticket

// Zendesk is a fake Zendesk Tickets API with API-token authentication
// (support-notify's zendeskfake.Desk) behind the shared latency and
// failure rules.
type Zendesk struct {
	base
	*zendeskfake.Desk
	srv *httptest.Server
}

// NewZendesk serves a desk that accepts "email/token:token" basic auth.
func NewZendesk(email, token string) *Zendesk {
	z := &Zendesk{base: newBase(), Desk: zendeskfake.New(email, token)}
	z.srv = httptest.NewServer(z.serve(http.HandlerFunc(z.Desk.ServeHTTP)))
	return z
}

// URL is the base URL for ZENDESK_BASE_URL.
func (z *Zendesk) URL() string { return z.srv.URL }

// Close stops the server.
func (z *Zendesk) Close() { closeServer(z.srv) }
