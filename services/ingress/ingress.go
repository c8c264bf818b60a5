// Package ingress is the Stripe webhook receiver as a library: it verifies
// each delivery, publishes it to JetStream with the event id as Nats-Msg-Id,
// and answers 2xx only after the PubAck, so every event Stripe sees accepted
// is stored and every other one is retried by Stripe.
//
// Ingress is stateless: no database, nothing on disk. Run it as many times
// as needed behind a load balancer; JetStream's duplicate window makes
// concurrent deliveries of one event land once.
package ingress

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/httpserver"
	"github.com/launchready/launchready/pkg/service"
	"github.com/launchready/launchready/pkg/telemetry"
	"github.com/launchready/launchready/services/ingress/internal/webhook"
)

// ServiceName names the service in logs, traces and the NATS connection.
const ServiceName = "ingress"

// Config is everything Run needs.
type Config struct {
	// Addr is INGRESS_ADDR: the public listener, which serves the webhook
	// endpoint and nothing else.
	Addr string
	// HTTPAddr is HTTP_ADDR: the ops listener, /healthz, /readyz and
	// /metrics, like the consumers'. It must not be reachable from outside.
	HTTPAddr string
	// NATSURL is NATS_URL with the credentials and TLS settings that go
	// with it (bus.ConnConfigFromEnv): ingress connects as its own user.
	NATSURL bus.ConnConfig
	// Secrets is STRIPE_WEBHOOK_SECRET, one secret or a comma list.
	Secrets []config.Secret
	// Livemode is STRIPE_LIVEMODE: "live" or "test" accepts only that mode,
	// "" both.
	Livemode string
	// MaxBody is WEBHOOK_MAX_BODY in bytes.
	MaxBody int64
	// Tolerance is WEBHOOK_TOLERANCE, for old and future timestamps alike.
	Tolerance time.Duration
	// PublishTimeout is PUBLISH_TIMEOUT: how long a request waits for a
	// PubAck before answering 503.
	PublishTimeout time.Duration
	// MaxInflight is WEBHOOK_MAX_INFLIGHT: requests reading a body,
	// verifying or publishing at once, three quarters of them kept for short
	// bodies.
	MaxInflight int
	// InflightWait is WEBHOOK_INFLIGHT_WAIT: how long a request waits for
	// a slot before it is answered 503.
	InflightWait time.Duration
	// ReadTimeout is WEBHOOK_READ_TIMEOUT: the longest one body may take
	// to arrive once it has a slot.
	ReadTimeout time.Duration
	// SilenceAlert is WEBHOOK_SILENCE_ALERT: how long without a webhook
	// before the LaunchReadyWebhookSilence alert fires. Ingress exports it
	// as lr_webhook_silence_alert_seconds, which the rule reads, so the
	// deployment's setting reaches the rule without editing it.
	SilenceAlert time.Duration
	// Streams are the NATS_* stream settings: the provisioning step applies
	// them; at start the service waits for the streams and says when the
	// provisioned ones differ.
	Streams bus.StreamConfig
	// Telemetry says where spans go.
	Telemetry telemetry.Config

	// StartTimeout bounds the wait for NATS at start (service's default
	// when zero). Past it Run fails, so a broker that never comes up shows
	// as a crash loop rather than a process that silently never listens.
	StartTimeout time.Duration
	// ShutdownGrace bounds how long requests in flight may take to finish
	// after shutdown starts. Zero means PublishTimeout plus ten seconds,
	// which lets every publish already started reach its PubAck or its
	// timeout.
	ShutdownGrace time.Duration
	// Logger receives the service's logs; nil discards them.
	Logger *slog.Logger
	// Ready, when set, is called once with {"webhook": public address,
	// "http": ops address}.
	Ready func(addrs map[string]string)
	// Registry receives the service's metrics; nil means a fresh one.
	Registry *prometheus.Registry
}

// Defaults for the environment variables.
const (
	DefaultAddr           = ":8080"
	DefaultHTTPAddr       = ":8084"
	DefaultMaxBody        = 1 << 20
	DefaultTolerance      = 300 * time.Second
	DefaultPublishTimeout = 5 * time.Second
	DefaultMaxInflight    = webhook.DefaultMaxInflight
	DefaultInflightWait   = webhook.DefaultInflightWait
	DefaultReadTimeout    = webhook.DefaultReadTimeout
	// DefaultSilenceAlert suits a business with steady traffic; tune it to
	// the longest quiet spell that is normal.
	DefaultSilenceAlert = 6 * time.Hour
)

// WithLogger returns the configuration with its logs going to log.
func (c Config) WithLogger(log *slog.Logger) Config {
	c.Logger = log
	return c
}

