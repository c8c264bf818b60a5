// Package stripeeventtest reads the shared Stripe fixtures as ingress would
// publish them, for tests that run every fixture through a consumer.
package stripeeventtest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Envelope is one fixture file that holds a whole Stripe event.
type Envelope struct {
	// Name is the file's path below the fixtures directory, with slashes.
	Name  string
	Event *billingv1.BillingEvent
}

// Envelopes normalises every JSON file below dir, in path order, and
// returns those that are event envelopes; bare objects and data-only files
// are left out. A file that cannot be read fails the test.
func Envelopes(t testing.TB, dir string) []Envelope {
	t.Helper()
	var out []Envelope
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		raw, err := os.ReadFile(p) // #nosec G122 G304 -- reads the repository's own fixture tree in tests
		if err != nil {
			return err
		}
		ev, err := stripeevent.Normalize(raw)
		if err != nil {
			return nil // not an envelope
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		out = append(out, Envelope{Name: filepath.ToSlash(rel), Event: ev})
		return nil
	})
	if err != nil {
		t.Fatalf("read fixtures in %s: %v", dir, err)
	}
	return out
}
