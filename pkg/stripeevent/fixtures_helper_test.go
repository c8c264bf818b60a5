package stripeevent_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fixturesDir finds the shared Stripe fixtures: FIXTURES_DIR when set, else
// the first shared/fixtures/stripe above the working directory. The fixtures
// live beside the repository rather than in it (repo/../shared), so walking
// up covers both a developer checkout and a CI clone with shared/ next to it.
// A missing directory fails the test: a green run without fixtures proves
// nothing.
func fixturesDir(tb testing.TB) string {
	tb.Helper()
	if dir := os.Getenv("FIXTURES_DIR"); dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "INDEX.tsv")); err != nil {
			tb.Fatalf("FIXTURES_DIR=%s has no INDEX.tsv: %v", dir, err)
		}
		return dir
	}
	wd, err := os.Getwd()
	if err != nil {
		tb.Fatalf("working directory: %v", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		candidate := filepath.Join(dir, "shared", "fixtures", "stripe")
		if _, err := os.Stat(filepath.Join(candidate, "INDEX.tsv")); err == nil {
			return candidate
		}
		if parent := filepath.Dir(dir); parent == dir {
			break
		}
	}
	tb.Fatalf("shared/fixtures/stripe not found above %s; set FIXTURES_DIR", wd)
	return ""
}

// fixtureEntry is one row of INDEX.tsv.
type fixtureEntry struct {
	File, Kind, EventType, APIVersion, Livemode, Account, EventID string
	ObjectType, ObjectStatus, ObjectCustomer, PreviousKeys        string
}

func readIndex(tb testing.TB, dir string) []fixtureEntry {
	tb.Helper()
	f, err := os.Open(filepath.Join(dir, "INDEX.tsv"))
	if err != nil {
		tb.Fatalf("open index: %v", err)
	}
	defer f.Close()
	var out []fixtureEntry
	sc := bufio.NewScanner(f)
	header := true
	for sc.Scan() {
		if header {
			header = false
			continue
		}
		cols := strings.Split(sc.Text(), "\t")
		if len(cols) != 11 {
			tb.Fatalf("index row %q: want 11 columns, got %d", sc.Text(), len(cols))
		}
		out = append(out, fixtureEntry{
			File: cols[0], Kind: cols[1], EventType: cols[2], APIVersion: cols[3], Livemode: cols[4],
			Account: cols[5], EventID: cols[6], ObjectType: cols[7], ObjectStatus: cols[8],
			ObjectCustomer: cols[9], PreviousKeys: cols[10],
		})
	}
	if err := sc.Err(); err != nil {
		tb.Fatalf("read index: %v", err)
	}
	return out
}

func readFixture(tb testing.TB, dir, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name)))
	if err != nil {
		tb.Fatalf("read fixture: %v", err)
	}
	return b
}
