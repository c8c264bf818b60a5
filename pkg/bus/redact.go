package bus

import (
	"unicode/utf8"

	"github.com/launchready/launchready/pkg/redact"
)

// maxErrorBytes bounds the error text stored in a dead letter: enough for a
// wrapped error chain, small enough that a vendor's HTML error page does not
// bloat the DLQ.
const maxErrorBytes = 1024

// redactError is the text stored with a dead letter: redacted first, so a
// cut can never leave the head of a secret behind, then bounded.
func redactError(err error) string {
	if err == nil {
		return ""
	}
	return truncateUTF8(redact.Error(err), maxErrorBytes)
}

// truncateUTF8 cuts s to at most n bytes without splitting a rune.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	// A cut inside a multi-byte rune leaves at most UTFMax-1 stray bytes.
	for i := 0; i < utf8.UTFMax-1 && len(s) > 0; i++ {
		if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size != 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}

// Redact is redact.Text, the one redactor, under the name this package's
// log lines and errors already use.
func Redact(s string) string { return redact.Text(s) }
