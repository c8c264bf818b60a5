package redact_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/launchready/launchready/pkg/redact"
)

// forms embeds secret in every form of URL and DSN a service may log,
// escaped as that form requires, and says what must stay readable.
func forms(secret string) []struct{ in, keep string } {
	userinfo := url.UserPassword("app", secret).String()
	token := url.User(secret).String()
	q := url.QueryEscape(secret)
	quoted := "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(secret) + "'"
	return []struct{ in, keep string }{
		// user:password
		{"postgres://" + userinfo + "@db:5432/lr?sslmode=require", "postgres://app:[REDACTED]@db:5432/lr?sslmode=require"},
		{"postgresql://" + userinfo + "@db/lr", "postgresql://app:[REDACTED]@db/lr"},
		{"nats://" + userinfo + "@nats:4222", "nats://app:[REDACTED]@nats:4222"},
		{"https://:" + url.PathEscape(secret) + "@crm.example.com/x", "@crm.example.com/x"},
		// a token alone
		{"nats://" + token + "@nats:4222", "nats://[REDACTED]@nats:4222"},
		{"tls://" + token + "@nats.internal:4443", "tls://[REDACTED]@nats.internal:4443"},
		{"wss://" + token + "@nats.example.com:443/ws", "wss://[REDACTED]@nats.example.com:443/ws"},
		{token + "@nats:4222", "[REDACTED]@nats:4222"},
		// credential-named query parameters
		{"postgres://app@db/lr?password=" + q, "postgres://app@db/lr?password=[REDACTED]"},
		{"postgres://db/lr?sslmode=verify-full&sslpassword=" + q + "&application_name=crm", "sslmode=verify-full&sslpassword=[REDACTED]&application_name=crm"},
		{"https://api.example.com/v1?token=" + q, "https://api.example.com/v1?token=[REDACTED]"},
		{"https://api.example.com/v1?limit=5&secret=" + q, "limit=5&secret=[REDACTED]"},
		{"https://api.example.com/v1?key=" + q + "&x=1", "key=[REDACTED]&x=1"},
		{"https://api.example.com/v1?api_key=" + q, "api_key=[REDACTED]"},
		{"https://api.example.com/v1?access_token=" + q + "#top", "?access_token=[REDACTED]"},
		{"postgres://db/lr?options=" + url.QueryEscape("-c password="+secret), "options=[REDACTED]"},
		// key/value DSNs
		{"host=db port=5432 password=" + quoted + " user=app dbname=lr", "host=db port=5432 password=[REDACTED] user=app dbname=lr"},
		{"host=db password = " + quoted + " sslmode=disable", "host=db password = [REDACTED] sslmode=disable"},
		{"user=app sslpassword=" + quoted, "user=app sslpassword=[REDACTED]"},
		{"host=db password=" + quoted, "host=db password=[REDACTED]"},
		// lists of URLs
		{"nats://" + userinfo + "@a:4222,nats://" + token + "@b:4222, nats://c:4222",
			"nats://app:[REDACTED]@a:4222,nats://[REDACTED]@b:4222, nats://c:4222"},
		{"nats://a:4222," + token + "@b:4222", "nats://"},
		{"a:4222," + token + "@b:4222", "[REDACTED]@b:4222"},
		// malformed: never printed raw
		{"postgres://" + userinfo + "@[::1/lr", "postgres://app:[REDACTED]@[::1/lr"},
		{"postgres://" + userinfo + "@db:notaport/lr%zz", "@db:notaport/lr%zz"},
		{"postgres://app:" + secret + "@db/lr", "@db/lr"},
	}
}

// Malformed DSNs, whose secrets a parser can only guess at: an
// unterminated quote, and a password with a space left unquoted.
func TestConnStringMalformedDSN(t *testing.T) {
	for _, c := range []struct{ in, secret, keep string }{
		{"host=db password='hunter2 hunter2 user=app", "hunter2", "host=db password=[REDACTED]"},
		{"host=db password=hunter2 hunter3 user=app", "hunter", "host=db password=[REDACTED] [REDACTED] user=app"},
		{"host=db hunter2hunter2 user=app", "hunter2", "host=db [REDACTED] user=app"},
		{"host=db a,b=hunter2hunter2 user=app", "hunter2", "host=db [REDACTED] user=app"},
	} {
		got := redact.ConnString(c.in)
		if strings.Contains(got, c.secret) || !strings.Contains(got, c.keep) {
			t.Errorf("ConnString(%q) = %q; want no %q and %q kept", c.in, got, c.secret, c.keep)
		}
	}
}

