package supportnotify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/httpserver"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/redact"
	"github.com/launchready/launchready/pkg/telemetry"

	"github.com/launchready/launchready/services/support-notify/internal/alerts"
	"github.com/launchready/launchready/services/support-notify/internal/metrics"
	"github.com/launchready/launchready/services/support-notify/internal/rules"
	"github.com/launchready/launchready/services/support-notify/internal/slack"
	"github.com/launchready/launchready/services/support-notify/internal/store"
	"github.com/launchready/launchready/services/support-notify/internal/tickets"
	"github.com/launchready/launchready/services/support-notify/internal/vendor"
	"github.com/launchready/launchready/services/support-notify/internal/zendesk"
)

// ServiceName names the service in logs, traces and the NATS connection.
const ServiceName = "support-notify"

// Durable consumer names: tickets keep the service's name; alerts run on a
// second durable so that neither waits for the other (see the package doc).
const (
	TicketsDurable = "support-notify"
	AlertsDurable  = "support-notify-alerts"
)

// Providers.
const (
	ProviderLog     = "log"
	ProviderZendesk = "zendesk"
	ProviderSlack   = "slack"
)

// Defaults.
const (
	DefaultHTTPAddr       = ":8083"
	DefaultAlertSLO       = 2 * time.Minute
	DefaultZendeskTimeout = 30 * time.Second
	DefaultSlackTimeout   = 10 * time.Second
	DefaultMaxEventAge    = 96 * time.Hour
)

// Config is everything Run needs.
type Config struct {
	// HTTPAddr is HTTP_ADDR: /healthz, /readyz and /metrics.
	HTTPAddr string
	// NATSURL is NATS_URL with the credentials and TLS settings that go
	// with it (bus.ConnConfigFromEnv): support-notify connects as its own
	// user. DatabaseURL is DATABASE_URL.
	NATSURL     bus.ConnConfig
	DatabaseURL string
	// Streams are the NATS_* stream settings: the provisioning step applies
	// them; at start the service waits for the streams and says when the
	// provisioned ones differ.
	Streams bus.StreamConfig
	// Tickets and Alerts are the two durable consumers; both read the
	// CONSUMER_* variables.
	Tickets bus.ConsumerConfig
	Alerts  bus.ConsumerConfig
	// Telemetry says where spans go.
	Telemetry telemetry.Config

	// SupportProvider is SUPPORT_PROVIDER (log|zendesk); AlertProvider is
	// ALERT_PROVIDER (log|slack).
	SupportProvider string
	AlertProvider   string
	// Zendesk is ZENDESK_BASE_URL (or https://ZENDESK_SUBDOMAIN.zendesk.com),
	// ZENDESK_EMAIL and ZENDESK_API_TOKEN.
	Zendesk zendesk.Config
	// SlackWebhookURL is SLACK_WEBHOOK_URL, a credential in itself.
	SlackWebhookURL config.Secret
	// RulesFile is SUPPORT_RULES_FILE ("" = built-in defaults); Rules is
	// the validated result, loaded by ConfigFromEnv (nil = defaults).
	RulesFile string
	Rules     *rules.Set
	// AlertSLO is ALERT_SLO.
	AlertSLO time.Duration
	// MaxEventAge is SUPPORT_MAX_EVENT_AGE: events older than this open no
	// ticket and send no alert (0 disables the limit). The stream keeps a
	// month of history and a new durable starts from its beginning; this
	// keeps a first deployment from paging for last month. The default,
	// four days, outlasts Stripe's three days of webhook retries, so an
	// event Stripe re-sends after an outage still alerts (marked late).
	MaxEventAge time.Duration

	// ZendeskTimeout and SlackTimeout bound one vendor call; zero means
	// 30 s and 10 s.
	ZendeskTimeout time.Duration
	SlackTimeout   time.Duration
	// StartTimeout bounds the wait for NATS and Postgres at start; zero
	// means 30 s. Past it Run fails, so a dependency that never comes up
	// shows as a crash loop instead of a service that silently does nothing.
	StartTimeout time.Duration
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// Ready, when set, is called once with {"http": bound address} after
	// both consumers are running.
	Ready func(addrs map[string]string)
	// Registry receives the service's metrics; nil means a fresh one.
	Registry *prometheus.Registry
}

var subdomainRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// WithLogger returns the configuration with its logs going to log.
func (c Config) WithLogger(log *slog.Logger) Config {
	c.Logger = log
	return c
}

