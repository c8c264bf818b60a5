package redact

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestTruncate(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit int
		want  string
	}{
		{"short", 10, "short"},
		{"exactly10!", 10, "exactly10!"},
		{"eleven char", 10, "eleven cha…"},
		// "é" is two bytes: a cut inside it drops the whole rune.
		{"caféé", 4, "caf…"},
		{"caféé", 5, "café…"},
		{"abc", 0, "…"},
	} {
		got := Truncate(tc.in, tc.limit)
		if got != tc.want {
			t.Errorf("Truncate(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
		}
		if !utf8.ValidString(got) {
			t.Errorf("Truncate(%q, %d) = %q is not valid UTF-8", tc.in, tc.limit, got)
		}
		if body := strings.TrimSuffix(got, "…"); len(body) > tc.limit {
			t.Errorf("Truncate(%q, %d) kept %d bytes", tc.in, tc.limit, len(body))
		}
	}
}

func TestCutUTF8(t *testing.T) {
	for _, tc := range []struct {
		in    string
		limit int
		want  string
	}{
		{"abc", 5, "abc"},
		{"abcdef", 3, "abc"},
		{"aé", 2, "a"},
		{"aé", 3, "aé"},
	} {
		if got := CutUTF8(tc.in, tc.limit); got != tc.want {
			t.Errorf("CutUTF8(%q, %d) = %q, want %q", tc.in, tc.limit, got, tc.want)
		}
	}
}
