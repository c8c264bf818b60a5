package syncer_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/services/crm-sync/internal/crm"
	"github.com/launchready/launchready/services/crm-sync/internal/syncer"
	"github.com/launchready/launchready/test/testkit"
)

// Every public Stripe envelope in the fixtures is consumed without a
// failure: synced, or acked as ignored. Several reuse event ids across
// files; the repeats are skipped as duplicates.
func TestEveryFixtureEnvelopeIsConsumed(t *testing.T) {
	t.Parallel()
	dir := testkit.FixturesDir(t)
	b := setup(t, nil)
	sy := syncer.New(syncer.Options{Pool: b.pool, Adapter: crm.NewLog(logging.Discard()), Policy: canonical.DefaultPolicy()})
	f, err := os.Open(filepath.Join(dir, "INDEX.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	outcomes := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) < 2 || cols[1] != "envelope" {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, cols[0]))
		if err != nil {
			t.Fatal(err)
		}
		ev, err := stripeevent.Normalize(raw)
		if err != nil {
			t.Fatalf("%s: normalize: %v", cols[0], err)
		}
		out, err := sy.SyncEvent(context.Background(), ev, 1)
		if err != nil {
			t.Errorf("%s (%s): %v", cols[0], ev.GetType(), err)
			continue
		}
		outcomes[out]++
	}
	if outcomes[syncer.OutcomeSynced] == 0 || outcomes[syncer.OutcomeIgnored] == 0 {
		t.Fatalf("outcomes %v: expected some synced and some ignored", outcomes)
	}
	t.Logf("fixture outcomes: %v", outcomes)
}
