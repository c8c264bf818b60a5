package console

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/launchready/launchready/pkg/billingclient"
	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/httpserver"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/redact"
	"github.com/launchready/launchready/pkg/service"
	"github.com/launchready/launchready/pkg/stripeapi"
	"github.com/launchready/launchready/pkg/telemetry"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/console/internal/auth"
	"github.com/launchready/launchready/services/console/internal/jaeger"
	"github.com/launchready/launchready/services/console/internal/policy"
	"github.com/launchready/launchready/services/console/internal/store"
	"github.com/launchready/launchready/services/console/internal/web"
	"github.com/launchready/launchready/services/console/internal/webhookrates"
)

// ServiceName names the service in logs, traces, metrics and its NATS
// user.
const ServiceName = "console"

// Defaults.
const (
	DefaultAddr     = "127.0.0.1:8090"
	DefaultHTTPAddr = ":8085"
)

// sweepEvery is how often ended sessions are removed from the table.
const sweepEvery = 10 * time.Minute

// Config is everything Run needs.
type Config struct {
	// Addr is CONSOLE_ADDR, where staff reach the console. Cookies are
	// Secure unless it is a loopback address (a laptop, no TLS).
	Addr string
	// HTTPAddr is HTTP_ADDR: /healthz, /readyz and /metrics.
	HTTPAddr    string
	NATSURL     bus.ConnConfig
	DatabaseURL string
	Streams     bus.StreamConfig
	Telemetry   telemetry.Config
	// SessionIdle is CONSOLE_SESSION_IDLE and SessionMax
	// CONSOLE_SESSION_MAX: a session ends after that long unused, and that
	// long after sign-in.
	SessionIdle time.Duration
	SessionMax  time.Duration
	// OIDC is the identity provider's sign-in (CONSOLE_OIDC_*); off when
	// CONSOLE_OIDC_ISSUER is empty, leaving the local accounts alone.
	OIDC auth.OIDCConfig
	// Billing reaches billing-state's gRPC API: CONSOLE_BILLING_GRPC_ADDR,
	// CONSOLE_BILLING_GRPC_TOKEN (a STATUS_API_TOKENS token of billing-state)
	// and CONSOLE_BILLING_GRPC_TLS.
	Billing BillingConfig
	// PolicyFile is CONSOLE_POLICY, a YAML file of refund caps per role
	// and what waits for a second staff member; Policy is it, read.
	PolicyFile string
	Policy     policy.Policy
	// Stripe is STRIPE_API_KEY and the other STRIPE_API_* settings: with a
	// key, the customer page shows Stripe's own view, fetched live.
	Stripe stripeapi.Config
	// JaegerURL is CONSOLE_JAEGER_URL, Jaeger's query service (its UI is
	// served beside its API): the trace view reads /api/traces/{id} there.
	JaegerURL string
	// JaegerUIURL is CONSOLE_JAEGER_UI_URL, where staff's browsers reach
	// Jaeger's UI, when that is not JaegerURL (an in-cluster address).
	JaegerUIURL string
	// OpsTargets is CONSOLE_OPS_TARGETS: the services' ops listeners
	// (host:port, comma separated), whose health and build the overview
	// shows.
	OpsTargets []string
	// PrometheusURL is CONSOLE_PROMETHEUS_URL, a Prometheus that loads the
	// alert rules: the overview's webhook failure rate and weekly
	// duplicates are its recorded series, the numbers the alerts see.
	// Without it the console samples the ops listeners' counters itself.
	PrometheusURL string

	StartTimeout time.Duration
	Logger       *slog.Logger
	// Ready, when set, is called once with {"http": ops address,
	// "console": the console's address} when it serves.
	Ready    func(addrs map[string]string)
	Registry *prometheus.Registry
	// Now is the clock of sessions and sign-in throttling (tests).
	Now func() time.Time
}

// BillingConfig is how the console calls billing-state.
type BillingConfig struct {
	Addr  string
	Token config.Secret
	TLS   bool
}

// DefaultBillingAddr is billing-state's gRPC address in development.
const DefaultBillingAddr = "127.0.0.1:9090"

// WithLogger returns the configuration with its logs going to log.
func (c Config) WithLogger(log *slog.Logger) Config {
	c.Logger = log
	return c
}

