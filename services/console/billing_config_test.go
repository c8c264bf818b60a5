package console_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/services/console"
)

func TestConfigReadsBillingAndMasksItsToken(t *testing.T) {
	const token = "console-token-0123456789abcdef0123456789"
	cfg, err := console.ConfigFromEnv(config.Map(map[string]string{
		"CONSOLE_BILLING_GRPC_ADDR": "billing-state:9090", "CONSOLE_BILLING_GRPC_TOKEN": token, "CONSOLE_BILLING_GRPC_TLS": "true",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Billing.Addr != "billing-state:9090" || cfg.Billing.Token.Reveal() != token || !cfg.Billing.TLS {
		t.Fatalf("billing settings: %+v", cfg.Billing)
	}
	var out bytes.Buffer
	slog.New(slog.NewJSONHandler(&out, nil)).Info("config", "config", cfg)
	if strings.Contains(out.String(), token) || !strings.Contains(out.String(), "billing-state:9090") {
		t.Fatalf("logged settings show the token or lack the address: %s", out.String())
	}

	def, err := console.ConfigFromEnv(config.Map(nil))
	if err != nil {
		t.Fatal(err)
	}
	if def.Billing.Addr != console.DefaultBillingAddr || def.Billing.Token != "" || def.Billing.TLS {
		t.Fatalf("default billing settings: %+v", def.Billing)
	}
}
