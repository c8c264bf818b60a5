package crmsync

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/config"
)

func TestConfigFromEnvDefaults(t *testing.T) {
	cfg, err := ConfigFromEnv(config.Map(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Provider != ProviderLog || cfg.HTTPAddr != ":8082" || cfg.RateLimit != 100 || cfg.RateWindow != 10*time.Second ||
		cfg.Timeout != 10*time.Second || cfg.HubSpot.BaseURL != "https://api.hubapi.com" || !cfg.Policy.PastDueEntitled ||
		cfg.Consumer.Durable != Durable {
		t.Fatalf("defaults: %+v", cfg)
	}
}

func TestConfigFromEnvReportsEveryProblem(t *testing.T) {
	_, err := ConfigFromEnv(config.Map(map[string]string{
		"CRM_PROVIDER":        "hubspot",
		"CRM_RATE_LIMIT":      "0",
		"CRM_TIMEOUT":         "soon",
		"HUBSPOT_DEAL_STAGES": "active=closedwon,bogus=x",
	}))
	if err == nil {
		t.Fatal("accepted a bad configuration")
	}
	for _, want := range []string{"HUBSPOT_TOKEN", "CRM_RATE_LIMIT", "CRM_TIMEOUT", "HUBSPOT_DEAL_STAGES"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	_, err = ConfigFromEnv(config.Map(map[string]string{"CRM_PROVIDER": "webhook"}))
	if err == nil || !strings.Contains(err.Error(), "CRM_WEBHOOK_URL") || !strings.Contains(err.Error(), "CRM_WEBHOOK_SECRET") {
		t.Fatalf("webhook without URL and secret: %v", err)
	}
	_, err = ConfigFromEnv(config.Map(map[string]string{"CRM_PROVIDER": "salesforce"}))
	if err == nil || !strings.Contains(err.Error(), "CRM_PROVIDER") {
		t.Fatalf("unknown provider: %v", err)
	}
}

func TestConfigLogsNoSecret(t *testing.T) {
	tok, whsec := secret(t, "pat-na1-"), secret(t, "")
	cfg, err := ConfigFromEnv(config.Map(map[string]string{
		"CRM_PROVIDER": "hubspot", "HUBSPOT_TOKEN": tok, "CRM_WEBHOOK_SECRET": whsec,
		"CRM_WEBHOOK_URL":     "https://hooks.example.com/catch/123/capabilitypath",
		"DATABASE_URL":        "postgres://crm:hunter2pass@db:5432/lr",
		"HUBSPOT_DEAL_STAGES": "active=subscribed, canceled=churned",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HubSpot.Stages["active"] != "subscribed" || cfg.HubSpot.Stages["canceled"] != "churned" {
		t.Fatalf("stages %v", cfg.HubSpot.Stages)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("start", "config", cfg)
	for _, leak := range []string{tok, whsec, "hunter2pass", "capabilitypath"} {
		if strings.Contains(buf.String(), leak) {
			t.Fatalf("config log line leaks a secret: %s", buf.String())
		}
	}
}
