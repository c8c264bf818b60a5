package supportnotify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"net/mail"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/redact"
	"github.com/launchready/launchready/pkg/resync"
	"github.com/launchready/launchready/pkg/service"
	"github.com/launchready/launchready/pkg/stripeapi"
	"github.com/launchready/launchready/pkg/telemetry"
	"github.com/launchready/launchready/pkg/vendorhttp"

	"github.com/launchready/launchready/services/support-notify/internal/alerts"
	"github.com/launchready/launchready/services/support-notify/internal/email"
	"github.com/launchready/launchready/services/support-notify/internal/links"
	"github.com/launchready/launchready/services/support-notify/internal/metrics"
	"github.com/launchready/launchready/services/support-notify/internal/rules"
	"github.com/launchready/launchready/services/support-notify/internal/slack"
	"github.com/launchready/launchready/services/support-notify/internal/store"
	"github.com/launchready/launchready/services/support-notify/internal/tickets"
	"github.com/launchready/launchready/services/support-notify/internal/twilio"
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
	DefaultTwilioTimeout  = 10 * time.Second
	// DefaultEmailDigestWindow and DefaultSMSDigestWindow are the
	// shortest gaps between two ops e-mails and two texts: a burst folds
	// into a digest per window, and both stay well inside ALERT_SLO.
	DefaultEmailDigestWindow = 10 * time.Second
	DefaultSMSDigestWindow   = 30 * time.Second
	// DefaultCustomerEmailWindow paces customer e-mails; each customer
	// gets their own, so it only keeps a burst from flooding the relay.
	DefaultCustomerEmailWindow = 100 * time.Millisecond
	// DefaultAlertBatch is how many alert deliveries one handler call may
	// take (CONSUMER_BATCH_SIZE overrides it): with CONSUMER_CONCURRENCY
	// workers, up to Concurrency×Batch alerts wait together for the
	// channel, so a burst folds into digests instead of queueing in
	// JetStream behind a handful of workers.
	DefaultAlertBatch = 100
	// DefaultZendeskRateLimit per DefaultZendeskRateWindow is the lowest
	// Zendesk plan's limit.
	DefaultZendeskRateLimit  = 200
	DefaultZendeskRateWindow = time.Minute
	// DefaultLinkWait is how long a dispute waits for its charge's
	// customer: Stripe sends a charge's events within seconds of each
	// other, in any order.
	DefaultLinkWait = 20 * time.Second
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
	// SMTP is SMTP_HOST, SMTP_PORT, SMTP_USERNAME, SMTP_PASSWORD and
	// ALERT_EMAIL_FROM (SMTP_CA_FILE adds a private CA to trust). With
	// SMTP_HOST set, e-mail is a channel: to EmailTo (ALERT_EMAIL_TO, a
	// comma list) for every alert, and to the customer where the rules
	// say email_customer.
	SMTP    email.Config
	EmailTo []string
	// Twilio is TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, TWILIO_API_BASE,
	// TWILIO_FROM and ALERT_SMS_TO: with an account SID and a number to
	// text, SMS is a channel for the alerts of rules marked urgent.
	Twilio twilio.Config
	// EmailDigestWindow and SMSDigestWindow are ALERT_EMAIL_DIGEST_WINDOW
	// and ALERT_SMS_DIGEST_WINDOW: the shortest gap between two ops
	// e-mails, two texts.
	EmailDigestWindow time.Duration
	SMSDigestWindow   time.Duration
	// RulesFile is SUPPORT_RULES_FILE ("" = built-in defaults); Rules is
	// the validated result, loaded by ConfigFromEnv (nil = defaults).
	RulesFile string
	Rules     *rules.Set
	// AlertSLO is ALERT_SLO.
	AlertSLO time.Duration
	// AlertDigestWindow is ALERT_DIGEST_WINDOW: the shortest gap between
	// two messages on the alert channel. Alerts that arrive within it, or
	// while the channel asks to wait (429), fold into one digest.
	AlertDigestWindow time.Duration
	// ZendeskRateLimit calls per ZendeskRateWindow (ZENDESK_RATE_LIMIT,
	// ZENDESK_RATE_WINDOW) is the budget of Zendesk calls per replica.
	ZendeskRateLimit  int
	ZendeskRateWindow time.Duration
	// LinkWait is SUPPORT_LINK_WAIT: how long a dispute that arrives
	// before its charge waits for the charge's customer to be learned.
	LinkWait time.Duration
	// Stripe is STRIPE_API_KEY, STRIPE_API_BASE, STRIPE_API_RATE and
	// STRIPE_LIVEMODE: with a key, the charge of a dispute whose customer
	// is still unknown after LinkWait is read from Stripe's API.
	Stripe stripeapi.Config
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
	// StartTimeout bounds the wait for NATS and Postgres at start (zero:
	// service.DefaultStartTimeout). Past it Run fails, so a dependency that
	// never comes up shows as a crash loop instead of a service that
	// silently does nothing.
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
// SLACK_WEBHOOK_URL, SUPPORT_RULES_FILE, ALERT_SLO, ALERT_DIGEST_WINDOW,
// ZENDESK_RATE_LIMIT, ZENDESK_RATE_WINDOW and SUPPORT_MAX_EVENT_AGE. It loads and
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

		AlertDigestWindow: e.Duration("ALERT_DIGEST_WINDOW", alerts.DefaultWindow),
		ZendeskRateLimit:  e.Int("ZENDESK_RATE_LIMIT", DefaultZendeskRateLimit),
		ZendeskRateWindow: e.Duration("ZENDESK_RATE_WINDOW", DefaultZendeskRateWindow),
		LinkWait:          e.Duration("SUPPORT_LINK_WAIT", DefaultLinkWait),
		Stripe:            stripeapi.ConfigFromEnv(e),

		EmailTo:           e.List("ALERT_EMAIL_TO"),
		EmailDigestWindow: e.Duration("ALERT_EMAIL_DIGEST_WINDOW", DefaultEmailDigestWindow),
		SMSDigestWindow:   e.Duration("ALERT_SMS_DIGEST_WINDOW", DefaultSMSDigestWindow),
	}
	cfg.SMTP = email.Config{
		Host:     e.String("SMTP_HOST", ""),
		Port:     e.Int("SMTP_PORT", email.DefaultPort),
		Username: e.String("SMTP_USERNAME", ""),
		Password: e.Secret("SMTP_PASSWORD"),
		From:     e.String("ALERT_EMAIL_FROM", ""),
	}
	if cfg.SMTP.Host != "" {
		if _, err := mail.ParseAddress(cfg.SMTP.From); err != nil {
			e.Fail("ALERT_EMAIL_FROM: an e-mail address is required when SMTP_HOST is set")
		}
		for _, to := range cfg.EmailTo {
			if _, err := mail.ParseAddress(to); err != nil {
				e.Fail("ALERT_EMAIL_TO: %q is not an e-mail address", to)
			}
		}
		if cfg.SMTP.Port < 1 || cfg.SMTP.Port > 65535 {
			e.Fail("SMTP_PORT: not a port: %d", cfg.SMTP.Port)
		}
		if cfg.SMTP.Username != "" && cfg.SMTP.Password == "" {
			e.Fail("SMTP_PASSWORD is required when SMTP_USERNAME is set")
		}
		if ca := e.String("SMTP_CA_FILE", ""); ca != "" {
			pem, err := os.ReadFile(ca) // #nosec G304 -- SMTP_CA_FILE, named by the operator
			pool := x509.NewCertPool()
			if err != nil || !pool.AppendCertsFromPEM(pem) {
				e.Fail("SMTP_CA_FILE: no PEM certificate in %s", ca)
			} else {
				cfg.SMTP.TLS = &tls.Config{ServerName: cfg.SMTP.Host, RootCAs: pool, MinVersion: tls.VersionTLS12}
			}
		}
	} else if len(cfg.EmailTo) > 0 {
		e.Fail("ALERT_EMAIL_TO is set but SMTP_HOST is not: no server to send through")
	}
	cfg.Twilio = twilio.Config{
		APIBase:    e.String("TWILIO_API_BASE", twilio.DefaultAPIBase),
		AccountSID: e.String("TWILIO_ACCOUNT_SID", ""),
		AuthToken:  e.Secret("TWILIO_AUTH_TOKEN"),
		From:       e.String("TWILIO_FROM", ""),
		To:         e.String("ALERT_SMS_TO", ""),
	}
	if cfg.Twilio.To != "" {
		if cfg.Twilio.AccountSID == "" || cfg.Twilio.AuthToken == "" {
			e.Fail("ALERT_SMS_TO needs TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
		}
		if cfg.Twilio.From == "" {
			e.Fail("ALERT_SMS_TO needs TWILIO_FROM (a Twilio number or messaging service SID)")
		}
		if u, err := url.Parse(cfg.Twilio.APIBase); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			e.Fail("TWILIO_API_BASE: not an http(s) URL")
		}
	}
	windows := map[string]time.Duration{}
	if cfg.SMTP.Host != "" {
		windows["ALERT_EMAIL_DIGEST_WINDOW"] = cfg.EmailDigestWindow
	}
	if cfg.Twilio.To != "" {
		windows["ALERT_SMS_DIGEST_WINDOW"] = cfg.SMSDigestWindow
	}
	for name, w := range windows {
		if w <= 0 || w >= cfg.AlertSLO {
			e.Fail("%s: must be positive and shorter than ALERT_SLO (%s), got %s", name, cfg.AlertSLO, w)
		}
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
	if cfg.AlertDigestWindow <= 0 || cfg.AlertDigestWindow >= cfg.AlertSLO {
		e.Fail("ALERT_DIGEST_WINDOW: must be positive and shorter than ALERT_SLO (%s), got %s", cfg.AlertSLO, cfg.AlertDigestWindow)
	}
	if cfg.LinkWait < 0 || cfg.LinkWait > 10*time.Minute {
		e.Fail("SUPPORT_LINK_WAIT: must be between 0 and 10m, got %s", cfg.LinkWait)
	}
	if cfg.ZendeskRateLimit < 1 {
		e.Fail("ZENDESK_RATE_LIMIT must be at least 1")
	}
	if cfg.ZendeskRateWindow <= 0 {
		e.Fail("ZENDESK_RATE_WINDOW must be positive")
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
		slog.String("smtp_host", c.SMTP.Host),
		slog.Int("smtp_port", c.SMTP.Port),
		slog.String("smtp_username", c.SMTP.Username),
		slog.String("smtp_password", c.SMTP.Password.String()),
		slog.String("alert_email_from", c.SMTP.From),
		slog.Int("alert_email_to", len(c.EmailTo)),
		slog.String("twilio_api_base", config.MaskURL(c.Twilio.APIBase)),
		slog.String("twilio_account_sid", c.Twilio.AccountSID),
		slog.String("twilio_auth_token", c.Twilio.AuthToken.String()),
		slog.Bool("alert_sms", c.Twilio.To != ""),
		slog.String("rules", rulesFrom),
		slog.Duration("alert_slo", c.AlertSLO),
		slog.Duration("alert_digest_window", c.AlertDigestWindow),
		slog.Int("zendesk_rate_limit", c.ZendeskRateLimit),
		slog.Duration("link_wait", c.LinkWait),
		slog.Any("stripe_api", c.Stripe),
		slog.Duration("zendesk_rate_window", c.ZendeskRateWindow),
		slog.Duration("max_event_age", c.MaxEventAge),
		slog.Int("ticket_concurrency", c.Tickets.Concurrency),
		slog.Int("alert_concurrency", c.Alerts.Concurrency),
		slog.String("otel_endpoint", config.MaskURL(c.Telemetry.Endpoint)),
	)
}

