package testkit_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/launchready/launchready/test/testkit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is a TB that records a failure instead of ending the test.
type recorder struct{ failed string }

func (r *recorder) Helper() {}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = fmt.Sprintf(format, args...)
}

func TestEventuallyReturnsOnceTheConditionHolds(t *testing.T) {
	var calls atomic.Int32
	var r recorder
	testkit.Eventually(&r, 5*time.Second, "the third look", func() bool { return calls.Add(1) == 3 })
	if r.failed != "" {
		t.Fatalf("failed: %s", r.failed)
	}
	if got := calls.Load(); got != 3 {
		t.Fatalf("condition checked %d times, want 3", got)
	}
}

func TestEventuallyFailsNamingWhatItWaitedFor(t *testing.T) {
	var r recorder
	start := time.Now()
	testkit.Eventually(&r, 50*time.Millisecond, "the impossible", func() bool { return false })
	if !strings.Contains(r.failed, "the impossible") || !strings.Contains(r.failed, "50ms") {
		t.Fatalf("failure %q does not name the wait and its limit", r.failed)
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Fatalf("gave up after %s, before the 50ms limit", waited)
	}
}

func TestPollReportsWhetherTheConditionHeld(t *testing.T) {
	if testkit.Poll(30*time.Millisecond, time.Millisecond, func() bool { return false }) {
		t.Fatal("Poll of a false condition reported true")
	}
	if !testkit.Poll(time.Second, time.Millisecond, func() bool { return true }) {
		t.Fatal("Poll of a true condition reported false")
	}
}

func TestFixturesDirHoldsTheIndex(t *testing.T) {
	dir := testkit.FixturesDir(t)
	if _, err := os.Stat(filepath.Join(dir, "INDEX.tsv")); err != nil {
		t.Fatal(err)
	}
}

func TestFixturesDirRefusesADirectoryWithoutTheIndex(t *testing.T) {
	t.Setenv("FIXTURES_DIR", t.TempDir())
	var r recorder
	testkit.FixturesDir(&r)
	if !strings.Contains(r.failed, "INDEX.tsv") {
		t.Fatalf("failure %q, want one naming the missing INDEX.tsv", r.failed)
	}
	if _, err := testkit.FindFixturesDir(); err == nil {
		t.Fatal("FindFixturesDir accepted a directory without INDEX.tsv")
	}
}

func TestFixturesDirFindsTheFixturesAboveTheWorkingDirectory(t *testing.T) {
	root := t.TempDir()
	fixtures := filepath.Join(root, "shared", "fixtures", "stripe")
	deep := filepath.Join(root, "repo", "services", "svc")
	for _, d := range []string{fixtures, deep} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(fixtures, "INDEX.tsv"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("FIXTURES_DIR", "")
	t.Chdir(deep)
	if got := testkit.FixturesDir(t); got != fixtures {
		t.Fatalf("FixturesDir = %s, want %s", got, fixtures)
	}
}