// ConfigFromEnv reads HTTP_ADDR, NATS_URL, DATABASE_URL, the NATS_* stream
// and CONSUMER_* settings, OTEL_*, SUPPORT_PROVIDER, ALERT_PROVIDER,
// ZENDESK_SUBDOMAIN, ZENDESK_EMAIL, ZENDESK_API_TOKEN, ZENDESK_BASE_URL,
// SLACK_WEBHOOK_URL, SUPPORT_RULES_FILE, ALERT_SLO and SUPPORT_MAX_EVENT_AGE. It loads and
// validates the rules file, so a bad file fails the start.
func ConfigFromEnv(getenv config.Getenv) (Config, error) {
	e := config.New(getenv)
	cfg := Config{
		HTTPAddr:        e.String("HTTP_ADDR", DefaultHTTPAddr),
		NATSURL:         bus.ConnConfigFromEnv(e, ServiceName),
		DatabaseURL:     e.String("DATABASE_URL", pg.DefaultURL),
		Streams:         bus.StreamConfigFromEnv(e),
		Tickets:         bus.ConsumerConfigFromEnv(e, TicketsDurable),
		Alerts:          bus.ConsumerConfigFromEnv(e, AlertsDurable),
		Telemetry:       telemetry.ConfigFromEnv(e, ServiceName),
		SupportProvider: e.OneOf("SUPPORT_PROVIDER", ProviderLog, ProviderLog, ProviderZendesk),
		AlertProvider:   e.OneOf("ALERT_PROVIDER", ProviderLog, ProviderLog, ProviderSlack),
		SlackWebhookURL: e.Secret("SLACK_WEBHOOK_URL"),
		RulesFile:       e.String("SUPPORT_RULES_FILE", ""),
		AlertSLO:        e.Duration("ALERT_SLO", DefaultAlertSLO),
		MaxEventAge:     e.Duration("SUPPORT_MAX_EVENT_AGE", DefaultMaxEventAge),
	}
	cfg.Zendesk = zendesk.Config{
		BaseURL:  e.String("ZENDESK_BASE_URL", ""),
		Email:    e.String("ZENDESK_EMAIL", ""),
		APIToken: e.Secret("ZENDESK_API_TOKEN"),
	}
	sub := strings.ToLower(e.String("ZENDESK_SUBDOMAIN", ""))
	if cfg.SupportProvider == ProviderZendesk {
		switch {
		case cfg.Zendesk.BaseURL != "":
			if u, err := url.Parse(cfg.Zendesk.BaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
				e.Fail("ZENDESK_BASE_URL: not an http(s) URL")
			}
		case sub == "":
			e.Fail("ZENDESK_SUBDOMAIN (or ZENDESK_BASE_URL) is required when SUPPORT_PROVIDER=zendesk")
		case !subdomainRE.MatchString(sub):
			e.Fail("ZENDESK_SUBDOMAIN: %q is not a subdomain (the NAME in NAME.zendesk.com)", sub)
		default:
			cfg.Zendesk.BaseURL = "https://" + sub + ".zendesk.com"
		}
		if cfg.Zendesk.Email == "" {
			e.Fail("ZENDESK_EMAIL is required when SUPPORT_PROVIDER=zendesk")
		}
		if cfg.Zendesk.APIToken == "" {
			e.Fail("ZENDESK_API_TOKEN is required when SUPPORT_PROVIDER=zendesk")
		}
	}
	if cfg.AlertProvider == ProviderSlack {
		if cfg.SlackWebhookURL == "" {
			e.Fail("SLACK_WEBHOOK_URL is required when ALERT_PROVIDER=slack")
		} else if u, err := url.Parse(cfg.SlackWebhookURL.Reveal()); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			// Never echo the value: the URL is the credential.
			e.Fail("SLACK_WEBHOOK_URL: not an http(s) URL")
		}
	}
	if cfg.MaxEventAge < 0 {
		e.Fail("SUPPORT_MAX_EVENT_AGE: must not be negative, got %s", cfg.MaxEventAge)
	}
	if cfg.AlertSLO <= 0 {
		e.Fail("ALERT_SLO: must be positive, got %s", cfg.AlertSLO)
	}
	set, err := rules.Load(cfg.RulesFile)
	if err != nil {
		e.Fail("%v", err)
	}
	cfg.Rules = set
	if err := e.Err(); err != nil {
		return Config{}, fmt.Errorf("support-notify config: %w", err)
	}
	return cfg, nil
}

