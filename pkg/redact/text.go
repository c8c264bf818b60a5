package redact

import (
	"net/url"
	"regexp"
	"sort"
	"strings"
)

// Placeholder replaces every secret this package removes.
const Placeholder = "[REDACTED]"

// minKnownSecret is the shortest known secret Text replaces: anything
// shorter could not be told apart from ordinary words and numbers.
const minKnownSecret = 4

type rule struct {
	re   *regexp.Regexp
	repl string
}

// secretWords are the words that make a parameter name a credential's:
// password, sslpassword, passwd, pwd, api_key, key, access_token, secret,
// client_secret, auth, signature, nkey, seed, jwt, credentials.
var secretWords = []string{"pass", "pwd", "secret", "token", "key", "auth", "signature", "credential", "nkey", "seed", "jwt"}

// secretNamesExact are short names that would be too broad as parts.
var secretNamesExact = map[string]bool{"sig": true, "pw": true}

// secretName reports whether a parameter, query key or DSN keyword names
// a credential.
func secretName(name string) bool {
	n := strings.ToLower(strings.TrimSpace(name))
	if secretNamesExact[n] {
		return true
	}
	for _, w := range secretWords {
		if strings.Contains(n, w) {
			return true
		}
	}
	return false
}

// nameRE matches a parameter name secretName accepts, for the rules below.
var nameRE = `[a-z0-9_.\-]*(?:` + strings.Join(secretWords, "|") + `)[a-z0-9_.\-]*|sig|pw`

// Each shape rule keeps enough context to tell what was removed.
var (
	shapeRules = []rule{
		// Stripe secret and restricted keys, webhook signing secrets.
		{regexp.MustCompile(`\b((?:sk|rk)_(?:live_|test_)?|whsec_)[0-9A-Za-z_]+`), "${1}" + Placeholder},
		// HubSpot private app tokens.
		{regexp.MustCompile(`\bpat-[a-z0-9]+-[0-9A-Za-z-]+`), "pat-" + Placeholder},
		// Slack incoming webhook URLs are themselves the credential.
		{regexp.MustCompile(`(hooks\.slack\.com/(?:services|workflows|triggers)/)[^\s"'<>:]+`), "${1}" + Placeholder},
		// Authorization header values. "Basic" only as HTTP spells it and
		// followed by something base64-sized, so "basic plan" survives.
		{regexp.MustCompile(`(?i)\b(bearer)\s+[0-9A-Za-z\-._~+/]+=*`), "${1} " + Placeholder},
		{regexp.MustCompile(`\b(Basic)\s+[0-9A-Za-z+/]{12,}=*`), "${1} " + Placeholder},
		// Credential-named parameters: query strings, form bodies, DSNs and
		// key=value log text, quoted values (with escapes) included. An
		// unterminated quote runs to the end of the text.
		{regexp.MustCompile(`(?i)\b(` + nameRE + `)(\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|"(?:[^"\\]|\\.)*"?|[^\s&"'<>,;]+)`), "${1}${2}" + Placeholder},
		// The same names as JSON members.
		{regexp.MustCompile(`(?i)("(?:` + nameRE + `)"\s*:\s*)"(?:[^"\\]|\\.)*"`), `${1}"` + Placeholder + `"`},
	}
	// userinfoRule removes user:password@ (or a bare token@) from any URL
	// in free text. ConnString keeps the user name, so it runs the shape
	// rules without this one.
	userinfoRule = rule{regexp.MustCompile(`(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@"'<>]+@`), "${1}" + Placeholder + "@"}
)

// Text strips anything that looks like a credential from s, and every
// occurrence of the known secrets (plain or URL-escaped), replacing each
// with Placeholder. Use it on any text that leaves the process: error
// messages, a vendor's answer kept as a reason, dead letters, span status.
func Text(s string, known ...string) string {
	s = replaceKnown(s, known)
	s = userinfoRule.re.ReplaceAllString(s, userinfoRule.repl)
	return applyShapes(s)
}

// Error is Text of err's message; "" for nil.
func Error(err error, known ...string) string {
	if err == nil {
		return ""
	}
	return Text(err.Error(), known...)
}

func applyShapes(s string) string {
	for _, r := range shapeRules {
		s = r.re.ReplaceAllString(s, r.repl)
	}
	return s
}

// replaceKnown replaces the longest secrets first, so that a secret that
// contains another is removed whole.
func replaceKnown(s string, known []string) string {
	if len(known) == 0 || s == "" {
		return s
	}
	var forms []string
	for _, k := range known {
		if len(k) < minKnownSecret {
			continue
		}
		forms = append(forms, k)
		for _, esc := range []string{url.QueryEscape(k), url.PathEscape(k)} {
			if esc != k {
				forms = append(forms, esc)
			}
		}
	}
	sort.Slice(forms, func(i, j int) bool { return len(forms[i]) > len(forms[j]) })
	for _, f := range forms {
		s = strings.ReplaceAll(s, f, Placeholder)
	}
	return s
}
