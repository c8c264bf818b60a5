// Package send is `launchready send`: it signs Stripe event payloads the way
// Stripe does and posts them to ingress, so the whole path can be tried
// without a Stripe account. Payloads are sent byte for byte as read; only
// the signature is new, with the current time in it.
package send

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/services/launchready/internal/cli"
)

const usage = `usage: launchready send [--secret S] [--url U] [--dup N] FILE.json...

Signs each Stripe event payload and posts it to ingress, printing the answer.
The secret is --secret, else the first of STRIPE_WEBHOOK_SECRET, else the dev
secret that "launchready dev" keeps in <data>/dev-secrets.json. The URL is
--url, else http://<INGRESS_ADDR>/webhooks/stripe (INGRESS_ADDR defaults to
127.0.0.1:8080). Exits 1 if any answer is not 2xx.

`

// Main runs the command; args follow the word "send".
func Main(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) int {
	fs := cli.FlagSet("send", usage, stderr)
	secretFlag := fs.String("secret", "", "webhook signing secret")
	urlFlag := fs.String("url", "", "webhook URL")
	dup := fs.Int("dup", 1, "post each file this many times (re-signed each time) to see duplicates answered as such")
	dataDir := fs.String("data", ".data", "the dev data directory holding dev-secrets.json")
	timeout := fs.Duration("timeout", 15*time.Second, "timeout per request")
	files, code, ok := cli.Parse(fs, args)
	if !ok {
		return code
	}
	if len(files) == 0 {
		fs.Usage()
		return 2
	}
	if *dup < 1 {
		fmt.Fprintln(stderr, "send: --dup must be at least 1")
		return 2
	}
	env := config.New(getenv)
	secret, err := pickSecret(*secretFlag, env, *dataDir)
	if err != nil {
		fmt.Fprintf(stderr, "send: %v\n", err)
		return 2
	}
	target := *urlFlag
	if target == "" {
		target = defaultURL(env.String("INGRESS_ADDR", "127.0.0.1:8080"))
	}

	client := &http.Client{Timeout: *timeout}
	failed := false
	for _, file := range files {
		payload, err := os.ReadFile(file) // #nosec G304 -- files the operator names on the command line
		if err != nil {
			fmt.Fprintf(stderr, "send: %v\n", err)
			failed = true
			continue
		}
		id, typ := describe(payload)
		for range *dup {
			code, body, _, err := Post(ctx, client, target, payload, secret, time.Now())
			if err != nil {
				fmt.Fprintf(stderr, "send %s: %v\n", file, err)
				failed = true
				continue
			}
			fmt.Fprintf(stdout, "%s %s %s: %d %s\n", file, id, typ, code, strings.TrimSpace(string(body)))
			if code < 200 || code > 299 {
				failed = true
			}
		}
	}
	if failed {
		return 1
	}
	return 0
}

func pickSecret(flagValue string, env *config.Env, dataDir string) (string, error) {
	if flagValue != "" {
		return flagValue, nil
	}
	if list := env.List("STRIPE_WEBHOOK_SECRET"); len(list) > 0 {
		return list[0], nil
	}
	path := filepath.Join(dataDir, "dev-secrets.json")
	b, err := os.ReadFile(path) // #nosec G304 -- the dev secrets file in the data directory launchready dev owns
	if err != nil {
		return "", fmt.Errorf("no secret: pass --secret, set STRIPE_WEBHOOK_SECRET, or run \"launchready dev\" first (%s: %v)", path, err)
	}
	var dev struct {
		WebhookSecret string `json:"webhook_secret"`
	}
	if err := json.Unmarshal(b, &dev); err != nil || dev.WebhookSecret == "" {
		return "", fmt.Errorf("no secret: %s has no webhook_secret", path)
	}
	return dev.WebhookSecret, nil
}

// defaultURL turns a listen address into the URL a local client uses: an
// empty or wildcard host becomes 127.0.0.1.
func defaultURL(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "http://" + addr + "/webhooks/stripe"
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/webhooks/stripe"
}

// describe reads the event id and type for the printed line; a payload that
// is not an event is still sent, to see how ingress refuses it.
func describe(payload []byte) (id, typ string) {
	var ev struct {
		ID   string `json:"id"`
		Type string `json:"type"`
	}
	_ = json.Unmarshal(payload, &ev)
	if ev.ID == "" {
		ev.ID = "-"
	}
	if ev.Type == "" {
		ev.Type = "-"
	}
	return ev.ID, ev.Type
}

// Post signs payload with secret at now, as Stripe does, and posts it to
// url with client. It returns the status, the first 64 KiB of the answer
// and its headers; it follows redirects only if client does.
func Post(ctx context.Context, client *http.Client, url string, payload []byte, secret string, now time.Time) (int, []byte, http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("post %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "launchready-send")
	req.Header.Set("Stripe-Signature", stripeevent.Sign(payload, secret, now))
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("post %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return resp.StatusCode, nil, resp.Header, fmt.Errorf("read answer from %s: %w", url, err)
	}
	return resp.StatusCode, body, resp.Header, nil
}
