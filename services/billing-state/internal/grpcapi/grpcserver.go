package grpcapi

import (
	"errors"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/stats"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/admin"
	"github.com/launchready/launchready/services/billing-state/internal/display"
	"github.com/launchready/launchready/services/billing-state/internal/portal"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/services/billing-state/internal/statuspage"
)

// Defaults of Config.
const (
	DefaultMaxStreams       = 1000
	DefaultMaxWatchPerToken = 1000
	DefaultUnaryTimeout     = 5 * time.Second
	DefaultDBMaxConns       = 4
)

// Config bounds what callers of the gRPC API may hold. The zero value
// means the defaults.
type Config struct {
	// TLSCert and TLSKey are PEM files (GRPC_TLS_CERT, GRPC_TLS_KEY), both
	// or neither. Without them the server speaks plaintext, for a mesh or
	// a loopback; with them it reads the files again when they change.
	TLSCert, TLSKey string
	// MaxStreams caps the concurrent calls on one connection
	// (GRPC_MAX_STREAMS, HTTP/2 MAX_CONCURRENT_STREAMS).
	MaxStreams uint32
	// MaxWatchPerToken caps the Watch streams one token holds open on one
	// replica, over all its connections (GRPC_MAX_WATCH_PER_TOKEN); past
	// it, ResourceExhausted.
	MaxWatchPerToken int
	// UnaryTimeout is the longest a unary call runs, whatever deadline the
	// client sets (GRPC_UNARY_TIMEOUT).
	UnaryTimeout time.Duration
	// DBMaxConns sizes the Postgres pool that serves the API
	// (GRPC_DB_MAX_CONNS), apart from the consumer's.
	DBMaxConns int32
}

// ConfigFromEnv reads GRPC_TLS_CERT, GRPC_TLS_KEY, GRPC_MAX_STREAMS,
// GRPC_MAX_WATCH_PER_TOKEN, GRPC_UNARY_TIMEOUT and GRPC_DB_MAX_CONNS,
// recording every problem in e.
func ConfigFromEnv(e *config.Env) Config {
	c := Config{
		TLSCert:          e.String("GRPC_TLS_CERT", ""),
		TLSKey:           e.String("GRPC_TLS_KEY", ""),
		MaxWatchPerToken: e.Int("GRPC_MAX_WATCH_PER_TOKEN", DefaultMaxWatchPerToken),
		UnaryTimeout:     e.Duration("GRPC_UNARY_TIMEOUT", DefaultUnaryTimeout),
	}
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		e.Fail("GRPC_TLS_CERT and GRPC_TLS_KEY: set both or neither")
	case c.TLS():
		// Read the pair now, so a bad one is a configuration error at
		// start; Run reads it again.
		if _, err := loadKeyPair(c.TLSCert, c.TLSKey, logging.Discard()); err != nil {
			e.Fail("%v", err)
		}
	}
	if n := e.Int64("GRPC_MAX_STREAMS", DefaultMaxStreams); n < 1 || n > 1<<31 {
		e.Fail("GRPC_MAX_STREAMS: %d is not between 1 and 2^31", n)
	} else {
		c.MaxStreams = uint32(n)
	}
	if c.MaxWatchPerToken < 1 {
		e.Fail("GRPC_MAX_WATCH_PER_TOKEN: must be positive")
	}
	if c.UnaryTimeout <= 0 {
		e.Fail("GRPC_UNARY_TIMEOUT: must be positive")
	}
	if n := e.Int("GRPC_DB_MAX_CONNS", DefaultDBMaxConns); n < 1 || n > 1000 {
		e.Fail("GRPC_DB_MAX_CONNS: %d is not between 1 and 1000", n)
	} else {
		c.DBMaxConns = int32(n)
	}
	return c
}

// WithDefaults fills what is unset.
func (c Config) WithDefaults() Config {
	if c.MaxStreams == 0 {
		c.MaxStreams = DefaultMaxStreams
	}
	if c.MaxWatchPerToken <= 0 {
		c.MaxWatchPerToken = DefaultMaxWatchPerToken
	}
	if c.UnaryTimeout <= 0 {
		c.UnaryTimeout = DefaultUnaryTimeout
	}
	if c.DBMaxConns <= 0 {
		c.DBMaxConns = DefaultDBMaxConns
	}
	return c
}

