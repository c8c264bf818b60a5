package supportnotify_test

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/redact"

	supportnotify "github.com/launchready/launchready/services/support-notify"
	"github.com/launchready/launchready/test/testkit/journey"
)

func TestConfigDefaults(t *testing.T) {
	cfg, err := supportnotify.ConfigFromEnv(config.Map(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.HTTPAddr != ":8083" || cfg.SupportProvider != "log" || cfg.AlertProvider != "log" || cfg.AlertSLO != 2*time.Minute {
		t.Fatalf("defaults: %+v", cfg)
	}
	if cfg.Tickets.Durable != "support-notify" || cfg.Alerts.Durable != "support-notify-alerts" {
		t.Fatalf("durables %q %q", cfg.Tickets.Durable, cfg.Alerts.Durable)
	}
	if cfg.Rules == nil {
		t.Fatal("default rules not loaded")
	}
	if cfg.AlertDigestWindow != time.Second || cfg.ZendeskRateLimit != 200 || cfg.ZendeskRateWindow != time.Minute {
		t.Fatalf("digest window %s, zendesk rate %d per %s", cfg.AlertDigestWindow, cfg.ZendeskRateLimit, cfg.ZendeskRateWindow)
	}
}

func TestConfigZendeskAndSlack(t *testing.T) {
	token := randomHex(t)
	hook := "https://hooks.slack.com/services/T0/B0/" + randomHex(t)
	cfg, err := supportnotify.ConfigFromEnv(config.Map(map[string]string{
		"SUPPORT_PROVIDER": "zendesk", "ZENDESK_SUBDOMAIN": "Acme", "ZENDESK_EMAIL": "ops@example.com", "ZENDESK_API_TOKEN": token,
		"ALERT_PROVIDER": "slack", "SLACK_WEBHOOK_URL": hook, "ALERT_SLO": "90s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Zendesk.BaseURL != "https://acme.zendesk.com" || cfg.AlertSLO != 90*time.Second {
		t.Fatalf("zendesk base %q slo %s", cfg.Zendesk.BaseURL, cfg.AlertSLO)
	}
	cfg, err = supportnotify.ConfigFromEnv(config.Map(map[string]string{
		"SUPPORT_PROVIDER": "zendesk", "ZENDESK_SUBDOMAIN": "acme", "ZENDESK_BASE_URL": "http://127.0.0.1:9999/",
		"ZENDESK_EMAIL": "ops@example.com", "ZENDESK_API_TOKEN": token,
	}))
	if err != nil || cfg.Zendesk.BaseURL != "http://127.0.0.1:9999/" {
		t.Fatalf("ZENDESK_BASE_URL should win: %q %v", cfg.Zendesk.BaseURL, err)
	}

	// The logged configuration carries no secret.
	var buf strings.Builder
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", cfg)
	cfg.SlackWebhookURL = config.Secret(hook)
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", cfg)
	if strings.Contains(buf.String(), token) || strings.Contains(buf.String(), hook[len(hook)-32:]) {
		t.Fatalf("secret in logged config: %s", buf.String())
	}
	if !strings.Contains(buf.String(), "hooks.slack.com/"+redact.Placeholder) {
		t.Fatalf("webhook host should stay visible: %s", buf.String())
	}
}

func TestConfigErrors(t *testing.T) {
	secretHook := "https://hooks.slack.com/services/" + randomHex(t) + " bad"
	cases := map[string]struct {
		env  map[string]string
		want []string
	}{
		"zendesk without credentials": {map[string]string{"SUPPORT_PROVIDER": "zendesk"},
			[]string{"ZENDESK_SUBDOMAIN", "ZENDESK_EMAIL is required", "ZENDESK_API_TOKEN is required"}},
		"bad subdomain": {map[string]string{"SUPPORT_PROVIDER": "zendesk", "ZENDESK_SUBDOMAIN": "acme.zendesk.com", "ZENDESK_EMAIL": "a@b.c", "ZENDESK_API_TOKEN": "x"},
			[]string{"is not a subdomain"}},
		"slack without webhook":  {map[string]string{"ALERT_PROVIDER": "slack"}, []string{"SLACK_WEBHOOK_URL is required"}},
		"bad webhook":            {map[string]string{"ALERT_PROVIDER": "slack", "SLACK_WEBHOOK_URL": "://" + secretHook}, []string{"SLACK_WEBHOOK_URL: not an http(s) URL"}},
		"unknown provider":       {map[string]string{"SUPPORT_PROVIDER": "freshdesk", "ALERT_PROVIDER": "pagerduty"}, []string{"SUPPORT_PROVIDER", "ALERT_PROVIDER"}},
		"bad slo":                {map[string]string{"ALERT_SLO": "-1m"}, []string{"ALERT_SLO"}},
		"missing rules file":     {map[string]string{"SUPPORT_RULES_FILE": "/nonexistent/rules.yaml"}, []string{"SUPPORT_RULES_FILE"}},
		"digest window past slo": {map[string]string{"ALERT_SLO": "30s", "ALERT_DIGEST_WINDOW": "30s"}, []string{"ALERT_DIGEST_WINDOW"}},
		"bad link wait":          {map[string]string{"SUPPORT_LINK_WAIT": "-1s"}, []string{"SUPPORT_LINK_WAIT"}},
		"email without sender":   {map[string]string{"SMTP_HOST": "smtp.example.com", "ALERT_EMAIL_TO": "ops@example.com, not an address"}, []string{"ALERT_EMAIL_FROM", `ALERT_EMAIL_TO: "not an address"`}},
		"email to without host":  {map[string]string{"ALERT_EMAIL_TO": "ops@example.com"}, []string{"SMTP_HOST is not"}},
		"sms without twilio":     {map[string]string{"ALERT_SMS_TO": "+15005550001"}, []string{"TWILIO_ACCOUNT_SID", "TWILIO_FROM"}},
		"sms window past slo":    {map[string]string{"ALERT_SMS_TO": "+15005550001", "TWILIO_ACCOUNT_SID": "AC1", "TWILIO_AUTH_TOKEN": "x", "TWILIO_FROM": "+15005550006", "ALERT_SMS_DIGEST_WINDOW": "5m"}, []string{"ALERT_SMS_DIGEST_WINDOW"}},
		"bad zendesk rate":       {map[string]string{"ZENDESK_RATE_LIMIT": "0", "ZENDESK_RATE_WINDOW": "0s"}, []string{"ZENDESK_RATE_LIMIT", "ZENDESK_RATE_WINDOW"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := supportnotify.ConfigFromEnv(config.Map(c.env))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if strings.Contains(err.Error(), secretHook) {
				t.Errorf("error echoes the webhook URL: %v", err)
			}
		})
	}
}

func TestConfigEmailAndSMS(t *testing.T) {
	password, token := randomHex(t), randomHex(t)
	cfg, err := supportnotify.ConfigFromEnv(config.Map(map[string]string{
		"SMTP_HOST": "smtp.example.com", "SMTP_USERNAME": "alerts", "SMTP_PASSWORD": password,
		"ALERT_EMAIL_FROM": "Launch Ready <alerts@example.com>", "ALERT_EMAIL_TO": "ops@example.com,oncall@example.com",
		"TWILIO_ACCOUNT_SID": "AC" + randomHex(t), "TWILIO_AUTH_TOKEN": token, "TWILIO_FROM": "+15005550006", "ALERT_SMS_TO": "+15005550001",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SMTP.Port != 587 || len(cfg.EmailTo) != 2 || cfg.Twilio.APIBase != "https://api.twilio.com" {
		t.Fatalf("smtp port %d, to %v, twilio base %q", cfg.SMTP.Port, cfg.EmailTo, cfg.Twilio.APIBase)
	}
	if cfg.EmailDigestWindow != supportnotify.DefaultEmailDigestWindow || cfg.SMSDigestWindow != supportnotify.DefaultSMSDigestWindow {
		t.Fatalf("windows %s %s", cfg.EmailDigestWindow, cfg.SMSDigestWindow)
	}
	var buf strings.Builder
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("config", "config", cfg)
	if strings.Contains(buf.String(), password) || strings.Contains(buf.String(), token) {
		t.Fatalf("secret in logged config: %s", buf.String())
	}
}

// A rules file is validated at start: a typo is a configuration error,
// not a silently dropped notification.
func TestConfigValidatesRulesFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("rules.json", `{"rules":[{"event":"customer.subscription.trial_will_end","actions":["alert"]}]}`)
	cfg, err := supportnotify.ConfigFromEnv(config.Map(map[string]string{"SUPPORT_RULES_FILE": good}))
	if err != nil {
		t.Fatal(err)
	}
	if d := cfg.Rules.Decide(journey.NewCustomer().SubscriptionDeleted("payment_failed", "", time.Now())); !d.None() {
		t.Fatalf("the file replaces the defaults; got %+v", d)
	}
	bad := write("rules.yaml", "rules:\n  - event: invoice.payment_failed\n    actions: [ticket, page]\n  - event: invoice.payment_faild\n    actions: [alert]\n")
	_, err = supportnotify.ConfigFromEnv(config.Map(map[string]string{"SUPPORT_RULES_FILE": bad}))
	if err == nil || !strings.Contains(err.Error(), `unknown action "page"`) || !strings.Contains(err.Error(), "invoice.payment_faild") {
		t.Fatalf("want both rule errors, got %v", err)
	}
	example, err := filepath.Abs("rules.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := supportnotify.ConfigFromEnv(config.Map(map[string]string{"SUPPORT_RULES_FILE": example})); err != nil {
		t.Fatalf("the documented example must load: %v", err)
	}
}

// The dev default (log providers) needs no vendor and still records
// tickets and alerts, so `launchready dev` shows the whole flow.
func TestLogProvidersRecordTicketsAndAlerts(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]string{"SUPPORT_PROVIDER": "log", "ALERT_PROVIDER": "log"}, nil)
	ev := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, time.Now())
	b.publish(t, ev)
	b.drained(t)
	var outcome string
	var alerts int
	err := b.pool.QueryRow(context.Background(), `SELECT p.outcome, (SELECT count(*) FROM support.alerts_sent a WHERE a.event_id = p.event_id)
		FROM support.processed_events p WHERE p.event_id = $1 AND p.consumer = 'support-notify'`, ev.GetEventId()).Scan(&outcome, &alerts)
	if err != nil {
		t.Fatal(err)
	}
	if outcome != "created" || alerts != 1 {
		t.Fatalf("log providers: outcome %q, alerts %d", outcome, alerts)
	}
	if posts, _, _ := b.zendesk.Counts(); posts != 0 || b.slack.CallCount() != 0 {
		t.Fatalf("log providers called a vendor: %d %d", posts, b.slack.CallCount())
	}
}
