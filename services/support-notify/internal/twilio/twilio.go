// Package twilio sends SMS alerts through Twilio's Messages API
// (POST /2010-04-01/Accounts/{AccountSid}/Messages.json), authenticated
// with the account SID and auth token. Twilio takes no idempotency key, so
// exactly-once rests on support-notify's own sent-alert records, as for
// Slack.
package twilio

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/vendorhttp"
)

// DefaultAPIBase is Twilio's API origin (TWILIO_API_BASE overrides it).
const DefaultAPIBase = "https://api.twilio.com"

// Config is TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_API_BASE,
// TWILIO_FROM and ALERT_SMS_TO.
type Config struct {
	APIBase    string
	AccountSID string
	AuthToken  config.Secret
	// From is the Twilio number (E.164) or messaging service SID (MG...).
	From string
	// To is the on-call number, E.164.
	To string
}

// Client sends to one number.
type Client struct {
	cfg    Config
	auth   string
	client *vendorhttp.Client
}

// New returns a client that calls through client.
func New(cfg Config, client *vendorhttp.Client) *Client {
	if cfg.APIBase == "" {
		cfg.APIBase = DefaultAPIBase
	}
	cfg.APIBase = strings.TrimRight(cfg.APIBase, "/")
	cred := cfg.AccountSID + ":" + cfg.AuthToken.Reveal()
	return &Client{cfg: cfg, auth: "Basic " + base64.StdEncoding.EncodeToString([]byte(cred)), client: client}
}

// Send creates one message. Twilio answers 201 once it has queued it; 429
// carries Retry-After, 4xx is permanent (a bad number, a bad credential).
func (c *Client) Send(ctx context.Context, body string) error {
	form := url.Values{"To": {c.cfg.To}, "Body": {body}}
	if strings.HasPrefix(c.cfg.From, "MG") {
		form.Set("MessagingServiceSid", c.cfg.From)
	} else {
		form.Set("From", c.cfg.From)
	}
	u := c.cfg.APIBase + "/2010-04-01/Accounts/" + url.PathEscape(c.cfg.AccountSID) + "/Messages.json"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return fmt.Errorf("twilio send sms: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", c.auth)
	_, err = c.client.Send(ctx, "send sms", req)
	return err
}
