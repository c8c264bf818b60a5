package syncer_test

import (
	"context"
	"errors"
	"testing"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/stripeevent/stripeeventtest"
	"github.com/launchready/launchready/services/crm-sync/internal/syncer"
	"github.com/launchready/launchready/test/testkit"
)

var errRollBack = errors.New("rolled back on purpose")

// TestEveryKindIsMirrored sends every fixture envelope through the mirror's
// one switch over the kinds pkg/canonical routes events to, in a
// transaction rolled back after its statements ran: an event of a kind the
// classifier routes is mirrored, an ignored one is not, and every kind is
// met. billing-state's TestEveryKindHasAWriter does the same over the same
// fixtures, and pkg/canonical's TestClassifyEveryFixture pins the kind of
// each: so both services take in and read every fixture the same way.
func TestEveryKindIsMirrored(t *testing.T) {
	t.Parallel()
	dir := testkit.FixturesDir(t)
	b := setup(t, nil)
	ctx := context.Background()
	mirrored := map[canonical.Kind]int{}
	for _, e := range stripeeventtest.Envelopes(t, dir) {
		name, ev := e.Name, e.Event
		facts := canonical.Classify(ev)
		var out string
		err := pg.InTx(ctx, b.pool, func(tx *pg.Tx) error {
			var err error
			if out, err = syncer.ApplyEvent(ctx, tx, facts, "cus_Dispatch", ev); err != nil {
				return err
			}
			if err := tx.Flush(ctx); err != nil {
				return err
			}
			return errRollBack
		})
		switch {
		case !errors.Is(err, errRollBack):
			t.Errorf("%s (%s): %v", name, facts.Kind, err)
		case (out == "ignored") != (facts.Kind == canonical.KindIgnored):
			t.Errorf("%s: kind %s, mirror says %q", name, facts.Kind, out)
		case out != "ignored":
			mirrored[facts.Kind]++
		}
	}
	for _, k := range canonical.Kinds() {
		if mirrored[k] == 0 {
			t.Errorf("no fixture of kind %s was mirrored", k)
		}
	}
	t.Logf("mirrored by kind: %v", mirrored)
}
