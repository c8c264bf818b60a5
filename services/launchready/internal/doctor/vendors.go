package doctor

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/launchready/launchready/pkg/redact"
	crmsync "github.com/launchready/launchready/services/crm-sync"
	supportnotify "github.com/launchready/launchready/services/support-notify"
)

// vendorRead makes one authenticated GET and grades the answer: 2xx
// passes, 401/403 fails as bad credentials, anything else fails as
// unreachable. The credential never appears in the detail.
func (d *Doctor) vendorRead(ctx context.Context, name, what, rawURL string, auth func(*http.Request), fix string) Check {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return fail(name, fmt.Sprintf("bad URL: %v", err), fix)
	}
	auth(req)
	req.Header.Set("Accept", "application/json")
	resp, err := d.HTTP.Do(req)
	if err != nil {
		return fail(name, fmt.Sprintf("GET %s: %s", redact.RequestURL(rawURL), oneLine(err.Error())), "check the base URL and the egress firewall")
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return fail(name, fmt.Sprintf("%s refused the credentials (%d): %s", what, resp.StatusCode, clip(oneLine(string(body)), 160)), fix)
	case resp.StatusCode < 200 || resp.StatusCode >= 300:
		return fail(name, fmt.Sprintf("%s answered %d to GET %s: %s", what, resp.StatusCode, redact.RequestURL(rawURL), clip(oneLine(string(body)), 160)), "check the base URL")
	}
	return pass(name, fmt.Sprintf("%s accepts the credentials (GET %s)", what, redact.RequestURL(rawURL)))
}

// checkVendors makes one cheap authenticated read per configured vendor,
// with the settings the services themselves read.
func (d *Doctor) checkVendors(ctx context.Context) ([]Check, error) {
	var out []Check
	if crm, err := crmsync.ConfigFromEnv(d.getenv); err == nil && crm.Provider == crmsync.ProviderHubSpot {
		base := strings.TrimRight(crm.HubSpot.BaseURL, "/")
		if base == "" {
			base = "https://api.hubapi.com"
		}
		tok := crm.HubSpot.Token.Reveal()
		out = append(out, d.vendorRead(ctx, "vendor/hubspot", "HubSpot", base+"/crm/v3/objects/contacts?limit=1",
			func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) },
			"make a private-app token with crm.objects.contacts read and write scopes and set HUBSPOT_TOKEN"))
	}
	sn, snErr := supportnotify.ConfigFromEnv(d.getenv)
	if snErr == nil && sn.SupportProvider == "zendesk" {
		email, tok := sn.Zendesk.Email, sn.Zendesk.APIToken.Reveal()
		out = append(out, d.vendorRead(ctx, "vendor/zendesk", "Zendesk", strings.TrimRight(sn.Zendesk.BaseURL, "/")+"/api/v2/users/me.json",
			func(r *http.Request) { r.SetBasicAuth(email+"/token", tok) },
			"check ZENDESK_EMAIL and ZENDESK_API_TOKEN (Admin Center → Apps and integrations → Zendesk API)"))
	}
	if sid := d.env.Lookup("TWILIO_ACCOUNT_SID"); sid != "" {
		base := strings.TrimRight(d.env.String("TWILIO_API_BASE", "https://api.twilio.com"), "/")
		tok := d.env.Lookup("TWILIO_AUTH_TOKEN")
		out = append(out, d.vendorRead(ctx, "vendor/twilio", "Twilio", base+"/2010-04-01/Accounts/"+url.PathEscape(sid)+".json",
			func(r *http.Request) { r.SetBasicAuth(sid, tok) },
			"check TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (Twilio console → Account info)"))
	}
	if snErr == nil && sn.AlertProvider == "slack" {
		if d.Send {
			out = append(out, d.slackTest(ctx, sn.SlackWebhookURL.Reveal()))
		} else {
			out = append(out, warn("vendor/slack", "not checked: a Slack webhook can only be tested by posting to it",
				"run `launchready doctor --send` to post one test message"))
		}
	}
	if len(out) == 0 {
		return nil, skip("no vendor configured (CRM_PROVIDER, SUPPORT_PROVIDER, ALERT_PROVIDER are log; no TWILIO_ACCOUNT_SID)")
	}
	return out, nil
}

func (d *Doctor) slackTest(ctx context.Context, hook string) Check {
	const name = "vendor/slack"
	body, _ := json.Marshal(map[string]string{"text": ":white_check_mark: [TEST] launchready doctor: this channel receives Launch Ready's alerts. Nothing to do."})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook, bytes.NewReader(body))
	if err != nil {
		return fail(name, "SLACK_WEBHOOK_URL is not a URL", "paste the incoming webhook URL from Slack")
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.HTTP.Do(req)
	if err != nil {
		return fail(name, "POST to the Slack webhook: "+oneLine(redact.Error(err, hook)), "check the egress firewall")
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	if resp.StatusCode != http.StatusOK {
		return fail(name, fmt.Sprintf("Slack answered %d: %s", resp.StatusCode, clip(oneLine(string(answer)), 120)),
			"the webhook was revoked or its channel archived: make a new incoming webhook and set SLACK_WEBHOOK_URL")
	}
	return pass(name, "a test message was posted to the alert channel")
}
