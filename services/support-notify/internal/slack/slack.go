// Package slack posts ops alerts to a Slack incoming webhook
// (https://api.slack.com/messaging/webhooks). The webhook URL is the
// credential, so it is kept as a config.Secret and never logged.
package slack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/vendorhttp"

	"github.com/launchready/launchready/services/support-notify/internal/render"
)

// Client posts to one webhook.
type Client struct {
	url    config.Secret
	client *vendorhttp.Client
}

// New returns a client for webhookURL that calls through client.
func New(webhookURL config.Secret, client *vendorhttp.Client) *Client {
	return &Client{url: webhookURL, client: client}
}

// Send posts msg. Slack answers 200 "ok" once it has accepted the message;
// anything else is classified by the client (429 carries Retry-After).
func (c *Client) Send(ctx context.Context, msg render.SlackMessage) error {
	b, err := json.Marshal(msg)
	if err != nil {
		return fmt.Errorf("slack post alert: encode: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url.Reveal(), bytes.NewReader(b))
	if err != nil {
		// The parse error would quote the URL, which is the secret.
		return fmt.Errorf("slack post alert: invalid SLACK_WEBHOOK_URL")
	}
	req.Header.Set("Content-Type", "application/json")
	_, err = c.client.Send(ctx, "post alert", req)
	return err
}
