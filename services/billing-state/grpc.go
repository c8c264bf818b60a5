package billingstate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/launchready/launchready/pkg/httpserver"
	"github.com/launchready/launchready/pkg/service"
	"github.com/launchready/launchready/pkg/stripeapi"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/admin"
	"github.com/launchready/launchready/services/billing-state/internal/display"
	"github.com/launchready/launchready/services/billing-state/internal/drift"
	"github.com/launchready/launchready/services/billing-state/internal/endpoint"
	"github.com/launchready/launchready/services/billing-state/internal/grpcapi"
	"github.com/launchready/launchready/services/billing-state/internal/relay"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/services/billing-state/internal/statuspage"
)

// serveGRPC starts BillingStatusService (grpcapi.New: its limits, TLS and
// reflection), gRPC health on GRPC_ADDR, and a watch that keeps the health
// status in step with what the API serves from. The API reads through a
// pool of its own, so callers never wait for the consumer's connections nor
// the consumer for theirs, and Watch subscribes on a NATS connection of its
// own, so whatever a watcher causes there leaves the consumer's alone;
// closed for good, that connection fails /readyz and Watch answers
// Unavailable, while the consumer and the relay carry on. At shutdown the
// server stops first, gracefully: it reports NOT_SERVING, ends the watch
// streams and lets unary calls finish; then the connection and the pool.
func serveGRPC(host *service.Host, cfg Config, rl *relay.Relay, api *stripeapi.Client) error {
	ln, err := host.Listen("grpc", cfg.GRPCAddr)
	if err != nil {
		return err
	}
	apiPool, err := host.OpenPool(Durable+"-api", cfg.GRPC.DBMaxConns)
	if err != nil {
		return err
	}
	watchNC, err := host.Connect(Durable + "-watch")
	if err != nil {
		return err
	}
	stopWatch := make(chan struct{})
	store := state.New(apiPool, state.Options{Policy: cfg.Policy, Logger: host.Log, OutboxWritten: rl.Kick})
	portalOpener := newPortalOpener(host, cfg, api)
	viewer := newViewer(cfg, store)
	signer := statuspage.NewSigner(cfg.StatusLinkSecrets, cfg.StatusLinkMaxTTL, nil)
	if err := serveStatusPage(host, cfg, signer, viewer, store, watchNC, portalOpener); err != nil {
		return err
	}
	// Staff actions go to Stripe with the server's key, through the same
	// client (and rate budget) as the portal, the fetches and the drift
	// check; without a key, BillingAdminService refuses every action.
	var stripeClient admin.Stripe
	if api != nil {
		stripeClient = api
	}
	opts := grpcapi.Options{
		Store: store, Display: viewer, Portal: portalOpener, ReturnURLs: cfg.ReturnURLs,
		StatusLinks: signer, StatusPageURL: cfg.StatusPageURL,
		Admin:     admin.New(apiPool, stripeClient),
		WatchConn: watchNC, Tokens: cfg.Tokens, Logger: host.Log, Registry: host.Registry,
		StatsHandler: host.Telemetry.GRPCServerHandler(), Stop: stopWatch,
	}
	if api != nil {
		// The drift check and its repairs write through the API's pool,
		// as ReconcileCustomer does: the consumer's stays the consumer's.
		checker, err := drift.New(api, store, host.Registry, host.Log)
		if err != nil {
			return err
		}
		opts.Drift = checker
		if cfg.DriftCheckInterval > 0 {
			host.Go("drift check", func(ctx context.Context) error { return checker.Schedule(ctx, cfg.DriftCheckInterval) })
		}
		if cfg.EndpointCheckInterval > 0 {
			watcher, err := endpoint.New(api, cfg.PublicWebhookURL, host.Registry, host.Log)
			if err != nil {
				return err
			}
			host.Go("webhook endpoint check", func(ctx context.Context) error { return watcher.Schedule(ctx, cfg.EndpointCheckInterval) })
		}
	}
	srv, err := grpcapi.New(cfg.GRPC, opts)
	if err != nil {
		return err
	}
	hs := health.NewServer()
	healthpb.RegisterHealthServer(srv, hs)
	setHealth(hs, false)

	host.Go("grpc server", func(ctx context.Context) error {
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		select {
		case err := <-served:
			return fmt.Errorf("grpc serve: %w", err)
		case <-ctx.Done():
		}
		setHealth(hs, false)
		close(stopWatch)
		stopGRPC(srv, cfg.ShutdownGrace)
		if err := <-served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			return fmt.Errorf("grpc serve: %w", err)
		}
		return nil
	})
	host.Go("grpc health", func(ctx context.Context) error {
		watchHealth(ctx, hs, apiPool, watchNC)
		return nil
	})
	return nil
}