// LogValue logs the settings with every secret masked.
func (c Config) LogValue() slog.Value {
	rulesFrom := "defaults"
	if c.RulesFile != "" {
		rulesFrom = c.RulesFile
	}
	return slog.GroupValue(
		slog.String("http_addr", c.HTTPAddr),
		slog.Any("nats", c.NATSURL),
		slog.String("database_url", config.MaskURL(c.DatabaseURL)),
		slog.String("support_provider", c.SupportProvider),
		slog.String("alert_provider", c.AlertProvider),
		slog.String("zendesk_base_url", config.MaskURL(c.Zendesk.BaseURL)),
		slog.String("zendesk_email", c.Zendesk.Email),
		slog.String("zendesk_api_token", c.Zendesk.APIToken.String()),
		// The path of a Slack webhook URL is the credential.
		slog.String("slack_webhook_url", redact.Origin(c.SlackWebhookURL.Reveal())),
		slog.String("rules", rulesFrom),
		slog.Duration("alert_slo", c.AlertSLO),
		slog.Duration("max_event_age", c.MaxEventAge),
		slog.Int("ticket_concurrency", c.Tickets.Concurrency),
		slog.Int("alert_concurrency", c.Alerts.Concurrency),
		slog.String("otel_endpoint", config.MaskURL(c.Telemetry.Endpoint)),
	)
}