// TLS reports whether the server is configured to speak TLS.
func (c Config) TLS() bool { return c.TLSCert != "" }

// Options are what New needs besides the configuration.
type Options struct {
	// Store serves the calls; give it a pool of its own, so callers never
	// wait for the consumer's connections nor the consumer for theirs.
	Store *state.Store
	// Display attaches the customer-facing display to every status served.
	Display *display.Viewer
	// Portal opens billing portal sessions; nil without STRIPE_API_KEY,
	// when CreatePortalSession answers FailedPrecondition.
	Portal PortalOpener
	// ReturnURLs is PORTAL_RETURN_URLS.
	ReturnURLs portal.ReturnURLs
	// StatusLinks signs CreateStatusLink's links (STATUS_LINK_SECRETS) to
	// the page at StatusPageURL; without both the call is refused.
	StatusLinks   *statuspage.Signer
	StatusPageURL string
	// WatchConn carries the status changes Watch forwards (core NATS on
	// billing.status.<customer>, so every replica sees every change). It
	// must be a connection of its own: whatever a watcher causes on it,
	// the consumer's connection is not involved.
	WatchConn *nats.Conn
	Tokens    *Tokens
	Logger    *slog.Logger
	// Registry, when set, gets the Watch stream metrics.
	Registry prometheus.Registerer
	// StatsHandler, when set, traces the calls.
	StatsHandler stats.Handler
	// Admin makes BillingAdminService's actions; nil serves the service
	// refusing every action (no Stripe key).
	Admin *admin.Service
	// Stop, when closed, ends every Watch stream, so that a graceful stop
	// does not wait for clients that would stay forever.
	Stop <-chan struct{}
	// Drift, when set (a Stripe API key is configured), serves CheckDrift
	// and ReconcileCustomer's from_stripe.
	Drift Drift
}

// New returns the gRPC server of BillingStatusService with cfg's limits,
// and reflection (for grpcurl). The caller registers health and serves it.
func New(cfg Config, o Options) (*grpc.Server, error) {
	cfg = cfg.WithDefaults()
	if o.Logger == nil {
		o.Logger = logging.Discard()
	}
	if o.Store == nil || o.WatchConn == nil || o.Display == nil {
		return nil, errors.New("grpc server: a store, a display viewer and a watch connection are required")
	}
	svc := newServer(o, cfg)
	svc.drift = o.Drift
	if o.Registry != nil {
		svc.registerMetrics(o.Registry)
	}
	opts := []grpc.ServerOption{
		grpc.MaxConcurrentStreams(cfg.MaxStreams),
		grpc.MaxRecvMsgSize(MaxRecvMsgBytes),
		grpc.MaxHeaderListSize(MaxHeaderListBytes),
		// Watch streams live long: find dead clients instead of keeping
		// their subscriptions forever, and close connections idle for long.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second, MaxConnectionIdle: 15 * time.Minute}),
		// A client that pings more often than every 10 s is cut off
		// (GOAWAY "too_many_pings") instead of keeping the server busy.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		// The deadline first, so that nothing after it runs unbounded;
		// the token before any look at the request.
		grpc.ChainUnaryInterceptor(unaryDeadline(cfg.UnaryTimeout), o.Tokens.UnaryInterceptor(), unaryBounds),
		grpc.ChainStreamInterceptor(o.Tokens.StreamInterceptor(), streamBounds),
	}
	if o.StatsHandler != nil {
		opts = append(opts, grpc.StatsHandler(o.StatsHandler))
	}
	if cfg.TLS() {
		kp, err := loadKeyPair(cfg.TLSCert, cfg.TLSKey, o.Logger)
		if err != nil {
			return nil, err
		}
		opts = append(opts, grpc.Creds(credentials.NewTLS(kp.tlsConfig())))
	}
	gsrv := grpc.NewServer(opts...)
	billingv1.RegisterBillingStatusServiceServer(gsrv, svc)
	adm := o.Admin
	if adm == nil {
		adm = admin.New(o.Store.Pool(), nil)
	}
	billingv1.RegisterBillingAdminServiceServer(gsrv, &adminServer{svc: adm})
	reflection.Register(gsrv)
	return gsrv, nil
}