func stopGRPC(srv *grpc.Server, grace time.Duration) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		srv.Stop()
		<-done
	}
}

// serviceName is the health service name of BillingStatusService.
var serviceName = billingv1.BillingStatusService_ServiceDesc.ServiceName

func setHealth(hs *health.Server, ok bool) {
	st := healthpb.HealthCheckResponse_NOT_SERVING
	if ok {
		st = healthpb.HealthCheckResponse_SERVING
	}
	hs.SetServingStatus("", st)
	hs.SetServingStatus(serviceName, st)
}

// watchHealth reports SERVING only while the API's pool reaches Postgres
// and its watch connection is connected.
func watchHealth(ctx context.Context, hs *health.Server, pool *pgxpool.Pool, nc *nats.Conn) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		ok := pool.Ping(pctx) == nil && nc.IsConnected()
		cancel()
		if ctx.Err() != nil {
			return
		}
		setHealth(hs, ok)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// newViewer is the display viewer of the gRPC API and the status page.
func newViewer(cfg Config, store *state.Store) *display.Viewer {
	return &display.Viewer{Catalogues: cfg.Catalogues, StaleAfter: cfg.StaleAfter, Facts: store.DisplayFacts}
}

// newPortalOpener is the Stripe client of CreatePortalSession, or nil
// without STRIPE_API_KEY (the call then answers FailedPrecondition).
func newPortalOpener(host *service.Host, cfg Config, api *stripeapi.Client) grpcapi.PortalOpener {
	switch {
	case api == nil && cfg.ReturnURLs.Len() > 0:
		host.Log.Warn("PORTAL_RETURN_URLS is set but STRIPE_API_KEY is not: CreatePortalSession will be refused")
		return nil
	case api == nil:
		return nil
	case cfg.ReturnURLs.Len() == 0:
		host.Log.Warn("PORTAL_RETURN_URLS is empty: every CreatePortalSession will be refused")
	}
	return api
}

// serveStatusPage serves the hosted status page on STATUS_PAGE_ADDR, when
// set: a public listener of its own, apart from the ops and gRPC ones. Its
// event streams ride the Watch connection and end when the service stops.
func serveStatusPage(host *service.Host, cfg Config, signer *statuspage.Signer, viewer *display.Viewer, store *state.Store, nc *nats.Conn, opener grpcapi.PortalOpener) error {
	if cfg.StatusPageAddr == "" {
		return nil
	}
	// The page's action button opens the billing portal, which leads back
	// to the page: PORTAL_RETURN_URLS must allow STATUS_PAGE_URL/s/.
	var portal statuspage.PortalOpener
	switch back := strings.TrimSuffix(cfg.StatusPageURL, "/") + "/s/cus_x.1.x"; {
	case opener == nil:
		host.Log.Warn("the status page shows no portal button: STRIPE_API_KEY is not set")
	case !cfg.ReturnURLs.Allows(back):
		host.Log.Warn("the status page shows no portal button: PORTAL_RETURN_URLS does not allow STATUS_PAGE_URL/s/", "status_page_url", cfg.StatusPageURL)
	default:
		portal = opener
	}
	ln, err := host.Listen("status page", cfg.StatusPageAddr)
	if err != nil {
		return err
	}
	stop := make(chan struct{})
	h := statuspage.Handler(statuspage.Options{Signer: signer, Viewer: viewer, Changes: nc, Logger: host.Log,
		Portal: portal, ReturnURLs: cfg.ReturnURLs, PageURL: cfg.StatusPageURL,
		Status: func(ctx context.Context, id string) (*billingv1.CustomerStatus, error) {
			st, err := store.Status(ctx, id)
			if errors.Is(err, state.ErrNotFound) {
				return nil, statuspage.ErrNotFound
			}
			return st, err
		}}, stop)
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute, MaxHeaderBytes: 16 << 10}
	host.Go("status page", func(ctx context.Context) error {
		context.AfterFunc(ctx, func() { close(stop) })
		return httpserver.Serve(ctx, srv, ln, cfg.ShutdownGrace)
	})
	return nil
}
