package e2e

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/testkit/fakes"
)

// TestSmokeViaWebhookConfirmsEveryChannel runs `launchready smoke --via
// webhook` (the built command) against the stack with fake Slack, SMTP
// (go-smtp, STARTTLS with a generated CA, AUTH), Twilio, Zendesk and
// HubSpot: every channel confirms, each message is marked as a test, the
// ticket ends solved and the CRM records deleted, and support-notify
// exports lr_smoke_last_success_timestamp_seconds for every channel. Then
// Twilio refuses every call, and a second run names sms and exits 1.
func TestSmokeViaWebhookConfirmsEveryChannel(t *testing.T) {
	bin := harness.Launchready(t)
	mailSrv, err := fakes.NewSMTP()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mailSrv.Close)
	tw := fakes.NewTwilio()
	t.Cleanup(tw.Close)
	caFile := filepath.Join(t.TempDir(), "smtp-ca.pem")
	if err := os.WriteFile(caFile, mailSrv.CAPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	channels := map[string]string{
		"SMTP_HOST": mailSrv.Host(), "SMTP_PORT": strconv.Itoa(mailSrv.Port()), "SMTP_USERNAME": mailSrv.Username,
		"SMTP_PASSWORD": mailSrv.Password, "SMTP_CA_FILE": caFile,
		"ALERT_EMAIL_FROM": "alerts@example.com", "ALERT_EMAIL_TO": "ops@example.com",
		"TWILIO_ACCOUNT_SID": tw.AccountSID, "TWILIO_AUTH_TOKEN": tw.AuthToken, "TWILIO_API_BASE": tw.URL(),
		"TWILIO_FROM": "+15005550006", "ALERT_SMS_TO": "+15005550001",
		"ALERT_EMAIL_DIGEST_WINDOW": "1s", "ALERT_SMS_DIGEST_WINDOW": "1s",
	}
	s := harness.StartStack(t, harness.StackOptions{LogLevel: "warn", ServiceEnv: map[string]map[string]string{"support-notify": channels}})

	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"),
		"DATABASE_URL=" + s.DatabaseURL, "PUBLIC_WEBHOOK_URL=" + s.WebhookURL, "STRIPE_WEBHOOK_SECRET=" + s.Secret,
		"ALERT_PROVIDER=slack", "SUPPORT_PROVIDER=zendesk", "CRM_PROVIDER=hubspot",
		"HUBSPOT_TOKEN=" + s.HubSpotToken, "HUBSPOT_BASE_URL=" + s.HubSpot.URL()}
	for _, k := range []string{"SMTP_HOST", "ALERT_EMAIL_TO", "ALERT_SMS_TO"} {
		env = append(env, k+"="+channels[k])
	}

	code, out, errs := runSmoke(t, bin, env, "--via", "webhook", "--timeout", "90s")
	if code != 0 {
		t.Fatalf("smoke: exit %d\n%s%s", code, out, errs)
	}
	for _, ch := range []string{"slack", "email", "sms", "ticket", "crm"} {
		if !strings.Contains(out, "  "+ch+" ") || !lineHas(out, ch, " ok ") {
			t.Errorf("smoke output does not confirm %s:\n%s", ch, out)
		}
	}
	if !lineHas(out, "ticket", "solved") || !lineHas(out, "crm", "record(s) deleted") {
		t.Errorf("ticket not solved or CRM not cleaned up:\n%s", out)
	}
	t.Logf("smoke:\n%s", out)

	// Every message says it is a test.
	if ms := s.Slack.Messages(); len(ms) != 1 || !strings.HasPrefix(ms[0].Text, "[TEST] ") {
		t.Errorf("slack: %+v", ms)
	}
	if ms := mailSrv.Mails(); len(ms) != 1 || !strings.HasPrefix(ms[0].Subject, "[TEST] ") || !ms[0].TLS || !ms[0].Authenticated {
		t.Errorf("e-mail: %+v", ms)
	}
	if ms := tw.Messages(); len(ms) != 1 || !strings.HasPrefix(ms[0].Body, "[TEST] ") {
		t.Errorf("sms: %+v", ms)
	}
	tickets := s.Zendesk.Tickets()
	if len(tickets) != 1 || tickets[0].Status != "solved" || !strings.Contains(tickets[0].Subject, "[TEST]") {
		t.Errorf("zendesk: %+v", tickets)
	}
	if live := s.HubSpot.Contacts(); len(live) != 0 {
		t.Errorf("hubspot still holds %d live contacts after the smoke run", len(live))
	}
	var oks int
	if err := s.DB.QueryRow(context.Background(), `SELECT count(*) FROM readiness.smoke_results WHERE ok`).Scan(&oks); err != nil || oks != 5 {
		t.Fatalf("readiness.smoke_results: %d ok rows (%v), want 5", oks, err)
	}
	for _, ch := range []string{"slack", "email", "sms", "ticket", "crm"} {
		v, err := s.MetricValue("support-notify", `lr_smoke_last_success_timestamp_seconds{channel="`+ch+`"}`)
		if err != nil || v < float64(time.Now().Add(-5*time.Minute).Unix()) {
			t.Errorf("lr_smoke_last_success_timestamp_seconds{channel=%q} = %v (%v)", ch, v, err)
		}
	}

	// A broken channel is named and fails the run.
	tw.AddRule(&fakes.Rule{Match: func(string, string, []byte) bool { return true }, Status: 401})
	code, out, errs = runSmoke(t, bin, env, "--via", "webhook", "--timeout", "10s")
	if code != 1 || !strings.Contains(errs, "not confirmed: sms") || !lineHas(out, "sms", "FAILED") {
		t.Fatalf("smoke with Twilio refusing: exit %d\n%s%s", code, out, errs)
	}
	for _, ch := range []string{"slack", "email", "ticket", "crm"} {
		if !lineHas(out, ch, " ok ") {
			t.Errorf("second run: %s should still confirm:\n%s", ch, out)
		}
	}
	var failed int
	if err := s.DB.QueryRow(context.Background(), `SELECT count(*) FROM readiness.smoke_results WHERE NOT ok AND channel = 'sms'`).Scan(&failed); err != nil || failed != 1 {
		t.Fatalf("the failed sms run is not recorded: %d (%v)", failed, err)
	}
}

func runSmoke(t *testing.T, bin string, env []string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"smoke"}, args...)...) // #nosec G204 -- the command this repository builds
	cmd.Env = env
	var out, errs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errs
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil && cmd.ProcessState == nil {
		t.Fatalf("launchready smoke: %v", err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errs.String()
}

// lineHas reports whether the output line about channel contains s.
func lineHas(out, channel, s string) bool {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "  "+channel+" ") && strings.Contains(l, s) {
			return true
		}
	}
	return false
}