// ConfigFromEnv reads CONSOLE_ADDR, HTTP_ADDR, NATS_URL (and its
// credentials), DATABASE_URL, the NATS_* stream settings, OTEL_*,
// CONSOLE_SESSION_IDLE, CONSOLE_SESSION_MAX, the CONSOLE_OIDC_* settings
// CONSOLE_BILLING_GRPC_*, CONSOLE_POLICY, CONSOLE_JAEGER_URL,
// CONSOLE_JAEGER_UI_URL, CONSOLE_OPS_TARGETS and CONSOLE_PROMETHEUS_URL.
func ConfigFromEnv(getenv config.Getenv) (Config, error) {
	e := config.New(getenv)
	cfg := Config{
		Addr:          e.String("CONSOLE_ADDR", DefaultAddr),
		HTTPAddr:      e.String("HTTP_ADDR", DefaultHTTPAddr),
		NATSURL:       bus.ConnConfigFromEnv(e, ServiceName),
		DatabaseURL:   e.String("DATABASE_URL", pg.DefaultURL),
		Streams:       bus.StreamConfigFromEnv(e),
		Telemetry:     telemetry.ConfigFromEnv(e, ServiceName),
		SessionIdle:   e.Duration("CONSOLE_SESSION_IDLE", web.DefaultSessionIdle),
		SessionMax:    e.Duration("CONSOLE_SESSION_MAX", web.DefaultSessionMax),
		Stripe:        stripeapi.ConfigFromEnv(e),
		JaegerURL:     e.String("CONSOLE_JAEGER_URL", ""),
		JaegerUIURL:   e.String("CONSOLE_JAEGER_UI_URL", ""),
		OpsTargets:    e.List("CONSOLE_OPS_TARGETS"),
		PrometheusURL: e.String("CONSOLE_PROMETHEUS_URL", ""),
		Billing: BillingConfig{
			Addr:  e.String("CONSOLE_BILLING_GRPC_ADDR", DefaultBillingAddr),
			Token: e.Secret("CONSOLE_BILLING_GRPC_TOKEN"),
			TLS:   e.Bool("CONSOLE_BILLING_GRPC_TLS", false),
		},
	}
	if cfg.SessionIdle <= 0 || cfg.SessionMax <= 0 {
		e.Fail("CONSOLE_SESSION_IDLE and CONSOLE_SESSION_MAX must be positive")
	} else if cfg.SessionIdle > cfg.SessionMax {
		e.Fail("CONSOLE_SESSION_IDLE (%s) is longer than CONSOLE_SESSION_MAX (%s)", cfg.SessionIdle, cfg.SessionMax)
	}
	cfg.OIDC = oidcFromEnv(e, cfg.Addr)
	cfg.PolicyFile = e.Lookup("CONSOLE_POLICY")
	if p, err := policy.Load(cfg.PolicyFile); err != nil {
		e.Fail("%v", err)
	} else {
		cfg.Policy = p
	}
	if err := e.Err(); err != nil {
		return Config{}, fmt.Errorf("console config: %w", err)
	}
	return cfg, nil
}

// LogValue logs the settings with every secret masked.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("console_addr", c.Addr),
		slog.String("http_addr", c.HTTPAddr),
		slog.Any("nats", c.NATSURL),
		slog.String("database_url", config.MaskURL(c.DatabaseURL)),
		slog.Bool("secure_cookies", SecureCookies(c.Addr)),
		slog.Duration("session_idle", c.SessionIdle),
		slog.Duration("session_max", c.SessionMax),
		slog.String("billing_grpc_addr", c.Billing.Addr),
		slog.Any("billing_grpc_token", c.Billing.Token),
		slog.Bool("billing_grpc_tls", c.Billing.TLS),
		slog.String("policy", c.PolicyFile),
		slog.Any("stripe", c.Stripe),
		slog.String("jaeger_url", config.MaskURL(c.JaegerURL)),
		slog.String("jaeger_ui_url", config.MaskURL(c.JaegerUIURL)),
		slog.Any("ops_targets", c.OpsTargets),
		slog.String("prometheus_url", config.MaskURL(c.PrometheusURL)),
		slog.String("otel_endpoint", config.MaskURL(c.Telemetry.Endpoint)),
		slog.String("oidc_issuer", c.OIDC.Issuer),
		slog.String("oidc_client_id", c.OIDC.ClientID),
		slog.String("oidc_client_secret", config.Mask(c.OIDC.ClientSecret)),
		slog.String("oidc_allowed_domain", c.OIDC.AllowedDomain),
		slog.String("oidc_redirect_url", c.OIDC.RedirectURL),
	)
}

