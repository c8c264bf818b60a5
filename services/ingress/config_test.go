package ingress_test

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/services/ingress"
)

func TestConfigFromEnvDefaults(t *testing.T) {
	cfg, err := ingress.ConfigFromEnv(config.Map(map[string]string{"STRIPE_WEBHOOK_SECRET": "whsec_one"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != ":8080" || cfg.MaxBody != 1<<20 || cfg.Tolerance != 300*time.Second || cfg.PublishTimeout != 5*time.Second || cfg.Livemode != "" {
		t.Fatalf("defaults: %+v", cfg)
	}
	if cfg.NATSURL.URL != "nats://127.0.0.1:4222" || cfg.NATSURL.User != "ingress" {
		t.Fatalf("NATS_URL default %q, user %q", cfg.NATSURL.URL, cfg.NATSURL.User)
	}
	if cfg.MaxInflight != 32 || cfg.InflightWait != 500*time.Millisecond || cfg.ReadTimeout != 10*time.Second {
		t.Fatalf("in-flight defaults: max %d wait %s read timeout %s", cfg.MaxInflight, cfg.InflightWait, cfg.ReadTimeout)
	}
	if cfg.SilenceAlert != 6*time.Hour {
		t.Fatalf("WEBHOOK_SILENCE_ALERT default %s, want 6h", cfg.SilenceAlert)
	}
	// The ops port clashes with neither the webhook's nor the consumers'
	// (8081-8083) nor gRPC's (9090).
	if cfg.HTTPAddr != ":8084" {
		t.Fatalf("HTTP_ADDR default %q", cfg.HTTPAddr)
	}
}

func TestConfigFromEnvReadsEverything(t *testing.T) {
	cfg, err := ingress.ConfigFromEnv(config.Map(map[string]string{
		"INGRESS_ADDR":          "0.0.0.0:9000",
		"NATS_URL":              "nats://nats:4222",
		"STRIPE_WEBHOOK_SECRET": " whsec_one , whsec_two ,",
		"STRIPE_LIVEMODE":       "test",
		"WEBHOOK_MAX_BODY":      "2048",
		"WEBHOOK_TOLERANCE":     "1m",
		"PUBLISH_TIMEOUT":       "250ms",
		"WEBHOOK_MAX_INFLIGHT":  "8",
		"WEBHOOK_INFLIGHT_WAIT": "2s",
		"WEBHOOK_READ_TIMEOUT":  "3s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MaxInflight != 8 || cfg.InflightWait != 2*time.Second || cfg.ReadTimeout != 3*time.Second {
		t.Fatalf("in-flight settings: max %d wait %s read timeout %s", cfg.MaxInflight, cfg.InflightWait, cfg.ReadTimeout)
	}
	if len(cfg.Secrets) != 2 || cfg.Secrets[0].Reveal() != "whsec_one" || cfg.Secrets[1].Reveal() != "whsec_two" {
		t.Fatalf("secrets: %d", len(cfg.Secrets))
	}
	if cfg.Addr != "0.0.0.0:9000" || cfg.NATSURL.URL != "nats://nats:4222" || cfg.Livemode != "test" ||
		cfg.MaxBody != 2048 || cfg.Tolerance != time.Minute || cfg.PublishTimeout != 250*time.Millisecond {
		t.Fatalf("config: %+v", cfg)
	}
}

func TestConfigFromEnvReportsEveryProblem(t *testing.T) {
	_, err := ingress.ConfigFromEnv(config.Map(map[string]string{
		"STRIPE_LIVEMODE":       "prod",
		"WEBHOOK_MAX_BODY":      "-1",
		"WEBHOOK_TOLERANCE":     "soon",
		"PUBLISH_TIMEOUT":       "0s",
		"WEBHOOK_MAX_INFLIGHT":  "0",
		"WEBHOOK_INFLIGHT_WAIT": "-1s",
		"WEBHOOK_READ_TIMEOUT":  "0s",
		"WEBHOOK_SILENCE_ALERT": "10s",
	}))
	if err == nil {
		t.Fatal("want an error")
	}
	for _, want := range []string{"STRIPE_WEBHOOK_SECRET", "STRIPE_LIVEMODE", "WEBHOOK_MAX_BODY", "WEBHOOK_TOLERANCE", "PUBLISH_TIMEOUT",
		"WEBHOOK_MAX_INFLIGHT", "WEBHOOK_INFLIGHT_WAIT", "WEBHOOK_READ_TIMEOUT", "WEBHOOK_SILENCE_ALERT"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
}

func TestConfigLogsNoSecret(t *testing.T) {
	secret := newSecret(t)
	cfg, err := ingress.ConfigFromEnv(config.Map(map[string]string{
		"STRIPE_WEBHOOK_SECRET": secret,
		"NATS_URL":              "nats://user:hunter2hunter2@nats:4222",
	}))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("start", "config", cfg)
	if strings.Contains(buf.String(), secret) || strings.Contains(buf.String(), "hunter2hunter2") {
		t.Fatalf("log line carries a secret: %s", buf.String())
	}
	if !strings.Contains(buf.String(), secret[len(secret)-4:]) {
		t.Fatalf("log line should keep the masked tail to tell secrets apart: %s", buf.String())
	}
}
