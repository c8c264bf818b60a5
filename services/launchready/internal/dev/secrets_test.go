package dev

import (
	"os"
	"path/filepath"
	"testing"
)

// A dev secrets file from before the status page keeps its webhook secret
// and API token and gains a status link secret, which stays across
// restarts.
func TestDevSecretsGainAStatusLinkSecret(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dev-secrets.json")
	if err := os.WriteFile(path, []byte(`{"webhook_secret":"whsec_kept","api_token":"lr_dev_kept"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := loadDevSecrets(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.WebhookSecret != "whsec_kept" || s.APIToken != "lr_dev_kept" || len(s.StatusLinkSecret) != 64 {
		t.Fatalf("after the upgrade: %+v", s)
	}
	again, err := loadDevSecrets(path)
	if err != nil {
		t.Fatal(err)
	}
	if again != s {
		t.Fatalf("after a restart: %+v, want %+v", again, s)
	}
	fresh, err := loadDevSecrets(filepath.Join(t.TempDir(), "dev-secrets.json"))
	if err != nil {
		t.Fatal(err)
	}
	if fresh.WebhookSecret == "" || fresh.APIToken == "" || len(fresh.StatusLinkSecret) != 64 || fresh.StatusLinkSecret == s.StatusLinkSecret {
		t.Fatalf("a new checkout's secrets: %+v", fresh)
	}
}