// oidcFromEnv reads CONSOLE_OIDC_ISSUER, CONSOLE_OIDC_CLIENT_ID,
// CONSOLE_OIDC_CLIENT_SECRET, CONSOLE_OIDC_ALLOWED_DOMAIN,
// CONSOLE_OIDC_ROLE_MAP ("group=role,...") and CONSOLE_OIDC_REDIRECT_URL
// (on a loopback CONSOLE_ADDR, http://CONSOLE_ADDR/login/oidc/callback
// by default).
func oidcFromEnv(e *config.Env, addr string) auth.OIDCConfig {
	c := auth.OIDCConfig{Issuer: e.Lookup("CONSOLE_OIDC_ISSUER")}
	if !c.Enabled() {
		return c
	}
	c.ClientID = e.Require("CONSOLE_OIDC_CLIENT_ID")
	c.ClientSecret = e.Secret("CONSOLE_OIDC_CLIENT_SECRET").Reveal()
	if c.ClientSecret == "" {
		e.Fail("CONSOLE_OIDC_CLIENT_SECRET is required with CONSOLE_OIDC_ISSUER")
	}
	c.AllowedDomain = strings.TrimPrefix(e.Require("CONSOLE_OIDC_ALLOWED_DOMAIN"), "@")
	roles, err := auth.ParseRoleMap(e.Lookup("CONSOLE_OIDC_ROLE_MAP"))
	if err != nil {
		e.Fail("CONSOLE_OIDC_ROLE_MAP: %v", err)
	}
	c.RoleMap = roles
	def := ""
	if !SecureCookies(addr) {
		def = "http://" + addr + "/login/oidc/callback"
	}
	c.RedirectURL = e.String("CONSOLE_OIDC_REDIRECT_URL", def)
	if c.RedirectURL == "" {
		e.Fail("CONSOLE_OIDC_REDIRECT_URL is required with CONSOLE_OIDC_ISSUER outside loopback (https://<console>/login/oidc/callback)")
	}
	return c
}

// SecureCookies reports whether the console at addr must mark its cookies
// Secure: everywhere but on a loopback address, where a browser reaches it
// over plain HTTP on the same machine.
func SecureCookies(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return true
	}
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// Run serves the console until ctx ends.
func Run(ctx context.Context, cfg Config) error {
	spec := service.Spec{
		Name: ServiceName, Logger: cfg.Logger, Registry: cfg.Registry, Telemetry: cfg.Telemetry, Settings: cfg,
		OpsAddr: cfg.HTTPAddr, NATS: cfg.NATSURL, Streams: cfg.Streams,
		Database:     &service.Database{URL: cfg.DatabaseURL, MaxConns: 10, Migrate: store.Migrate},
		StartTimeout: cfg.StartTimeout, Ready: cfg.Ready,
	}
	return service.Supervise(ctx, spec, func(_ context.Context, host *service.Host) error {
		billing, err := dialBilling(host, cfg.Billing)
		if err != nil {
			return err
		}
		// Other services' schemas are read as the role they granted
		// SELECT to, never as the console's own login.
		reader, err := host.OpenPool(ServiceName+"-reader", 4, pg.WithRole(pg.ConsoleReaderRole))
		if err != nil {
			return err
		}
		var stripe *stripeapi.Client
		if cfg.Stripe.Configured() {
			if stripe, err = stripeapi.New(cfg.Stripe); err != nil {
				return fmt.Errorf("stripe: %w", err)
			}
		}
		var traces *jaeger.Client
		if cfg.JaegerURL != "" {
			traces = &jaeger.Client{Base: cfg.JaegerURL, UI: cfg.JaegerUIURL, HTTP: &http.Client{Timeout: 10 * time.Second,
				Transport: host.Telemetry.HTTPTransport(http.DefaultTransport)}}
		}
		ui, err := web.New(web.Options{
			Pool: host.Pool, Log: host.Log, SecureCookies: SecureCookies(cfg.Addr),
			SessionIdle: cfg.SessionIdle, SessionMax: cfg.SessionMax, Throttle: auth.DefaultThrottle, Now: cfg.Now,
			JS: host.JS, OIDC: oidcFlow(cfg.OIDC), Billing: billing, Policy: cfg.Policy, Reader: reader, Stripe: stripe, Jaeger: traces, OpsTargets: cfg.OpsTargets,
			Webhooks: webhookFigures(host, cfg),
		})
		if err != nil {
			return err
		}
		ln, err := host.Listen("console", cfg.Addr)
		if err != nil {
			return fmt.Errorf("console: %w", err)
		}
		srv := &http.Server{
			Handler:           host.Telemetry.HTTPHandler(ui, "console"),
			ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute,
			MaxHeaderBytes: 32 << 10,
		}
		host.Go("session sweeper", func(ctx context.Context) error {
			sweepSessions(ctx, host, cfg)
			return nil
		})
		host.Go("console server", func(ctx context.Context) error { return httpserver.Serve(ctx, srv, ln, 10*time.Second) })
		return nil
	})
}

