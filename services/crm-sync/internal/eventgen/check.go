package eventgen

import (
	"testing"

	"github.com/launchready/launchready/pkg/canonical"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/crm-sync/internal/crm"
	"github.com/launchready/launchready/test/testkit/hubspotfake"
)

// CheckHubSpot asserts that the fake holds exactly one contact for the
// journey's customer and one deal per subscription, associated with that
// contact, with the properties Expect derives from events.
func CheckHubSpot(t testing.TB, fake *hubspotfake.Server, j Journey, events []*billingv1.BillingEvent, p canonical.Policy) {
	t.Helper()
	exp := Expect(j.CustomerID, events, p)
	var matches []hubspotfake.Object
	for _, c := range fake.Contacts() {
		if c.Properties["stripe_customer_id"] == j.CustomerID {
			matches = append(matches, c)
		}
	}
	if len(matches) != 1 {
		t.Fatalf("%s: %d contacts for %s, want 1", j.Name, len(matches), j.CustomerID)
	}
	contact := matches[0]
	for k, want := range crm.ContactProperties(exp.Contact) {
		if got := contact.Properties[k]; got != want {
			t.Errorf("%s after %d events: contact %s = %q, want %q", j.Name, len(events), k, got, want)
		}
	}
	hs := crm.NewHubSpot(nil, crm.HubSpotConfig{})
	for sub, d := range exp.Deals {
		n := 0
		for _, o := range fake.Deals() {
			if o.Properties["stripe_subscription_id"] == sub {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%s: %d deals for %s, want 1", j.Name, n, sub)
		}
		deal, _ := fake.Find("deals", "stripe_subscription_id", sub)
		for k, want := range hs.DealProperties(d) {
			if got := deal.Properties[k]; got != want {
				t.Errorf("%s: deal %s %s = %q, want %q", j.Name, sub, k, got, want)
			}
		}
		if got := fake.Associated(deal.ID); len(got) != 1 || got[0] != contact.ID {
			t.Errorf("%s: deal %s associated with %v, want [%s]", j.Name, sub, got, contact.ID)
		}
	}
	if got, want := len(exp.Deals), len(j.Subscriptions); len(events) == len(j.Events) && got != want {
		t.Errorf("%s: oracle knows %d subscriptions, journey made %d", j.Name, got, want)
	}
}