// Run consumes until ctx is done, then stops fetching, lets the handlers in
// flight finish and returns.
func Run(ctx context.Context, cfg Config) error {
	set := cfg.Rules
	if set == nil {
		set = rules.Defaults()
	}
	zdTimeout := positiveOr(cfg.ZendeskTimeout, DefaultZendeskTimeout)
	slackTimeout := positiveOr(cfg.SlackTimeout, DefaultSlackTimeout)
	slo := positiveOr(cfg.AlertSLO, DefaultAlertSLO)
	spec := service.Spec{
		Name: ServiceName, Logger: cfg.Logger, Registry: cfg.Registry, Telemetry: cfg.Telemetry, Settings: cfg,
		OpsAddr: cfg.HTTPAddr, NATS: cfg.NATSURL, Streams: cfg.Streams,
		// Vendor calls run inside ticket transactions, so every worker of
		// both consumers may hold a connection at once: size the pool for
		// that, or a slow Zendesk would starve the alert workers.
		// A staff resync holds one more.
		Database:     &service.Database{URL: cfg.DatabaseURL, MaxConns: int32(cfg.Tickets.Concurrency + cfg.Alerts.Concurrency + 3), Migrate: store.Migrate}, // #nosec G115 -- both concurrencies are validated to 1..maxConcurrency
		StartTimeout: cfg.StartTimeout, Ready: cfg.Ready,
	}
	return service.Supervise(ctx, spec, func(_ context.Context, host *service.Host) error {
		log, tp := host.Log, host.Telemetry.TracerProvider()
		m, err := metrics.New(host.Registry)
		if err != nil {
			return err
		}
		if err := host.Registry.Register(metrics.NewSmokeCollector(host.Pool)); err != nil {
			return fmt.Errorf("register smoke metric: %w", err)
		}
		var desk tickets.Desk = tickets.LogDesk{Log: log.With("provider", ProviderLog)}
		if cfg.SupportProvider == ProviderZendesk {
			desk = zendesk.New(cfg.Zendesk, vendor.New(vendor.Config{Vendor: "zendesk", Timeout: zdTimeout, TracerProvider: tp,
				Metrics: m, Secrets: []string{cfg.Zendesk.APIToken.Reveal()},
				Limiter: vendorhttp.NewLimiter(positiveIntOr(cfg.ZendeskRateLimit, DefaultZendeskRateLimit), positiveOr(cfg.ZendeskRateWindow, DefaultZendeskRateWindow))}))
		}
		var channel alerts.Channel = alerts.LogChannel{Log: log.With("provider", ProviderLog)}
		if cfg.AlertProvider == ProviderSlack {
			channel = slack.New(cfg.SlackWebhookURL, vendor.New(vendor.Config{Vendor: "slack", Timeout: slackTimeout, TracerProvider: tp,
				Metrics: m, Secrets: []string{cfg.SlackWebhookURL.Reveal()}, HideURLPath: true}))
		}

		// One consumer per action, so neither waits for the other. Each
		// durable receives only the event types its rules act on; the
		// rest of the stream never reaches the service.
		resolver := &links.Resolver{Pool: host.Pool, Wait: cfg.LinkWait}
		if cfg.Stripe.Configured() {
			api, err := stripeapi.New(cfg.Stripe)
			if err != nil {
				return fmt.Errorf("stripe api: %w", err)
			}
			resolver.Stripe = api
		}
		ticketHandler := &tickets.Handler{Links: resolver, Consumer: TicketsDurable, Pool: host.Pool, Rules: set, Desk: desk, Metrics: m, Log: log, MaxAge: cfg.MaxEventAge}
		alertHandler := &alerts.Handler{Links: resolver, Pool: host.Pool, Rules: set, Channel: channel, Metrics: m, Log: log, SLO: slo, MaxAge: cfg.MaxEventAge,
			Window: cfg.AlertDigestWindow, Outlets: cfg.outlets(tp, m)}
		for _, ch := range alertHandler.Channels() {
			// Every configured channel shows on /metrics from the start.
			m.AlertLatency.WithLabelValues(ch)
			m.AlertsSent.WithLabelValues(ch)
			m.AlertsLate.WithLabelValues(ch)
		}
		if len(cfg.Tickets.FilterSubjects) == 0 {
			cfg.Tickets.FilterSubjects = bus.TypeFilterSubjects(cfg.Tickets.Durable, withLinkTypes(set.Types(rules.Ticket, rules.Resolve)))
		}
		if len(cfg.Alerts.FilterSubjects) == 0 {
			cfg.Alerts.FilterSubjects = bus.TypeFilterSubjects(cfg.Alerts.Durable, set.Types(rules.Alert, rules.EmailCustomer))
		}
		host.GoConsumer("tickets consumer", bus.NewConsumer(host.JS, cfg.Tickets, ticketHandler.OpenOrResolveTicket, host.ConsumerOptions()))
		// Staff resyncs of a customer's tickets, once per request id.
		resyncTimeout := 2 * zdTimeout
		resyncs := resync.Log{DB: host.Pool, Schema: store.Schema, StaleAfter: resyncTimeout + time.Minute}
		host.Go("resync", func(ctx context.Context) error {
			return resync.Run(ctx, host.NC, TicketsDurable, resyncTimeout, log, resyncs.Once(ticketHandler.Resync))
		})
		if cfg.Alerts.BatchSize == 0 {
			cfg.Alerts.BatchSize = DefaultAlertBatch
		}
		host.GoConsumer("alerts consumer", bus.NewBatchConsumer(host.JS, cfg.Alerts, alertHandler.PostAlerts, host.ConsumerOptions()))
		return nil
	})
}