// sampleEvery is how often the console reads the ops listeners' counters
// when there is no Prometheus to ask.
const sampleEvery = 30 * time.Second

// webhookFigures is where the overview reads the webhook failure rate and
// the week's duplicates: Prometheus' recorded series when
// CONSOLE_PROMETHEUS_URL is set, else the console's own samples of the ops
// listeners; nil when it has neither.
func webhookFigures(host *service.Host, cfg Config) webhookrates.Source {
	hc := &http.Client{Timeout: 5 * time.Second}
	switch {
	case cfg.PrometheusURL != "":
		return &webhookrates.Prometheus{Base: cfg.PrometheusURL, HTTP: hc, Now: cfg.Now}
	case len(cfg.OpsTargets) > 0:
		s := &webhookrates.Sampler{Targets: cfg.OpsTargets, HTTP: hc, Now: cfg.Now}
		host.Go("webhook sampler", func(ctx context.Context) error {
			s.Run(ctx, sampleEvery)
			return nil
		})
		return s
	}
	return nil
}

func oidcFlow(c auth.OIDCConfig) *auth.OIDC {
	if !c.Enabled() {
		return nil
	}
	return auth.NewOIDC(c, &http.Client{Timeout: 10 * time.Second})
}

// sweepSessions removes ended sessions now and then; a session past its
// limits is refused whether or not it is still in the table.
func sweepSessions(ctx context.Context, host *service.Host, cfg Config) {
	t := time.NewTicker(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		if cfg.Now != nil {
			now = cfg.Now()
		}
		if _, err := store.DeleteExpiredSessions(ctx, host.Pool, now, now.Add(-cfg.SessionIdle)); err != nil && ctx.Err() == nil {
			host.Log.WarnContext(ctx, "sweep sessions", "error", redact.Error(err))
		}
	}
}

// dialBilling connects to billing-state's gRPC API, traced, with the
// console's token on every call. Without a token there is no client: the
// pages that read billing say so instead of failing each call.
func dialBilling(host *service.Host, cfg BillingConfig) (*web.Billing, error) {
	if cfg.Token == "" {
		host.Log.Warn("CONSOLE_BILLING_GRPC_TOKEN is empty: customer pages will not show billing state")
		return nil, nil
	}
	conn, err := billingclient.Dial(cfg.Addr, cfg.TLS, billingclient.Bearer(cfg.Token.Reveal()),
		grpc.WithStatsHandler(telemetry.GRPCClientHandler(host.Telemetry.TracerProvider())))
	if err != nil {
		return nil, fmt.Errorf("billing-state at %s: %w", cfg.Addr, err)
	}
	host.Go("billing-state connection", func(ctx context.Context) error {
		<-ctx.Done()
		return conn.Close()
	})
	return &web.Billing{Status: billingv1.NewBillingStatusServiceClient(conn), Admin: billingv1.NewBillingAdminServiceClient(conn)}, nil
}
