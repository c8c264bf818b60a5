package stripeevent_test

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
