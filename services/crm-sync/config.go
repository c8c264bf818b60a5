package crmsync

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/redact"
	"github.com/launchready/launchready/pkg/telemetry"
	"github.com/launchready/launchready/services/crm-sync/internal/crm"
)

// Durable is the consumer name, in JetStream and in the DLQ subjects.
const Durable = "crm-sync"

// DefaultBatchSize is how many waiting events one handler call takes when
// CONSUMER_BATCH_SIZE is unset: a customer's waiting events fold into one
// document, and up to crm.MaxBatch customers share each vendor call, so a
// backlog of a few events per customer fills calls of 100.
const DefaultBatchSize = 500

// DefaultPartialBatches is how many handler calls may run at once with a
// batch that is not full (CONSUMER_PARTIAL_BATCHES): events that trickle
// in share the intent and outcome transactions instead of each paying
// them, and a backlog still fills every worker's batch.
const DefaultPartialBatches = 2

// Provider values of CRM_PROVIDER.
const (
	ProviderLog     = "log"
	ProviderHubSpot = "hubspot"
	ProviderWebhook = "webhook"
)

// Config is everything crm-sync needs.
type Config struct {
	DatabaseURL string
	// NATSURL is NATS_URL with the credentials and TLS settings that go
	// with it (bus.ConnConfigFromEnv): crm-sync connects as its own user.
	NATSURL   bus.ConnConfig
	HTTPAddr  string
	Streams   bus.StreamConfig
	Consumer  bus.ConsumerConfig
	Telemetry telemetry.Config
	Policy    canonical.Policy

	// Provider is CRM_PROVIDER: log (default), hubspot or webhook.
	Provider string
	HubSpot  HubSpotConfig
	Webhook  WebhookConfig
	// RateLimit requests per RateWindow, shared by every worker.
	RateLimit  int
	RateWindow time.Duration
	// Timeout bounds one CRM request.
	Timeout time.Duration

	// Logger, Ready and Registry are set by the caller, not the env.
	Logger   *slog.Logger
	Ready    func(addrs map[string]string)
	Registry *prometheus.Registry
	// StartTimeout bounds the wait for Postgres, NATS and the streams at
	// start (service.DefaultStartTimeout when zero).
	StartTimeout time.Duration
	// DrainTimeout bounds how long shutdown waits for deliveries in
	// flight (0: the bus default, 25 s); past it their context is cancelled
	// and the transaction rolls back, so the delivery is redone elsewhere.
	DrainTimeout time.Duration

	// afterPush, when set, runs between a successful CRM push and the
	// commit: tests stage a crash there.
	afterPush func(eventID string) error
}

// HubSpotConfig configures the HubSpot adapter.
type HubSpotConfig struct {
	Token   config.Secret
	BaseURL string
	// Pipeline and Stages choose where deals go (HUBSPOT_DEAL_PIPELINE,
	// HUBSPOT_DEAL_STAGES="active=closedwon,canceled=closedlost,...").
	Pipeline string
	Stages   map[string]string
}

// WebhookConfig configures the webhook adapter.
type WebhookConfig struct {
	URL    string
	Secret config.Secret
}

// WithLogger returns the configuration with its logs going to log.
func (c Config) WithLogger(log *slog.Logger) Config {
	c.Logger = log
	return c
}