// ConfigFromEnv reads INGRESS_ADDR, HTTP_ADDR, NATS_URL and its credentials,
// STRIPE_WEBHOOK_SECRET, STRIPE_LIVEMODE, WEBHOOK_MAX_BODY, WEBHOOK_TOLERANCE,
// PUBLISH_TIMEOUT, WEBHOOK_MAX_INFLIGHT, WEBHOOK_INFLIGHT_WAIT, WEBHOOK_READ_TIMEOUT,
// WEBHOOK_SILENCE_ALERT, the
// NATS_* stream settings and the OTEL_* variables.
func ConfigFromEnv(getenv config.Getenv) (Config, error) {
	e := config.New(getenv)
	cfg := Config{
		Addr:           e.String("INGRESS_ADDR", DefaultAddr),
		HTTPAddr:       e.String("HTTP_ADDR", DefaultHTTPAddr),
		NATSURL:        bus.ConnConfigFromEnv(e, ServiceName),
		Livemode:       e.OneOf("STRIPE_LIVEMODE", "", "", "live", "test"),
		MaxBody:        e.Int64("WEBHOOK_MAX_BODY", DefaultMaxBody),
		Tolerance:      e.Duration("WEBHOOK_TOLERANCE", DefaultTolerance),
		PublishTimeout: e.Duration("PUBLISH_TIMEOUT", DefaultPublishTimeout),
		MaxInflight:    e.Int("WEBHOOK_MAX_INFLIGHT", DefaultMaxInflight),
		InflightWait:   e.Duration("WEBHOOK_INFLIGHT_WAIT", DefaultInflightWait),
		ReadTimeout:    e.Duration("WEBHOOK_READ_TIMEOUT", DefaultReadTimeout),
		SilenceAlert:   e.Duration("WEBHOOK_SILENCE_ALERT", DefaultSilenceAlert),
		Streams:        bus.StreamConfigFromEnv(e),
		Telemetry:      telemetry.ConfigFromEnv(e, ServiceName),
	}
	for _, s := range e.List("STRIPE_WEBHOOK_SECRET") {
		cfg.Secrets = append(cfg.Secrets, config.Secret(s))
	}
	if len(cfg.Secrets) == 0 {
		e.Fail("STRIPE_WEBHOOK_SECRET is required (one signing secret or a comma-separated list)")
	}
	if cfg.SilenceAlert < time.Minute {
		e.Fail("WEBHOOK_SILENCE_ALERT: must be at least 1m, got %s", cfg.SilenceAlert)
	}
	if cfg.MaxBody <= 0 {
		e.Fail("WEBHOOK_MAX_BODY: must be positive, got %d", cfg.MaxBody)
	}
	if cfg.Tolerance <= 0 {
		e.Fail("WEBHOOK_TOLERANCE: must be positive, got %s", cfg.Tolerance)
	}
	if cfg.PublishTimeout <= 0 {
		e.Fail("PUBLISH_TIMEOUT: must be positive, got %s", cfg.PublishTimeout)
	}
	if cfg.MaxInflight <= 0 {
		e.Fail("WEBHOOK_MAX_INFLIGHT: must be positive, got %d", cfg.MaxInflight)
	}
	if cfg.InflightWait <= 0 {
		e.Fail("WEBHOOK_INFLIGHT_WAIT: must be positive, got %s", cfg.InflightWait)
	}
	if cfg.ReadTimeout <= 0 {
		e.Fail("WEBHOOK_READ_TIMEOUT: must be positive, got %s", cfg.ReadTimeout)
	}
	if err := e.Err(); err != nil {
		return Config{}, fmt.Errorf("ingress config: %w", err)
	}
	return cfg, nil
}

// LogValue logs the settings with every secret masked.
func (c Config) LogValue() slog.Value {
	masked := make([]string, len(c.Secrets))
	for i, s := range c.Secrets {
		masked[i] = s.String()
	}
	return slog.GroupValue(
		slog.String("addr", c.Addr),
		slog.String("http_addr", c.HTTPAddr),
		slog.Any("nats", c.NATSURL),
		slog.Any("webhook_secrets", masked),
		slog.String("livemode", c.Livemode),
		slog.Int64("max_body", c.MaxBody),
		slog.String("tolerance", c.Tolerance.String()),
		slog.String("publish_timeout", c.PublishTimeout.String()),
		slog.Int("max_inflight", c.MaxInflight),
		slog.String("inflight_wait", c.InflightWait.String()),
		slog.String("read_timeout", c.ReadTimeout.String()),
		slog.String("otel_endpoint", config.MaskURL(c.Telemetry.Endpoint)),
	)
}

// standbyCheckInterval is how often ingress checks that the standby
// stream is led from another node than the events stream: soon enough
// after a failover that a second node loss finds them apart again.
const standbyCheckInterval = 10 * time.Second

