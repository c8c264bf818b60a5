// Package smoke is `launchready smoke`: the monthly proof that every
// configured channel still delivers. It sends a failed payment for a smoke
// customer (marked with the metadata key launchready_smoke: every message
// about it is headed [TEST], billing-state and crm-sync keep the mark on the
// customer, drift checks skip it, and in the CRM it is a contact marked
// launchready_test with no MRR and no deals) and waits
// until each channel confirms delivery: the Slack alert, the ops e-mail,
// the SMS, the Zendesk ticket and the CRM record. The ticket is then solved
// by a signed invoice.paid for the same invoice, through the same route, and
// the CRM record deleted.
//
// Confirmation is read from the services' own outcome records in Postgres,
// keyed by the smoke event's id: support.alerts_sent (one row per channel
// that accepted the alert), support.tickets (opened_by_event, then status
// solved) and crm.contacts (the CRM id crm-sync recorded for the smoke
// customer once the CRM accepted it). Each result is stored in
// readiness.smoke_results, from which support-notify exports
// lr_smoke_last_success_timestamp_seconds{channel}.
package smoke

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/services/launchready/internal/cli"
	"github.com/launchready/launchready/services/launchready/internal/readiness"
	"github.com/launchready/launchready/services/launchready/internal/send"
)

// Channels, in the order they are reported.
const (
	ChannelSlack  = "slack"
	ChannelEmail  = "email"
	ChannelSMS    = "sms"
	ChannelTicket = "ticket"
	ChannelCRM    = "crm"
)

// Via names how the failed payment is made.
const (
	ViaWebhook = "webhook"
	ViaStripe  = "stripe"
)

// DefaultTimeout bounds the wait for every channel.
const DefaultTimeout = 5 * time.Minute

const usage = `usage: launchready smoke [--via webhook|stripe] [--timeout 5m]

Sends a failed payment for a smoke customer and waits until each configured
channel (Slack, e-mail, SMS, the support ticket, the CRM record) confirms
delivery; then solves the ticket and deletes the CRM record. Prints each
channel's latency and exits 1 naming every channel that did not confirm.

  --via webhook  a signed synthetic event through PUBLIC_WEBHOOK_URL
  --via stripe   a real failed payment in Stripe's test mode (STRIPE_API_KEY sk_test_...,
                 STRIPE_API_BASE), delivered by Stripe to the endpoint

`

// Result is one channel's outcome.
type Result struct {
	Channel string
	OK      bool
	Latency time.Duration
	Detail  string
}

// Main runs the command.
func Main(ctx context.Context, args []string, getenv config.Getenv, stdout, stderr io.Writer) int {
	fs := cli.FlagSet("smoke", usage, stderr)
	via := fs.String("via", ViaWebhook, "webhook or stripe")
	timeout := fs.Duration("timeout", DefaultTimeout, "how long to wait for every channel")
	if _, code, ok := cli.Parse(fs, args); !ok {
		return code
	}
	if *via != ViaWebhook && *via != ViaStripe {
		fmt.Fprintf(stderr, "launchready smoke: --via must be webhook or stripe, got %q\n", *via)
		return 2
	}
	cfg, err := ConfigFromEnv(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "launchready smoke: %v\n", err)
		return 2
	}
	cfg.Via, cfg.Timeout = *via, *timeout
	results, err := Run(ctx, cfg, stdout)
	if err != nil {
		fmt.Fprintf(stderr, "launchready smoke: %v\n", err)
		return 1
	}
	var failed []string
	for _, r := range results {
		if !r.OK {
			failed = append(failed, r.Channel)
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(stderr, "launchready smoke: not confirmed: %s\n", strings.Join(failed, ", "))
		return 1
	}
	return 0
}

