package testkit

import (
	"fmt"
	"os"
	"path/filepath"
)

// TB is the part of testing.TB the helpers use, so that harnesses driving
// the system outside `go test` can pass their own.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// FixturesDir is the directory of real Stripe payloads the tests replay
// (see its PROVENANCE.md and INDEX.tsv): FIXTURES_DIR when set, else the
// first shared/fixtures/stripe above the working directory, which covers a
// checkout with shared/ beside it. A directory without INDEX.tsv fails t: a
// green run with nothing to replay proves nothing.
func FixturesDir(t TB) string {
	t.Helper()
	dir, err := FindFixturesDir()
	if err != nil {
		t.Fatalf("%v", err)
	}
	return dir
}

// FindFixturesDir is FixturesDir for programs that are not tests (the load
// generators): it returns the error instead of failing a test.
func FindFixturesDir() (string, error) {
	if dir := os.Getenv("FIXTURES_DIR"); dir != "" {
		// #nosec G703 -- FIXTURES_DIR is the test runner's own setting, read only to find the fixtures.
		if _, err := os.Stat(filepath.Join(dir, "INDEX.tsv")); err != nil {
			return "", fmt.Errorf("FIXTURES_DIR=%s has no INDEX.tsv: %w", dir, err)
		}
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("find fixtures: %w", err)
	}
	for d := wd; ; {
		cand := filepath.Join(d, "shared", "fixtures", "stripe")
		if _, err := os.Stat(filepath.Join(cand, "INDEX.tsv")); err == nil {
			return cand, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", fmt.Errorf("shared/fixtures/stripe not found above %s; set FIXTURES_DIR", wd)
		}
		d = parent
	}
}