// ConfigFromEnv reads the configuration. Every problem is reported at once.
func ConfigFromEnv(getenv config.Getenv) (Config, error) {
	e := config.New(getenv)
	cfg := Config{
		DatabaseURL: e.String("DATABASE_URL", pg.DefaultURL),
		NATSURL:     bus.ConnConfigFromEnv(e, Durable),
		HTTPAddr:    e.String("HTTP_ADDR", ":8082"),
		Streams:     bus.StreamConfigFromEnv(e),
		Consumer:    bus.ConsumerConfigFromEnv(e, Durable),
		Telemetry:   telemetry.ConfigFromEnv(e, "crm-sync"),
		Policy:      canonical.Policy{PastDueEntitled: e.Bool("PAST_DUE_ENTITLED", true)},
		Provider:    e.OneOf("CRM_PROVIDER", ProviderLog, ProviderLog, ProviderHubSpot, ProviderWebhook),
		HubSpot: HubSpotConfig{
			Token:    e.Secret("HUBSPOT_TOKEN"),
			BaseURL:  e.String("HUBSPOT_BASE_URL", crm.DefaultHubSpotBaseURL),
			Pipeline: e.String("HUBSPOT_DEAL_PIPELINE", "default"),
		},
		Webhook: WebhookConfig{
			URL:    e.String("CRM_WEBHOOK_URL", ""),
			Secret: e.Secret("CRM_WEBHOOK_SECRET"),
		},
		RateLimit:  e.Int("CRM_RATE_LIMIT", 100),
		RateWindow: e.Duration("CRM_RATE_WINDOW", 10*time.Second),
		Timeout:    e.Duration("CRM_TIMEOUT", 10*time.Second),
	}
	stages, err := parseStages(e.List("HUBSPOT_DEAL_STAGES"))
	if err != nil {
		e.Fail("HUBSPOT_DEAL_STAGES: %v", err)
	}
	cfg.HubSpot.Stages = stages
	switch cfg.Provider {
	case ProviderHubSpot:
		if cfg.HubSpot.Token == "" {
			e.Fail("HUBSPOT_TOKEN is required when CRM_PROVIDER=hubspot")
		}
	case ProviderWebhook:
		if cfg.Webhook.URL == "" {
			e.Fail("CRM_WEBHOOK_URL is required when CRM_PROVIDER=webhook")
		} else if err := checkWebhookURL(cfg.Webhook.URL); err != nil {
			e.Fail("CRM_WEBHOOK_URL: %v", err)
		}
		if cfg.Webhook.Secret == "" {
			e.Fail("CRM_WEBHOOK_SECRET is required when CRM_PROVIDER=webhook")
		}
	}
	if cfg.Consumer.BatchSize == 0 {
		cfg.Consumer.BatchSize = DefaultBatchSize
	}
	if cfg.Consumer.PartialBatches == 0 {
		cfg.Consumer.PartialBatches = DefaultPartialBatches
	}
	if cfg.RateLimit < 1 {
		e.Fail("CRM_RATE_LIMIT must be at least 1")
	}
	if cfg.RateWindow <= 0 {
		e.Fail("CRM_RATE_WINDOW must be positive")
	}
	if cfg.Timeout <= 0 {
		e.Fail("CRM_TIMEOUT must be positive")
	}
	if err := e.Err(); err != nil {
		return Config{}, fmt.Errorf("crm-sync config: %w", err)
	}
	return cfg, nil
}

func parseStages(items []string) (map[string]string, error) {
	out := map[string]string{}
	for _, it := range items {
		k, v, ok := strings.Cut(it, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("%q is not status=stage", it)
		}
		if _, known := crm.DefaultDealStages[k]; !known {
			return nil, fmt.Errorf("%q is not a canonical status", k)
		}
		out[k] = v
	}
	return out, nil
}

// LogValue prints the configuration with secrets masked, for the start-up
// log line.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("database_url", config.MaskURL(c.DatabaseURL)),
		slog.Any("nats", c.NATSURL),
		slog.String("http_addr", c.HTTPAddr),
		slog.String("provider", c.Provider),
		slog.String("hubspot_base_url", config.MaskURL(c.HubSpot.BaseURL)),
		slog.Any("hubspot_token", c.HubSpot.Token),
		// The path of an automation platform's webhook URL is itself the
		// credential.
		slog.String("webhook_url", redact.Origin(c.Webhook.URL)),
		slog.Any("webhook_secret", c.Webhook.Secret),
		slog.Int("rate_limit", c.RateLimit),
		slog.Duration("rate_window", c.RateWindow),
		slog.Duration("timeout", c.Timeout),
		slog.Int("concurrency", c.Consumer.Concurrency),
		slog.Bool("past_due_entitled", c.Policy.PastDueEntitled),
	)
}

// checkWebhookURL refuses a webhook target that is not https: the body
// carries customers' billing state and the signature only proves who sent
// it, not who read it. Plain http is allowed to a loopback address (a
// receiver on the same host or pod), which never crosses a network.
func checkWebhookURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("%s is not an absolute http(s) URL", redact.Origin(raw))
	}
	if u.User != nil {
		return errors.New("credentials in the URL are not supported; the body is signed with CRM_WEBHOOK_SECRET")
	}
	if u.Scheme == "http" && !isLoopback(u.Hostname()) {
		return fmt.Errorf("%s must use https (plain http only to a loopback address)", redact.Origin(raw))
	}
	return nil
}

// isLoopback is true for localhost and loopback IP literals. Other names
// are not resolved: what a name resolves to can change after start.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