// Config is what a run needs.
type Config struct {
	Via     string
	Timeout time.Duration
	// DatabaseURL reads the services' outcome records and stores results.
	DatabaseURL string
	// PublicWebhookURL and WebhookSecret (the first of
	// STRIPE_WEBHOOK_SECRET) carry the --via webhook events.
	PublicWebhookURL string
	WebhookSecret    config.Secret
	Livemode         bool
	// Stripe is STRIPE_API_KEY and STRIPE_API_BASE, for --via stripe.
	StripeKey  config.Secret
	StripeBase string
	// Channels are the channels expected to confirm: SMOKE_CHANNELS, or
	// every channel the deployment's settings configure.
	Channels []string
	// CustomerEmail is SMOKE_CUSTOMER_EMAIL: the smoke customer's address
	// (default: the first ALERT_EMAIL_TO), so a customer e-mail reaches ops.
	CustomerEmail string
	// CRM cleanup: HUBSPOT_TOKEN and HUBSPOT_BASE_URL with
	// CRM_PROVIDER=hubspot.
	CRMProvider string
	HubSpotBase string
	HubSpotKey  config.Secret
	// Poll is how often the records are read (0: 250 ms).
	Poll time.Duration
	// HTTP is the client for webhooks and vendors (nil: 30 s timeout).
	HTTP *http.Client
}

