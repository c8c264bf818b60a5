// Package logtest captures what code under test logs, for tests that
// assert on it while that code still runs in other goroutines.
package logtest

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
)

// Lines is an io.Writer that keeps each complete line written to it. It is
// safe for concurrent use.
type Lines struct {
	mu      sync.Mutex
	lines   []string
	partial []byte
}

func (l *Lines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		l.lines = append(l.lines, string(l.partial[:i]))
		l.partial = l.partial[i+1:]
	}
}

// String is every complete line so far, one per line.
func (l *Lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// Records decodes the JSON lines so far; lines that are not JSON objects
// are left out.
func (l *Lines) Records() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range l.lines {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}
