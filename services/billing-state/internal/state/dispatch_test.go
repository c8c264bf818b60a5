package state_test

import (
	"errors"
	"testing"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/stripeevent/stripeeventtest"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/test/testkit"
)

// TestEveryKindHasAWriter sends every fixture envelope through storeFacts,
// billing-state's one switch over the kinds pkg/canonical routes events to:
// an event of a kind the classifier routes is stored, an ignored one is
// not, and every kind is met. crm-sync's TestEveryKindIsMirrored does the
// same over the same fixtures, and pkg/canonical's TestClassifyEveryFixture
// pins the kind of each: so both services take in and read every fixture
// the same way.
func TestEveryKindHasAWriter(t *testing.T) {
	b := setup(t)
	stored := map[canonical.Kind]int{}
	for _, e := range stripeeventtest.Envelopes(t, testkit.FixturesDir(t)) {
		name, kind := e.Name, canonical.Classify(e.Event).Kind
		out, err := b.store.StoreFacts(b.ctx, "cus_Dispatch", e.Event)
		switch {
		case kind == canonical.KindIgnored:
			if err != nil || out != state.OutcomeIgnored {
				t.Errorf("%s: ignored by the classifier, but stored: %s %v", name, out, err)
			}
		case errors.Is(err, state.ErrMalformed):
			// Its writer refused it (a dispute without an id, say).
			stored[kind]++
		case err != nil:
			t.Errorf("%s (%s): %v", name, kind, err)
		case out != state.OutcomeApplied && out != state.OutcomeStale:
			t.Errorf("%s: kind %s has no writer (%s)", name, kind, out)
		default:
			stored[kind]++
		}
	}
	for _, k := range canonical.Kinds() {
		if stored[k] == 0 {
			t.Errorf("no fixture of kind %s was stored", k)
		}
	}
	t.Logf("stored by kind: %v", stored)
}