// ConfigFromEnv reads DATABASE_URL, PUBLIC_WEBHOOK_URL,
// STRIPE_WEBHOOK_SECRET, STRIPE_LIVEMODE, STRIPE_API_KEY, STRIPE_API_BASE,
// SMOKE_CHANNELS, SMOKE_CUSTOMER_EMAIL, and the channels' own settings
// (ALERT_PROVIDER, SMTP_HOST, ALERT_EMAIL_TO, ALERT_SMS_TO,
// SUPPORT_PROVIDER, CRM_PROVIDER, HUBSPOT_TOKEN, HUBSPOT_BASE_URL).
func ConfigFromEnv(getenv config.Getenv) (Config, error) {
	e := config.New(getenv)
	secrets := e.List("STRIPE_WEBHOOK_SECRET")
	cfg := Config{
		DatabaseURL:      e.String("DATABASE_URL", pg.DefaultURL),
		PublicWebhookURL: e.String("PUBLIC_WEBHOOK_URL", ""),
		Livemode:         e.String("STRIPE_LIVEMODE", "test") == "live",
		StripeKey:        e.Secret("STRIPE_API_KEY"),
		StripeBase:       strings.TrimRight(e.String("STRIPE_API_BASE", "https://api.stripe.com"), "/"),
		CustomerEmail:    e.String("SMOKE_CUSTOMER_EMAIL", ""),
		CRMProvider:      e.String("CRM_PROVIDER", "log"),
		HubSpotBase:      strings.TrimRight(e.String("HUBSPOT_BASE_URL", "https://api.hubapi.com"), "/"),
		HubSpotKey:       e.Secret("HUBSPOT_TOKEN"),
	}
	if len(secrets) > 0 {
		cfg.WebhookSecret = config.Secret(secrets[0])
	}
	if to := e.List("ALERT_EMAIL_TO"); cfg.CustomerEmail == "" && len(to) > 0 {
		cfg.CustomerEmail = to[0]
	}
	if cfg.CustomerEmail == "" {
		cfg.CustomerEmail = "smoke@launchready.invalid"
	}
	cfg.Channels = e.List("SMOKE_CHANNELS")
	if len(cfg.Channels) == 0 {
		if e.String("ALERT_PROVIDER", "log") == "slack" {
			cfg.Channels = append(cfg.Channels, ChannelSlack)
		}
		if e.String("SMTP_HOST", "") != "" && len(e.List("ALERT_EMAIL_TO")) > 0 {
			cfg.Channels = append(cfg.Channels, ChannelEmail)
		}
		if e.String("ALERT_SMS_TO", "") != "" {
			cfg.Channels = append(cfg.Channels, ChannelSMS)
		}
		if e.String("SUPPORT_PROVIDER", "log") == "zendesk" {
			cfg.Channels = append(cfg.Channels, ChannelTicket)
		}
		if cfg.CRMProvider != "log" {
			cfg.Channels = append(cfg.Channels, ChannelCRM)
		}
	}
	known := []string{ChannelSlack, ChannelEmail, ChannelSMS, ChannelTicket, ChannelCRM}
	for _, c := range cfg.Channels {
		if !slices.Contains(known, c) {
			e.Fail("SMOKE_CHANNELS: unknown channel %q (known: %s)", c, strings.Join(known, ", "))
		}
	}
	if len(cfg.Channels) == 0 {
		e.Fail("no channel configured: set ALERT_PROVIDER=slack, SMTP_HOST with ALERT_EMAIL_TO, ALERT_SMS_TO, SUPPORT_PROVIDER=zendesk or CRM_PROVIDER (or SMOKE_CHANNELS)")
	}
	if err := e.Err(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// Run makes the failed payment, waits for every channel, cleans up, stores
// and prints the results.
func Run(ctx context.Context, cfg Config, stdout io.Writer) ([]Result, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 250 * time.Millisecond
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Client{Timeout: 30 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	pool, err := pg.Open(ctx, cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	defer pool.Close()
	if err := readiness.EnsureSchema(ctx, pool); err != nil {
		return nil, err
	}
	runID := newRunID()
	fmt.Fprintf(stdout, "smoke run %s via %s: waiting for %s\n", runID, cfg.Via, strings.Join(cfg.Channels, ", "))

	var p *Payment
	switch cfg.Via {
	case ViaStripe:
		p, err = failViaStripe(ctx, cfg, runID)
	default:
		p, err = failViaWebhook(ctx, cfg, runID)
	}
	if err != nil {
		return nil, err
	}
	results := waitForChannels(ctx, cfg, pool, p)
	cleanup(ctx, cfg, pool, p, results)
	finished := time.Now()
	for _, r := range results {
		status := "ok"
		if !r.OK {
			status = "FAILED"
		}
		fmt.Fprintf(stdout, "  %-7s %-6s %8s  %s\n", r.Channel, status, r.Latency.Round(time.Millisecond), r.Detail)
	}
	rows := make([]readiness.SmokeResult, len(results))
	for i, r := range results {
		rows[i] = readiness.SmokeResult(r)
	}
	if err := readiness.RecordSmoke(ctx, pool, runID, rows, finished); err != nil {
		return results, err
	}
	return results, nil
}

// Payment is the smoke failure as the channels see it.
type Payment struct {
	RunID      string
	EventID    string
	CustomerID string
	InvoiceID  string
	SentAt     time.Time
	// resolve sends the success that solves the ticket.
	resolve func(ctx context.Context) error
}

func newRunID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// failViaWebhook posts a signed invoice.payment_failed for a smoke
// customer to PUBLIC_WEBHOOK_URL, and later an invoice.paid for the same
// invoice.
func failViaWebhook(ctx context.Context, cfg Config, runID string) (*Payment, error) {
	if cfg.PublicWebhookURL == "" || cfg.WebhookSecret == "" {
		return nil, errors.New("--via webhook needs PUBLIC_WEBHOOK_URL and STRIPE_WEBHOOK_SECRET")
	}
	p := &Payment{RunID: runID, EventID: "evt_lrsmoke" + runID, CustomerID: "cus_lrsmoke" + runID, InvoiceID: "in_lrsmoke" + runID}
	now := time.Now()
	body, err := invoiceEvent(p, p.EventID, "invoice.payment_failed", "open", cfg.Livemode, cfg.CustomerEmail, now)
	if err != nil {
		return nil, err
	}
	if err := post(ctx, cfg, body); err != nil {
		return nil, err
	}
	p.SentAt = now
	p.resolve = func(ctx context.Context) error {
		body, err := invoiceEvent(p, "evt_lrsmokepaid"+runID, "invoice.paid", "paid", cfg.Livemode, cfg.CustomerEmail, time.Now().Add(time.Second))
		if err != nil {
			return err
		}
		return post(ctx, cfg, body)
	}
	return p, nil
}

func post(ctx context.Context, cfg Config, body []byte) error {
	code, answer, _, err := send.Post(ctx, cfg.HTTP, cfg.PublicWebhookURL, body, cfg.WebhookSecret.Reveal(), time.Now())
	if err != nil {
		return fmt.Errorf("post to PUBLIC_WEBHOOK_URL: %w", err)
	}
	if code < 200 || code >= 300 {
		return fmt.Errorf("PUBLIC_WEBHOOK_URL answered %d: %.200s", code, answer)
	}
	return nil
}

// invoiceEvent is a Stripe invoice event (API version 2023-10-16) about the
// smoke customer's invoice, marked with the run id on the invoice and the
// subscription metadata Stripe copies onto it.
func invoiceEvent(p *Payment, eventID, typ, status string, livemode bool, email string, at time.Time) ([]byte, error) {
	marker := map[string]string{stripeevent.SmokeMetadataKey: p.RunID}
	paid := status == "paid"
	inv := map[string]any{
		"id": p.InvoiceID, "object": "invoice", "customer": p.CustomerID, "customer_email": email,
		"customer_name": "Launch Ready smoke test", "subscription": "sub_lrsmoke" + p.RunID,
		"status": status, "paid": paid, "amount_due": 100, "amount_paid": map[bool]int{true: 100}[paid], "currency": "usd",
		"attempt_count": 1, "billing_reason": "subscription_cycle", "livemode": livemode, "created": p.SentAt.Unix(),
		"metadata": marker, "subscription_details": map[string]any{"metadata": marker},
		"description": "[TEST] launchready smoke " + p.RunID,
	}
	if !paid {
		inv["last_finalization_error"] = nil
		inv["next_payment_attempt"] = nil
	}
	return json.Marshal(map[string]any{
		"id": eventID, "object": "event", "type": typ, "api_version": "2023-10-16",
		"created": at.Unix(), "livemode": livemode, "pending_webhooks": 1,
		"data": map[string]any{"object": inv},
	})
}

// waitForChannels polls each channel's outcome record until it confirms or
// the timeout passes.
func waitForChannels(ctx context.Context, cfg Config, pool *pgxpool.Pool, p *Payment) []Result {
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	pending := map[string]bool{}
	for _, c := range cfg.Channels {
		pending[c] = true
	}
	got := map[string]Result{}
	tick := time.NewTicker(cfg.Poll)
	defer tick.Stop()
	for len(pending) > 0 {
		for c := range pending {
			ok, detail, err := confirmed(ctx, pool, c, p)
			if err != nil {
				// A read the timeout cut short says nothing about the
				// channel: it is reported as unconfirmed below.
				if ctx.Err() == nil {
					got[c] = Result{Channel: c, Detail: "reading its record: " + err.Error()}
				}
				continue
			}
			if ok {
				got[c] = Result{Channel: c, OK: true, Latency: time.Since(p.SentAt), Detail: detail}
				delete(pending, c)
			}
		}
		if len(pending) == 0 {
			break
		}
		select {
		case <-ctx.Done():
			for c := range pending {
				r := got[c]
				r.Channel = c
				if r.Detail == "" {
					r.Detail = fmt.Sprintf("no confirmation within %s", cfg.Timeout)
				}
				r.Latency = time.Since(p.SentAt)
				got[c] = r
			}
			pending = nil
		case <-tick.C:
		}
	}
	out := make([]Result, 0, len(cfg.Channels))
	for _, c := range cfg.Channels {
		out = append(out, got[c])
	}
	return out
}

// confirmed reads one channel's outcome record for the smoke event.
func confirmed(ctx context.Context, pool *pgxpool.Pool, channel string, p *Payment) (bool, string, error) {
	// --via webhook knows its event id; --via stripe knows only its
	// customer, new to this run, and the type Stripe sends.
	var q string
	args := []any{p.EventID, p.CustomerID}
	switch channel {
	case ChannelSlack, ChannelEmail, ChannelSMS:
		q = `SELECT 'accepted at ' || to_char(sent_at AT TIME ZONE 'UTC', 'HH24:MI:SS.MS') FROM support.alerts_sent
			WHERE channel = $3 AND (event_id = $1 OR ($1 = '' AND customer_id = $2 AND event_type = 'invoice.payment_failed')) LIMIT 1`
		args = append(args, channel)
	case ChannelTicket:
		q = `SELECT 'ticket ' || ticket_id FROM support.tickets WHERE opened_by_event = $1 OR ($1 = '' AND customer_id = $2) LIMIT 1`
	case ChannelCRM:
		q = `SELECT provider || ' record ' || crm_id FROM crm.contacts WHERE customer_id = $1 AND crm_id <> '' LIMIT 1`
		args = []any{p.CustomerID}
	default:
		return false, "", fmt.Errorf("unknown channel %q", channel)
	}
	var detail string
	err := pool.QueryRow(ctx, q, args...).Scan(&detail)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return false, "", nil
	case err != nil && isUndefinedTable(err):
		// The service that writes it has not started yet.
		return false, "", nil
	case err != nil:
		return false, "", err
	}
	return true, detail, nil
}

func isUndefinedTable(err error) bool {
	return err != nil && (strings.Contains(err.Error(), "SQLSTATE 42P01") || strings.Contains(err.Error(), "SQLSTATE 3F000"))
}
