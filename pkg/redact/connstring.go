package redact

import (
	"net/url"
	"regexp"
	"strings"
)

// ConnString masks every secret in a connection string, whatever its form,
// for a log line or an error: a URL (scheme://user:pass@host, a token-only
// nats://TOKEN@host, credential-named query parameters such as ?password=,
// ?token=, ?sslpassword=), a comma list of URLs (a NATS cluster), a
// libpq key/value DSN (host=db password='se cret' user=app, quoted values
// with escaped quotes included), or a list of host:port with user info.
//
// It parses leniently and never falls back to the raw text: whatever it
// cannot place (a malformed quote, a word that is not key=value, a path
// segment shaped like a token) is masked too. The user name of a
// user:password pair stays, so an operator can tell which role connects;
// a user with no password is a token and is masked, except in Postgres
// and MySQL URLs, where it is the role.
func ConnString(s string) string {
	if strings.TrimSpace(s) == "" {
		return s
	}
	var out string
	switch {
	case schemeRE.MatchString(s):
		out = maskURLList(s)
	case dsnRE.MatchString(s) && !schemelessUserinfo(s):
		out = maskKeyValues(s)
	default:
		// host[:port] entries, perhaps a comma list, perhaps with user
		// info: a token may hold a comma, so everything before the last
		// '@' goes.
		out = maskHost(s)
	}
	// A second pass by shape catches what the structure hid, such as a
	// credential-named parameter after a stray '@'.
	return applyShapes(out)
}

var (
	schemeRE = regexp.MustCompile(`^\s*[A-Za-z][A-Za-z0-9+.\-:]*://`)
	// dsnRE is the start of a key/value DSN: a keyword and '='.
	dsnRE = regexp.MustCompile(`^\s*[A-Za-z_][A-Za-z0-9_]*\s*=`)
	// listSepRE finds the comma before each further URL of a list.
	keywordRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	listSepRE = regexp.MustCompile(`,\s*[A-Za-z][A-Za-z0-9+.\-:]*://`)
)

// usernameSchemes name a role, not a token, with a user and no password.
var usernameSchemes = map[string]bool{"postgres": true, "postgresql": true, "mysql": true}

func maskURLList(s string) string {
	var b strings.Builder
	start := 0
	for _, loc := range listSepRE.FindAllStringIndex(s, -1) {
		b.WriteString(maskURL(s[start:loc[0]]))
		b.WriteByte(',')
		start = loc[0] + 1
	}
	b.WriteString(maskURL(s[start:]))
	return b.String()
}

// maskURL masks one URL. User info runs to the last '@' anywhere (a raw
// '@', '?' or '#' in a password would otherwise leave part of it outside),
// at the cost of masking more than needed when a query holds an '@'.
func maskURL(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return maskHost(s)
	}
	scheme, rest := s[:i], s[i+3:]
	var b strings.Builder
	b.WriteString(scheme)
	b.WriteString("://")
	if k := strings.LastIndexByte(rest, '@'); k >= 0 {
		b.WriteString(maskUserinfo(strings.ToLower(strings.TrimSpace(scheme)), rest[:k]))
		b.WriteByte('@')
		rest = rest[k+1:]
	}
	frag := ""
	if k := strings.IndexByte(rest, '#'); k >= 0 {
		frag, rest = "#"+Placeholder, rest[:k]
	}
	query := ""
	if k := strings.IndexByte(rest, '?'); k >= 0 {
		query, rest = "?"+maskQuery(rest[k+1:]), rest[:k]
	}
	if k := strings.IndexByte(rest, '/'); k >= 0 {
		b.WriteString(rest[:k])
		b.WriteString(maskPath(rest[k:]))
	} else {
		b.WriteString(rest)
	}
	b.WriteString(query)
	b.WriteString(frag)
	return b.String()
}

func maskUserinfo(scheme, ui string) string {
	if k := strings.IndexByte(ui, ':'); k >= 0 {
		return Text(ui[:k]) + ":" + Placeholder
	}
	if usernameSchemes[scheme] && !looksSecret(ui) {
		return ui
	}
	return Placeholder
}

func maskQuery(q string) string {
	params := strings.Split(q, "&")
	for i, p := range params {
		k, v, hasValue := strings.Cut(p, "=")
		if !hasValue {
			continue
		}
		name, err := url.QueryUnescape(k)
		if err != nil {
			name = k
		}
		if secretName(name) {
			params[i] = k + "=" + Placeholder
			continue
		}
		// A harmless name may still carry one (options=-c password=...).
		if dv, err := url.QueryUnescape(v); err != nil || Text(dv) != dv {
			params[i] = k + "=" + Placeholder
		}
	}
	return strings.Join(params, "&")
}

func maskPath(p string) string {
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		if looksSecret(seg) {
			segs[i] = Placeholder
		}
	}
	return strings.Join(segs, "/")
}

// schemelessUserinfo reports whether s reads as user info before a host
// (TOKEN@host:4222): an '@' with no space before it.
func schemelessUserinfo(s string) bool {
	k := strings.LastIndexByte(s, '@')
	return k >= 0 && !strings.ContainsAny(strings.TrimSpace(s[:k]), " \t\n\r\f\v")
}

func maskHost(s string) string {
	if k := strings.LastIndexByte(s, '@'); k >= 0 {
		return maskUserinfo("", s[:k]) + "@" + s[k+1:]
	}
	return s
}

// maskKeyValues masks a libpq-style key/value DSN: keyword = value pairs
// separated by spaces, values bare (backslash escapes) or single-quoted
// (\' and \\ inside). The text between values is copied as it stands.
func maskKeyValues(s string) string {
	var b strings.Builder
	i := 0
	for i < len(s) {
		if isSpace(s[i]) {
			b.WriteByte(s[i])
			i++
			continue
		}
		// The keyword: up to '=' or a space.
		k := i
		for k < len(s) && s[k] != '=' && !isSpace(s[k]) {
			k++
		}
		key := s[i:k]
		if !keywordRE.MatchString(key) {
			// Not a keyword: part of something unquoted that was never
			// meant to be split here, so none of it is printed.
			b.WriteString(Placeholder)
			i = valueEnd(s, k)
			continue
		}
		// Spaces, then '='.
		e := k
		for e < len(s) && isSpace(s[e]) {
			e++
		}
		if e >= len(s) || s[e] != '=' {
			// A word that is not key=value: no place for it in a DSN,
			// so it is not printed.
			b.WriteString(Placeholder)
			i = k
			continue
		}
		e++
		for e < len(s) && isSpace(s[e]) {
			e++
		}
		end := valueEnd(s, e)
		value := s[e:end]
		b.WriteString(s[i:e])
		if secretName(key) || Text(value) != value {
			b.WriteString(Placeholder)
		} else {
			b.WriteString(value)
		}
		i = end
	}
	return b.String()
}

// valueEnd returns where the value starting at i ends: after its closing
// quote, or at the first unescaped space; an unterminated quote runs to
// the end.
func valueEnd(s string, i int) int {
	if i < len(s) && s[i] == '\'' {
		for j := i + 1; j < len(s); j++ {
			switch s[j] {
			case '\\':
				j++
			case '\'':
				return j + 1
			}
		}
		return len(s)
	}
	j := i
	for j < len(s) && !isSpace(s[j]) {
		if s[j] == '\\' {
			j++
		}
		j++
	}
	return min(j, len(s))
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'
}
