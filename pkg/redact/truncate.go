package redact

import "unicode/utf8"

// Truncate returns s when it is at most limit bytes, and otherwise
// CutUTF8(s, limit) followed by "…". Log fields, span attributes and error
// messages quote outside text through it so that none of them grows without
// bound.
func Truncate(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	return CutUTF8(s, limit) + "…"
}

// CutUTF8 returns at most the first limit bytes of s, cut back to a rune
// boundary so that the result stays valid UTF-8 (a rune split by the limit
// is dropped whole).
func CutUTF8(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	s = s[:max(limit, 0)]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
