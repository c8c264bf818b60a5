package redact

import "net/url"

// RequestURL shortens an outbound request URL for a span: scheme, host and
// the shape of the path stay; user info goes, the query becomes
// Placeholder, and path segments that look like credentials (long, or
// mixing letters and digits, such as the last three segments of a Slack
// webhook URL) become Placeholder. Text that is not a URL with a host is
// Placeholder whole.
func RequestURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return Placeholder
	}
	out := u.Scheme + "://" + u.Host + maskPath(u.EscapedPath())
	if u.RawQuery != "" {
		out += "?" + Placeholder
	}
	return out
}

// Origin is where a URL points, without the path: for a webhook URL (an
// automation platform's, Slack's) the path is itself the credential.
// "" stays "", and text that is not a URL with a host is Placeholder.
func Origin(raw string) string {
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return Placeholder
	}
	out := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		out += "/" + Placeholder
	}
	return out
}

// looksSecret reports whether a path segment or a user name is shaped
// like a token: long, or mixing letters and digits.
func looksSecret(seg string) bool {
	if len(seg) >= 24 {
		return true
	}
	if len(seg) < 8 {
		return false
	}
	var letters, digits bool
	for _, r := range seg {
		switch {
		case r >= '0' && r <= '9':
			digits = true
		case r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
			letters = true
		}
	}
	return letters && digits
}
