package hubspotfake

import "testing"

// Want is what the CRM must hold for one customer: one contact with these
// properties, and one deal per subscription with these properties,
// associated with that contact.
type Want struct {
	CustomerID string
	Contact    map[string]string
	// Deals are keyed by stripe_subscription_id.
	Deals map[string]map[string]string
}

// Check fails t unless s holds exactly one contact for want.CustomerID and
// one deal per subscription of want, with want's properties and each deal
// associated with the contact. what names the check in its messages.
func (s *Server) Check(t testing.TB, what string, want Want) {
	t.Helper()
	var matches []Object
	for _, c := range s.Contacts() {
		if c.Properties["stripe_customer_id"] == want.CustomerID {
			matches = append(matches, c)
		}
	}
	if len(matches) != 1 {
		t.Fatalf("%s: %d contacts for %s, want 1", what, len(matches), want.CustomerID)
	}
	contact := matches[0]
	for k, v := range want.Contact {
		if got := contact.Properties[k]; got != v {
			t.Errorf("%s: contact %s = %q, want %q", what, k, got, v)
		}
	}
	for sub, props := range want.Deals {
		n := 0
		for _, o := range s.Deals() {
			if o.Properties["stripe_subscription_id"] == sub {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%s: %d deals for %s, want 1", what, n, sub)
		}
		deal, _ := s.Find("deals", "stripe_subscription_id", sub)
		for k, v := range props {
			if got := deal.Properties[k]; got != v {
				t.Errorf("%s: deal %s %s = %q, want %q", what, sub, k, got, v)
			}
		}
		if got := s.Associated(deal.ID); len(got) != 1 || got[0] != contact.ID {
			t.Errorf("%s: deal %s associated with %v, want [%s]", what, sub, got, contact.ID)
		}
	}
}