// Run consumes until ctx is done, then stops fetching, lets the handlers in
// flight finish and returns.
func Run(ctx context.Context, cfg Config) error {
	log := cfg.Logger
	if log == nil {
		log = logging.Discard()
	}
	reg := cfg.Registry
	if reg == nil {
		reg = httpserver.NewRegistry()
	}
	set := cfg.Rules
	if set == nil {
		set = rules.Defaults()
	}
	startTimeout := cfg.StartTimeout
	if startTimeout <= 0 {
		startTimeout = 30 * time.Second
	}
	zdTimeout := cfg.ZendeskTimeout
	if zdTimeout <= 0 {
		zdTimeout = DefaultZendeskTimeout
	}
	slackTimeout := cfg.SlackTimeout
	if slackTimeout <= 0 {
		slackTimeout = DefaultSlackTimeout
	}
	slo := cfg.AlertSLO
	if slo <= 0 {
		slo = DefaultAlertSLO
	}
	log.Info("support-notify starting", "config", cfg)

	// ---- Tracing.
	tel, err := telemetry.Setup(ctx, cfg.Telemetry)
	if err != nil {
		return fmt.Errorf("support-notify: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := tel.Shutdown(sctx); err != nil {
			log.Warn("telemetry shutdown", "error", err)
		}
	}()

	// ---- Ops HTTP first, so /healthz answers while dependencies come up.
	ln, err := httpserver.Listen(cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("support-notify: %w", err)
	}
	var (
		depsMu sync.Mutex
		pool   *pgxpool.Pool
		nc     *nats.Conn
	)
	checks := map[string]httpserver.Check{
		"postgres": func(ctx context.Context) error {
			depsMu.Lock()
			p := pool
			depsMu.Unlock()
			if p == nil {
				return errors.New("not connected yet")
			}
			return p.Ping(ctx)
		},
		"nats": func(context.Context) error {
			depsMu.Lock()
			c := nc
			depsMu.Unlock()
			if c == nil || !c.IsConnected() {
				return errors.New("not connected")
			}
			return nil
		},
	}
	mux := http.NewServeMux()
	httpserver.Ops(mux, reg, checks)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	opsCtx, stopOps := context.WithCancel(context.WithoutCancel(ctx))
	opsDone := make(chan error, 1)
	go func() { opsDone <- httpserver.Serve(opsCtx, srv, ln, 5*time.Second) }()
	defer func() {
		stopOps()
		if err := <-opsDone; err != nil {
			log.Warn("ops server", "error", err)
		}
	}()

	// ---- Postgres and JetStream.
	sctx, cancelStart := context.WithTimeout(ctx, startTimeout)
	defer cancelStart()
	maxConns := int32(cfg.Tickets.Concurrency + cfg.Alerts.Concurrency + 2)
	p, err := openDatabase(sctx, cfg.DatabaseURL, maxConns, tel.PgxTracer(), log)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("support-notify: %w", err)
	}
	defer p.Close()
	if err := pg.RegisterPoolMetrics(reg, p, ServiceName); err != nil {
		return fmt.Errorf("support-notify: %w", err)
	}
	conn, js, err := bus.Connect(sctx, cfg.NATSURL, ServiceName, log)
	if err == nil {
		defer conn.Close()
		err = bus.EnsureStreams(sctx, js, cfg.Streams)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("support-notify: %w", err)
	}
	cancelStart()
	depsMu.Lock()
	pool, nc = p, conn
	depsMu.Unlock()

	// ---- Vendors.
	m, err := metrics.New(reg)
	if err != nil {
		return fmt.Errorf("support-notify: %w", err)
	}
	var desk tickets.Desk = tickets.LogDesk{Log: log.With("provider", ProviderLog)}
	if cfg.SupportProvider == ProviderZendesk {
		desk = zendesk.New(cfg.Zendesk, vendor.New(vendor.Config{Vendor: "zendesk", Timeout: zdTimeout, TracerProvider: tel.TracerProvider(),
			Metrics: m, Secrets: []string{cfg.Zendesk.APIToken.Reveal()}}))
	}
	var channel alerts.Channel = alerts.LogChannel{Log: log.With("provider", ProviderLog)}
	if cfg.AlertProvider == ProviderSlack {
		channel = slack.New(cfg.SlackWebhookURL, vendor.New(vendor.Config{Vendor: "slack", Timeout: slackTimeout, TracerProvider: tel.TracerProvider(),
			Metrics: m, Secrets: []string{cfg.SlackWebhookURL.Reveal()}, HideURLPath: true}))
	}

	// ---- Consumers: one per action, so neither waits for the other.
	ticketHandler := &tickets.Handler{Consumer: TicketsDurable, Pool: p, Rules: set, Desk: desk, Metrics: m, Log: log, MaxAge: cfg.MaxEventAge}
	alertHandler := &alerts.Handler{Pool: p, Rules: set, Channel: channel, Metrics: m, Log: log, SLO: slo, MaxAge: cfg.MaxEventAge}
	opts := bus.ConsumerOptions{Logger: log, TracerProvider: tel.TracerProvider(), Registry: reg}
	// Each durable receives only the event types its rules act on; the
	// rest of the stream never reaches the service.
	if len(cfg.Tickets.FilterSubjects) == 0 {
		cfg.Tickets.FilterSubjects = bus.TypeFilterSubjects(cfg.Tickets.Durable, set.Types(rules.Ticket, rules.Resolve))
	}
	if len(cfg.Alerts.FilterSubjects) == 0 {
		cfg.Alerts.FilterSubjects = bus.TypeFilterSubjects(cfg.Alerts.Durable, set.Types(rules.Alert))
	}
	consumers := []*bus.Consumer{
		bus.NewConsumer(js, cfg.Tickets, ticketHandler.Handle, opts),
		bus.NewConsumer(js, cfg.Alerts, alertHandler.Handle, opts),
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	errc := make(chan error, len(consumers))
	for _, c := range consumers {
		go func() { errc <- c.Run(runCtx) }()
	}
	if cfg.Ready != nil {
		cfg.Ready(map[string]string{"http": ln.Addr().String()})
	}
	log.Info("support-notify running", "http", ln.Addr().String(), "consumers", []string{cfg.Tickets.Durable, cfg.Alerts.Durable})

	// ---- Until shutdown or a consumer fails; then stop the other too.
	var first error
	for range consumers {
		err := <-errc
		if err != nil && !errors.Is(err, context.Canceled) && first == nil {
			first = err
			log.Error("consumer stopped", "error", err)
		}
		stop()
	}
	if first != nil && ctx.Err() == nil {
		return fmt.Errorf("support-notify: %w", first)
	}
	log.Info("support-notify stopped")
	return nil
}

// openDatabase opens the pool and applies migrations, retrying while
// Postgres is unreachable (compose starts everything at once) until ctx
// ends.
func openDatabase(ctx context.Context, dbURL string, maxConns int32, tracer pgx.QueryTracer, log *slog.Logger) (*pgxpool.Pool, error) {
	// Vendor calls run inside ticket transactions, so every worker of both
	// consumers may hold a connection at once: size the pool for that, or
	// a slow Zendesk would starve the alert workers of connections.
	pool, err := pg.Open(ctx, dbURL, pg.WithMaxConns(maxConns), pg.WithTracer(tracer), pg.WithApplicationName("support-notify"))
	if err != nil {
		return nil, err
	}
	wait := 250 * time.Millisecond
	for {
		err := store.Migrate(ctx, pool)
		if err == nil {
			return pool, nil
		}
		if !pg.IsUnavailable(err) || ctx.Err() != nil {
			pool.Close()
			return nil, fmt.Errorf("postgres: %w", err)
		}
		log.Warn("postgres not ready; retrying", "error", redact.Error(err), "retry_in", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			pool.Close()
			return nil, fmt.Errorf("postgres: %w", err)
		case <-t.C:
		}
		wait = min(wait*2, 5*time.Second)
	}
}
