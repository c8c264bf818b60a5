package fakes

import (
	"net/http/httptest"
	"time"

	"github.com/launchready/launchready/test/testkit/hubspotfake"
)

// HubSpot is the in-memory HubSpot (contacts, deals, associations, unique
// properties) of testkit/hubspotfake behind the faults.
type HubSpot struct {
	*hubspotfake.Server
	faults
	srv *httptest.Server
}

// NewHubSpot serves a fake HubSpot that accepts the bearer token token.
func NewHubSpot(token string) *HubSpot {
	h := &HubSpot{Server: hubspotfake.New(token), faults: newFaults()}
	h.srv = httptest.NewServer(h.serve(h.Server.Handler()))
	return h
}

// SetLatency delays every answer by d (0: none), in this package's layer,
// so that the call log records when each answer left.
func (h *HubSpot) SetLatency(d time.Duration) { h.faults.SetLatency(d) }

// URL is the base URL for HUBSPOT_BASE_URL.
func (h *HubSpot) URL() string { return h.srv.URL }

// Close stops the server.
func (h *HubSpot) Close() {
	h.Server.Release()
	closeServer(&h.faults, h.srv)
}

// ContactsFor returns the live contacts whose stripe_customer_id is cus.
func (h *HubSpot) ContactsFor(cus string) []hubspotfake.Object {
	var out []hubspotfake.Object
	for _, c := range h.Contacts() {
		if c.Properties["stripe_customer_id"] == cus {
			out = append(out, c)
		}
	}
	return out
}

// DealsFor returns the live deals whose stripe_subscription_id is sub.
func (h *HubSpot) DealsFor(sub string) []hubspotfake.Object {
	var out []hubspotfake.Object
	for _, d := range h.Deals() {
		if d.Properties["stripe_subscription_id"] == sub {
			out = append(out, d)
		}
	}
	return out
}
