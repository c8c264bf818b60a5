package redact_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/launchready/launchready/pkg/redact"
)

func TestTextStripsSecrets(t *testing.T) {
	// Secret-shaped values are assembled at run time so no file holds one.
	tail := strings.Repeat("Zx9", 8)
	cases := []struct {
		in, secret, keep string
	}{
		{"stripe: invalid key sk_live_" + tail + " given", tail, "sk_live_[REDACTED] given"},
		{"key sk_test_" + tail, tail, "sk_test_[REDACTED]"},
		{"restricted rk_live_" + tail + ".", tail, "rk_live_[REDACTED]."},
		{"bad secret whsec_" + tail, tail, "whsec_[REDACTED]"},
		{"Authorization: Bearer " + tail + "==", tail, "Bearer [REDACTED]"},
		{"Authorization: Basic " + tail, tail, "Basic [REDACTED]"},
		{"dial postgres://app:" + tail + "@db:5432/billing failed", tail, "postgres://[REDACTED]@db:5432/billing"},
		{"GET https://" + tail + "@api.example.com/x", tail, "https://[REDACTED]@api.example.com/x"},
		{"POST https://hooks.slack.com/services/T0/B0/" + tail + ": 404", tail, "hooks.slack.com/services/[REDACTED]: 404"},
		{"GET /v3/x?api_key=" + tail + "&limit=1", tail, "api_key=[REDACTED]&limit=1"},
		{"hubspot token pat-na1-" + tail + "-1234", tail, "pat-[REDACTED]"},
		{"connect host=db password='" + tail + " x\\'y' user=app", tail, "password=[REDACTED] user=app"},
		{`{"error":"bad","access_token":"` + tail + `"}`, tail, `"access_token":"[REDACTED]"`},
		{"GET https://h/x?sig=" + tail, tail, "sig=[REDACTED]"},
	}
	for _, c := range cases {
		got := redact.Text(c.in)
		if strings.Contains(got, c.secret) {
			t.Errorf("Text(%q) = %q: secret left in", c.in, got)
		}
		if !strings.Contains(got, c.keep) {
			t.Errorf("Text(%q) = %q, want it to contain %q", c.in, got, c.keep)
		}
	}
	for _, clean := range []string{
		"postgres: connection refused",
		"customer cus_123 has subscription sub_456",
		"event evt_1 (invoice.payment_failed) delivery 3",
		"task_skipped: risk_level high",
		"price for the basic plan is missing; token expired",
		"https://api.hubspot.com/crm/v3/objects/contacts returned 502",
	} {
		if got := redact.Text(clean); got != clean {
			t.Errorf("Text(%q) changed harmless text to %q", clean, got)
		}
	}
}

// A secret the caller knows is removed wherever it stands, escaped for a
// URL or not, even in text no shape rule recognises.
func TestTextRemovesKnownSecrets(t *testing.T) {
	known := "kn0wn secret/" + strings.Repeat("q", 6)
	for _, in := range []string{
		"webhook said: unknown signing value " + known,
		"POST https://h/in/kn0wn%20secret%2Fqqqqqq failed",
		"form kn0wn+secret%2Fqqqqqq",
	} {
		got := redact.Text(in, known, "", "ab")
		if strings.Contains(got, "kn0wn") || !strings.Contains(got, redact.Placeholder) {
			t.Errorf("Text(%q) = %q", in, got)
		}
	}
	// Too short to tell from ordinary text: left alone.
	if got := redact.Text("abc", "ab"); got != "abc" {
		t.Errorf("short known secret replaced: %q", got)
	}
	if redact.Error(nil) != "" {
		t.Error("Error(nil) is not empty")
	}
	if got := redact.Error(errors.New("token=" + known)); strings.Contains(got, "kn0wn") {
		t.Errorf("Error = %q", got)
	}
}
