package console_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/launchready/launchready/pkg/config"
	console "github.com/launchready/launchready/services/console"
	"github.com/launchready/launchready/services/console/internal/auth"
)

func TestOIDCSettings(t *testing.T) {
	env := map[string]string{
		"CONSOLE_OIDC_ISSUER":         "https://idp.example.com",
		"CONSOLE_OIDC_CLIENT_ID":      "console",
		"CONSOLE_OIDC_CLIENT_SECRET":  "s3cret-from-the-idp",
		"CONSOLE_OIDC_ALLOWED_DOMAIN": "@example.com",
		"CONSOLE_OIDC_ROLE_MAP":       "ops-admins=billing_admin,support=support",
	}
	cfg, err := console.ConfigFromEnv(config.Map(env))
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.OIDC
	if !o.Enabled() || o.AllowedDomain != "example.com" || o.RoleMap["ops-admins"] != auth.BillingAdmin ||
		o.RedirectURL != "http://127.0.0.1:8090/login/oidc/callback" {
		t.Fatalf("oidc config %+v", o)
	}
	var logged strings.Builder
	logged.WriteString(cfg.LogValue().String())
	if strings.Contains(logged.String(), "s3cret-from-the-idp") {
		t.Fatal("the client secret is logged")
	}

	// Outside loopback the callback address must be given.
	env["CONSOLE_ADDR"] = "0.0.0.0:8090"
	if _, err := console.ConfigFromEnv(config.Map(env)); err == nil || !strings.Contains(err.Error(), "CONSOLE_OIDC_REDIRECT_URL") {
		t.Fatalf("no redirect URL off loopback: %v", err)
	}
	env["CONSOLE_OIDC_REDIRECT_URL"] = "https://console.example.com/login/oidc/callback"
	env["CONSOLE_OIDC_ROLE_MAP"] = "ops-admins=root"
	if _, err := console.ConfigFromEnv(config.Map(env)); err == nil || !strings.Contains(err.Error(), "CONSOLE_OIDC_ROLE_MAP") {
		t.Fatalf("a role map with an unknown role: %v", err)
	}

	// Without an issuer, local accounts only.
	cfg, err = console.ConfigFromEnv(config.Map(map[string]string{}))
	if err != nil || cfg.OIDC.Enabled() {
		t.Fatalf("default: %+v %v", cfg.OIDC, err)
	}
}

func TestPolicySetting(t *testing.T) {
	dir := t.TempDir()
	good, bad := filepath.Join(dir, "policy.yaml"), filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(good, []byte("refund_caps: {billing_admin: 50000}\napproval: {refund_above: 20000}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("refund_caps: {root: 1}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := console.ConfigFromEnv(config.Map(map[string]string{"CONSOLE_POLICY": good}))
	if err != nil || cfg.Policy.RefundCaps[auth.BillingAdmin] != 50000 || cfg.Policy.Approval.RefundAbove != 20000 {
		t.Fatalf("policy %+v %v", cfg.Policy, err)
	}
	for _, path := range []string{bad, filepath.Join(dir, "missing.yaml")} {
		if _, err := console.ConfigFromEnv(config.Map(map[string]string{"CONSOLE_POLICY": path})); err == nil || !strings.Contains(err.Error(), "CONSOLE_POLICY") {
			t.Errorf("CONSOLE_POLICY=%s: %v", path, err)
		}
	}
}
