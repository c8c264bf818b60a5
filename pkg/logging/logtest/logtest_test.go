package logtest_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/launchready/launchready/pkg/logging/logtest"
)

func TestLinesKeepsWholeLinesFromManyWriters(t *testing.T) {
	var l logtest.Lines
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				fmt.Fprintf(&l, "{\"writer\":%d,\"n\":%d}\n", w, i)
			}
		}()
	}
	wg.Wait()
	_, _ = l.Write([]byte("not json\n{\"half\":"))
	recs := l.Records()
	if len(recs) != 400 {
		t.Fatalf("%d records, want 400 (the plain line and the unfinished one left out)", len(recs))
	}
	if got := l.String(); len(got) == 0 || got[len(got)-len("not json"):] != "not json" {
		t.Fatalf("String ends %q, want the last complete line", got[max(0, len(got)-20):])
	}
}
