package bus

import (
	"regexp"
	"unicode/utf8"
)

// maxErrorBytes bounds the error text stored in a dead letter: enough for a
// wrapped error chain, small enough that a vendor's HTML error page does not
// bloat the DLQ.
const maxErrorBytes = 1024

const redacted = "[REDACTED]"

// Each rule keeps enough context to tell what was removed.
var redactRules = []struct {
	re   *regexp.Regexp
	repl string
}{
	// Stripe secret and restricted keys, webhook signing secrets.
	{regexp.MustCompile(`\b((?:sk|rk)_(?:live_|test_)?|whsec_)[0-9A-Za-z_]+`), "${1}" + redacted},
	// HubSpot private app tokens.
	{regexp.MustCompile(`\bpat-[a-z0-9]+-[0-9A-Za-z-]+`), "pat-" + redacted},
	// Slack incoming webhook URLs are themselves the credential.
	{regexp.MustCompile(`(hooks\.slack\.com/(?:services|workflows|triggers)/)[^\s"'<>:]+`), "${1}" + redacted},
	// Authorization header values. "Basic" only as HTTP spells it and
	// followed by something base64-sized, so "basic plan" survives.
	{regexp.MustCompile(`(?i)\b(bearer)\s+[0-9A-Za-z\-._~+/]+=*`), "${1} " + redacted},
	{regexp.MustCompile(`\b(Basic)\s+[0-9A-Za-z+/]{12,}=*`), "${1} " + redacted},
	// user:password@ (or a bare token@) in any URL.
	{regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@"'<>]+@`), "${1}" + redacted + "@"},
	// Credentials passed as query or form parameters, or key=value in logs.
	{regexp.MustCompile(`(?i)\b((?:api[_-]?key|access[_-]?token|refresh[_-]?token|token|password|passwd|secret|client[_-]?secret)=)[^&\s"'<>]+`), "${1}" + redacted},
}

// Redact strips anything that looks like a credential from s: Stripe keys
// (sk_..., rk_...), webhook secrets (whsec_...), bearer and basic
// credentials, user info in URLs, token-like query parameters, HubSpot
// tokens and Slack webhook URLs. Use it on any error text that leaves the
// process (dead letters, span status, API answers).
func Redact(s string) string {
	for _, r := range redactRules {
		s = r.re.ReplaceAllString(s, r.repl)
	}
	return s
}

// redactError is the text stored with a dead letter: redacted first, so a
// cut can never leave the head of a secret behind, then bounded.
func redactError(err error) string {
	if err == nil {
		return ""
	}
	return truncateUTF8(Redact(err.Error()), maxErrorBytes)
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