// outlets are the alert channels beside Slack that cfg configures.
func (c Config) outlets(tp trace.TracerProvider, m *metrics.Metrics) []alerts.Outlet {
	var out []alerts.Outlet
	if c.SMTP.Host != "" {
		mailer := email.New(c.SMTP)
		if len(c.EmailTo) > 0 {
			out = append(out, alerts.EmailOutlet(mailer, c.EmailTo, positiveOr(c.EmailDigestWindow, DefaultEmailDigestWindow)))
		}
		out = append(out, alerts.CustomerEmailOutlet(mailer, DefaultCustomerEmailWindow))
	}
	if c.Twilio.To != "" {
		client := vendor.New(vendor.Config{Vendor: "twilio", Timeout: DefaultTwilioTimeout, TracerProvider: tp, Metrics: m,
			Secrets: []string{c.Twilio.AuthToken.Reveal()}})
		out = append(out, alerts.SMSOutlet(twilio.New(c.Twilio, client), positiveOr(c.SMSDigestWindow, DefaultSMSDigestWindow)))
	}
	return out
}

// withLinkTypes adds the event types that teach charge → customer links,
// which the ticket consumer learns from, to the types its rules act on.
func withLinkTypes(types []string) []string {
	out := slices.Clone(types)
	for _, t := range links.Types {
		if !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	slices.Sort(out)
	return out
}

// positiveIntOr is n, or def when n is not positive (unset).
func positiveIntOr(n, def int) int {
	if n <= 0 {
		return def
	}
	return n
}

// positiveOr is d, or def when d is not positive (unset).
func positiveOr(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