// publisherOptions are the webhook publisher's options. Replicated streams
// have a standby for the seconds an election takes (bus.StreamConfigs):
// ingress offers it what the events stream does not take at once, through
// a second connection kept on another server than the first (so that a
// server that stops answering holds neither), and keeps the standby led
// from another node than the events stream.
func publisherOptions(cfg Config, host *service.Host) ([]bus.PublisherOption, error) {
	opts := []bus.PublisherOption{bus.WithPublisherRegistry(host.Registry)}
	if cfg.Streams.Replicas <= 1 {
		return opts, nil
	}
	nc, err := host.Connect(ServiceName + "-standby")
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("nats %s-standby: %w", ServiceName, err)
	}
	bus.SeparateConnections(host.NC, nc)
	host.Go("standby leader", func(ctx context.Context) error {
		bus.KeepStandbyApart(ctx, host.JS, nc, standbyCheckInterval, host.Log)
		return nil
	})
	return append(opts, bus.WithStandby(js)), nil
}

// Run serves until ctx is done, then stops accepting connections, lets the
// requests in flight finish (their publishes reach a PubAck or a 503), and
// drains the NATS connection. The ops listener answers first, while NATS
// is still being dialled.
func Run(ctx context.Context, cfg Config) error {
	grace := cfg.ShutdownGrace
	if grace <= 0 {
		grace = cfg.PublishTimeout + 10*time.Second
	}
	// The OTel HTTP server metrics stay off (no Telemetry.Registerer):
	// lr_webhook_request_seconds and lr_webhook_requests_total already say
	// it, and recording them twice costs a few percent of the hot path.
	spec := service.Spec{
		Name: ServiceName, Logger: cfg.Logger, Registry: cfg.Registry, Telemetry: cfg.Telemetry, Settings: cfg,
		OpsAddr: cfg.HTTPAddr, NATS: cfg.NATSURL, Streams: cfg.Streams,
		StartTimeout: cfg.StartTimeout, ShutdownGrace: grace, Ready: cfg.Ready,
	}
	return service.Supervise(ctx, spec, func(_ context.Context, host *service.Host) error {
		metrics, err := webhook.NewMetrics(host.Registry)
		if err != nil {
			return fmt.Errorf("metrics: %w", err)
		}
		silence := cfg.SilenceAlert
		if silence <= 0 {
			silence = DefaultSilenceAlert
		}
		metrics.SilenceAlert.Set(silence.Seconds())
		secrets := make([]string, len(cfg.Secrets))
		for i, s := range cfg.Secrets {
			secrets[i] = s.Reveal()
		}
		pubOpts, err := publisherOptions(cfg, host)
		if err != nil {
			return err
		}
		hook := webhook.New(webhook.Config{
			Secrets:        secrets,
			Tolerance:      cfg.Tolerance,
			MaxBody:        cfg.MaxBody,
			Livemode:       cfg.Livemode,
			PublishTimeout: cfg.PublishTimeout,
			RetryAfter:     cfg.PublishTimeout,
			MaxInflight:    cfg.MaxInflight,
			InflightWait:   cfg.InflightWait,
			ReadTimeout:    cfg.ReadTimeout,
		}, bus.NewPublisher(host.JS, host.Telemetry.TracerProvider(), pubOpts...),
			metrics, host.Log, host.Telemetry.Tracer(ServiceName))
		host.ReadyCheck("events_stream", newReadiness(host.NC, host.JS).check)

		// The public listener serves the webhook route, a bare readiness
		// verdict (the ops listener's, without details) for whatever sits
		// in front of it, and a 404 for everything else: liveness, metrics
		// and readiness details stay on the ops listener.
		mux := http.NewServeMux()
		mux.Handle(webhook.Path, traced(host.Telemetry, hook, "POST "+webhook.Path))
		mux.HandleFunc("GET /readyz", host.PublicReady())
		mux.HandleFunc("/", notFound)
		ln, err := host.Listen("webhook", cfg.Addr)
		if err != nil {
			return err
		}
		srv := &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			// A body of MaxBody on a slow link, then the publish.
			ReadTimeout:    30 * time.Second,
			WriteTimeout:   30*time.Second + cfg.PublishTimeout,
			IdleTimeout:    2 * time.Minute,
			MaxHeaderBytes: 64 << 10,
			ErrorLog:       slog.NewLogLogger(host.Log.Handler(), slog.LevelWarn),
		}
		// Stopping finishes the requests in flight before NATS drains:
		// every request that got a 200 had its PubAck already, and one
		// that is mid-publish is not cut.
		host.Go("webhook server", func(ctx context.Context) error { return httpserver.Serve(ctx, srv, ln, grace) })
		return nil
	})
}

var notFoundBody = []byte(`{"error":"not found: Stripe webhooks go to POST ` + webhook.Path + `"}` + "\n")

func notFound(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusNotFound)
	_, _ = w.Write(notFoundBody)
}
