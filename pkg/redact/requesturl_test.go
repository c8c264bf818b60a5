package redact_test

import (
	"testing"

	"github.com/launchready/launchready/pkg/redact"
)

func TestRequestURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://api.hubapi.com/crm/v3/objects/contacts/batch/upsert": "https://api.hubapi.com/crm/v3/objects/contacts/batch/upsert",
		"https://acme.zendesk.com/api/v2/tickets.json":                "https://acme.zendesk.com/api/v2/tickets.json",
		"https://user:pw@crm.example.com/hook?token=abc":              "https://crm.example.com/hook?" + redact.Placeholder,
		"https://crm.example.com/in/0123456789abcdef0123456789abcdef": "https://crm.example.com/in/" + redact.Placeholder,
		"not a url": redact.Placeholder,
	} {
		if got := redact.RequestURL(in); got != want {
			t.Errorf("RequestURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestOrigin(t *testing.T) {
	for in, want := range map[string]string{
		"": "",
		"https://hooks.example.com/catch/123/capabilitypath": "https://hooks.example.com/" + redact.Placeholder,
		"https://u:p@hooks.example.com/x?y=1":                "https://hooks.example.com/" + redact.Placeholder,
		"https://crm.example.com":                            "https://crm.example.com",
		"http://127.0.0.1:8080/":                             "http://127.0.0.1:8080",
		"::not a url":                                        redact.Placeholder,
		"hooks.example.com/catch/123/capabilitypath":         redact.Placeholder,
	} {
		if got := redact.Origin(in); got != want {
			t.Errorf("Origin(%q) = %q, want %q", in, got, want)
		}
	}
}
