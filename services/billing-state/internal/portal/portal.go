// Package portal decides where a Stripe Customer Portal session may lead
// back to: PORTAL_RETURN_URLS, the allow-list of return URLs. The portal
// is opened for a customer by whoever holds a read token, so without the
// list it could send a customer, after the portal, anywhere.
package portal

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
)

// MaxURLBytes bounds a return URL.
const MaxURLBytes = 2048

// ReturnURLs is the allow-list. The zero value allows nothing.
type ReturnURLs struct {
	entries []*url.URL
}

// ParseReturnURLs reads PORTAL_RETURN_URLS: a comma list of URLs. Each is
// https (http only for a loopback host) or an app's own scheme
// ("myapp://billing"). A return URL matches an entry with the same scheme
// and host (and port) whose path is the URL's path, or, when the entry's
// path ends in "/", a prefix of it; a query is allowed, a fragment and
// user info are not.
func ParseReturnURLs(list string) (ReturnURLs, error) {
	var r ReturnURLs
	var errs []error
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		u, err := url.Parse(item)
		if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil || u.Fragment != "" || u.RawQuery != "" {
			errs = append(errs, fmt.Errorf("PORTAL_RETURN_URLS: %q is not scheme://host[/path] without query, fragment or user", item))
			continue
		}
		u.Scheme, u.Host = strings.ToLower(u.Scheme), strings.ToLower(u.Host)
		if u.Scheme == "http" && !loopback(u.Hostname()) {
			errs = append(errs, fmt.Errorf("PORTAL_RETURN_URLS: %q: http only for a loopback host; use https", item))
			continue
		}
		if u.Scheme == "javascript" || u.Scheme == "data" || u.Scheme == "file" {
			errs = append(errs, fmt.Errorf("PORTAL_RETURN_URLS: %q: scheme %s is not a place to return to", item, u.Scheme))
			continue
		}
		if u.Path == "" {
			u.Path = "/"
		}
		r.entries = append(r.entries, u)
	}
	return r, errors.Join(errs...)
}

// Len is the number of entries.
func (r ReturnURLs) Len() int { return len(r.entries) }

// Allows reports whether raw may be a portal session's return URL.
func (r ReturnURLs) Allows(raw string) bool {
	if raw == "" || len(raw) > MaxURLBytes {
		return false
	}
	u, err := url.Parse(raw)
	if err != nil || u.User != nil || u.Fragment != "" || strings.Contains(raw, "#") || u.Opaque != "" {
		return false
	}
	// A path that climbs out of the allowed one must not match its prefix;
	// percent-encoded dots and slashes could hide the climb.
	if strings.Contains(u.EscapedPath(), "..") || strings.Contains(strings.ToLower(u.EscapedPath()), "%2e") ||
		strings.Contains(strings.ToLower(u.EscapedPath()), "%2f") || strings.Contains(u.Path, `\`) {
		return false
	}
	path := u.Path
	if path == "" {
		path = "/"
	}
	for _, e := range r.entries {
		if !strings.EqualFold(u.Scheme, e.Scheme) || !strings.EqualFold(u.Host, e.Host) {
			continue
		}
		if path == e.Path || (strings.HasSuffix(e.Path, "/") && strings.HasPrefix(path, e.Path)) {
			return true
		}
	}
	return false
}

// String lists the entries, for the startup log.
func (r ReturnURLs) String() string {
	out := make([]string, len(r.entries))
	for i, e := range r.entries {
		out[i] = e.String()
	}
	return strings.Join(out, ",")
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