func TestConnStringMasksEveryForm(t *testing.T) {
	for _, secret := range []string{
		"hunter2hunter2",
		"s3cr3t with spaces",
		`qu'ote\back"slash`,
		"p@ss/w?rd#frag",
		"tok,en;semi&amp=eq+plus",
	} {
		for _, f := range forms(secret) {
			got := redact.ConnString(f.in)
			for _, leak := range leaks(secret) {
				if strings.Contains(got, leak) {
					t.Errorf("ConnString(%q) = %q: %q survived", f.in, got, leak)
				}
			}
			if !strings.Contains(got, f.keep) {
				t.Errorf("ConnString(%q) = %q, want it to contain %q", f.in, got, f.keep)
			}
		}
	}
}

func TestConnStringKeepsWhatIsNotSecret(t *testing.T) {
	for _, in := range []string{
		"",
		"postgres://postgres@127.0.0.1:5432/launchready?sslmode=disable",
		"postgres://h/db",
		"nats://127.0.0.1:4222",
		"nats://a:4222,nats://b:4222",
		"host=db port=5432 user=app dbname=lr sslmode=require",
		"127.0.0.1:4222",
	} {
		if got := redact.ConnString(in); got != in {
			t.Errorf("ConnString(%q) = %q; nothing in it is secret", in, got)
		}
	}
}

// leaks are the forms of secret that must not appear: as written, and
// each way a form may have escaped it. Fragments split at the separators
// a parser could cut it at must not survive either, when long enough to
// mean anything.
func leaks(secret string) []string {
	out := []string{secret, url.QueryEscape(secret), url.PathEscape(secret)}
	for _, part := range strings.FieldsFunc(secret, func(r rune) bool { return strings.ContainsRune(" '\\\"@/?#,;&=+", r) }) {
		if len(part) >= 4 {
			out = append(out, part)
		}
	}
	return out
}

// A random secret, embedded in any form, never comes out.
func FuzzConnString(f *testing.F) {
	for _, seed := range []string{"hunter2hunter2", "a b'c\\d", "p@ss/w?rd#x", "x,y;z&w=v+u", "%zz%41"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		secret := secretFrom(raw)
		for _, f := range forms(secret) {
			// A secret that the rest of the form also spells (a fuzzed
			// "5432" or "nats") proves nothing either way.
			if strings.Contains(strings.ReplaceAll(f.in, escapedIn(f.in, secret), ""), secret) {
				continue
			}
			got := redact.ConnString(f.in)
			for _, leak := range []string{secret, url.QueryEscape(secret), url.PathEscape(secret)} {
				if strings.Contains(got, leak) {
					t.Fatalf("ConnString(%q) = %q: the secret %q survived", f.in, got, secret)
				}
			}
		}
	})
}

// secretFrom turns fuzz input into a secret of 12 to 40 printable ASCII
// characters that starts with a marker no template contains, so finding
// it in the output can only mean it leaked.
func secretFrom(raw string) string {
	var b strings.Builder
	b.WriteString("Qz")
	for i := 0; i < len(raw) && b.Len() < 40; i++ {
		c := raw[i]%95 + 32 // printable ASCII, space included
		b.WriteByte(c)
	}
	for b.Len() < 12 {
		b.WriteByte('k')
	}
	return b.String()
}

// escapedIn returns the form of secret that in actually holds.
func escapedIn(in, secret string) string {
	quoted := strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(secret)
	for _, form := range []string{url.UserPassword("app", secret).String()[4:], url.User(secret).String(), url.QueryEscape(secret), url.PathEscape(secret), quoted, secret} {
		if strings.Contains(in, form) {
			return form
		}
	}
	return secret
}
