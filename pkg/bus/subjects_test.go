package bus

import (
	"testing"
)

func TestEventTypeFromSubject(t *testing.T) {
	for subject, want := range map[string]struct {
		typ    string
		replay bool
	}{
		"billing.events.invoice.payment_failed":                 {"invoice.payment_failed", false},
		"billing.replay.crm-sync.customer.subscription.updated": {"customer.subscription.updated", true},
		"billing.dlq.crm-sync":                                  {"", false},
	} {
		typ, replay := eventTypeFromSubject(subject)
		if typ != want.typ || replay != want.replay {
			t.Errorf("%s -> %q %v, want %q %v", subject, typ, replay, want.typ, want.replay)
		}
	}
}
