package canonical_test

import (
	"testing"

	"github.com/launchready/launchready/pkg/canonical"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// A probe reaches every consumer, and every consumer routes by Classify:
// it must be ignored, whatever else it carries.
func TestProbeIsIgnoredByEveryConsumer(t *testing.T) {
	for _, ev := range []*billingv1.BillingEvent{
		{EventId: canonical.ProbeIDPrefix + "a1", Type: canonical.ProbeEventType, ObjectType: canonical.ProbeObject},
		{EventId: canonical.ProbeIDPrefix + "a2", Type: canonical.ProbeEventType, ObjectType: canonical.ProbeObject, CustomerId: "cus_probe", Status: "succeeded"},
	} {
		if k := canonical.Classify(ev).Kind; k != canonical.KindIgnored {
			t.Errorf("probe %s classified as %s, want ignored", ev.GetEventId(), k)
		}
		if !canonical.IsProbe(ev.GetType(), ev.GetEventId()) {
			t.Errorf("IsProbe(%q, %q) = false", ev.GetType(), ev.GetEventId())
		}
	}
	if canonical.IsProbe("invoice.payment_failed", "evt_1Abc") {
		t.Error("a Stripe event taken for a probe")
	}
}
