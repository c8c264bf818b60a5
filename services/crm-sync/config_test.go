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

// The webhook carries customers' billing state: https, or plain http to a
// loopback receiver only, refused at start with the reason.
func TestWebhookURLMustBeHTTPSUnlessLoopback(t *testing.T) {
	whsec := secret(t, "")
	cfgFor := func(u string) error {
		_, err := ConfigFromEnv(config.Map(map[string]string{"CRM_PROVIDER": "webhook", "CRM_WEBHOOK_URL": u, "CRM_WEBHOOK_SECRET": whsec}))
		return err
	}
	for _, ok := range []string{
		"https://hooks.example.com/catch/1/abc",
		"http://127.0.0.1:9000/crm",
		"http://127.8.9.10/crm",
		"http://[::1]:9000/crm",
		"http://localhost:9000/crm",
		"http://receiver.localhost/crm",
	} {
		if err := cfgFor(ok); err != nil {
			t.Errorf("%s refused: %v", ok, err)
		}
	}
	for _, bad := range []string{
		"http://hooks.example.com/catch/1/s3cretpath",
		"http://10.0.0.5/crm",
		"http://[::ffff:10.0.0.5]/crm",
		"http://localhost.example.com/crm",
		"ftp://hooks.example.com/crm",
		"hooks.example.com/crm",
		"https://user:pw@hooks.example.com/crm",
	} {
		err := cfgFor(bad)
		if err == nil {
			t.Errorf("%s accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), "CRM_WEBHOOK_URL") {
			t.Errorf("%s: error %q does not name CRM_WEBHOOK_URL", bad, err)
		}
		if strings.Contains(err.Error(), "s3cretpath") || strings.Contains(err.Error(), "pw@") {
			t.Errorf("%s: error %q repeats the URL's credential", bad, err)
		}
	}
	if err := cfgFor("http://hooks.example.com/crm"); err == nil || !strings.Contains(err.Error(), "https") {
		t.Errorf("plain http: %v; want an error that asks for https", err)
	}
}
