package grpcapi

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/admin"
	"github.com/launchready/launchready/services/billing-state/internal/display"
	"github.com/launchready/launchready/services/billing-state/internal/portal"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/services/billing-state/internal/statuspage"
)

// bundle is the gRPC server of New on a loopback port, backed by a fresh
// database and a real embedded NATS server.
type bundle struct {
	t         *testing.T
	addr      string
	pool      *pgxpool.Pool
	watchConn *nats.Conn
	// publisher is a separate connection, as the relay's would be.
	publisher   *nats.Conn
	reg         *prometheus.Registry
	read, admin string
	store       *state.Store
	// clock is the display's; a test may set it before its calls.
	clock *clock
}

// clock is the time a test sets, or the real time until it sets one.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t.IsZero() {
		return time.Now()
	}
	return c.t
}

// setupOptions shape a bundle.
type setupOptions struct {
	cfg Config
	// poolSize sizes the API pool (default 4).
	poolSize int32
	// staleAfter is STATUS_STALE_AFTER (default 5m).
	staleAfter time.Duration
	// policy is the store's (PAST_DUE_ENTITLED off when zero).
	policy canonical.Policy
	// portal and returnURLs serve CreatePortalSession.
	portal     PortalOpener
	returnURLs portal.ReturnURLs
	// stripe makes BillingAdminService's actions (none when nil).
	stripe admin.Stripe
	// statusLinks and statusPageURL serve CreateStatusLink.
	statusLinks   *statuspage.Signer
	statusPageURL string
}

func setup(t *testing.T, o setupOptions) *bundle {
	t.Helper()
	t.Parallel() // each test has its own server, database and broker
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := &bundle{t: t, reg: prometheus.NewRegistry(),
		read: "read-" + strings.Repeat("r", MinTokenLength), admin: "admin-" + strings.Repeat("a", MinTokenLength)}
	tokens, err := ParseTokens("mobile=" + b.read + ":read,ops=" + b.admin + ":admin")
	if err != nil {
		t.Fatal(err)
	}
	if o.poolSize == 0 {
		o.poolSize = 4
	}
	b.pool, err = pg.Open(ctx, pgtest.NewDatabase(t), pg.WithMaxConns(o.poolSize))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.pool.Close)
	if err := state.Migrate(ctx, b.pool); err != nil {
		t.Fatal(err)
	}
	ns := natstest.Start(t)
	// Both as billing-state's user: it watches and publishes status changes.
	b.watchConn, _, err = bus.Connect(ctx, ns.Conn(natsauth.BillingState), "watch", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.watchConn.Close)
	b.publisher, _, err = bus.Connect(ctx, ns.Conn(natsauth.BillingState), "publisher", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.publisher.Close)

	stop := make(chan struct{})
	store := state.New(b.pool, state.Options{Policy: o.policy})
	cats, err := display.Load("")
	if err != nil {
		t.Fatal(err)
	}
	b.store, b.clock = store, &clock{}
	viewer := &display.Viewer{Catalogues: cats, Facts: store.DisplayFacts, StaleAfter: o.staleAfter, Now: b.clock.now}
	gsrv, err := New(o.cfg, Options{Store: store, Display: viewer, Portal: o.portal, ReturnURLs: o.returnURLs,
		StatusLinks: o.statusLinks, StatusPageURL: o.statusPageURL, WatchConn: b.watchConn, Tokens: tokens, Registry: b.reg, Stop: stop,
		Admin: admin.New(b.pool, o.stripe)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b.addr = ln.Addr().String()
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = gsrv.Serve(ln)
	}()
	t.Cleanup(func() {
		close(stop)
		gsrv.Stop()
		<-served
	})
	return b
}

// client is a plaintext connection of its own (one HTTP/2 connection).
func (b *bundle) client() billingv1.BillingStatusServiceClient {
	return billingv1.NewBillingStatusServiceClient(b.conn(grpc.WithTransportCredentials(insecure.NewCredentials())))
}

// tlsClient connects with TLS, trusting cfg's roots.
func (b *bundle) tlsClient(cfg *tls.Config) billingv1.BillingStatusServiceClient {
	return billingv1.NewBillingStatusServiceClient(b.conn(grpc.WithTransportCredentials(credentials.NewTLS(cfg))))
}

func (b *bundle) conn(opts ...grpc.DialOption) *grpc.ClientConn {
	b.t.Helper()
	cc, err := grpc.NewClient(b.addr, opts...)
	if err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { _ = cc.Close() })
	return cc
}

// as returns ctx carrying token as the bearer.
func as(ctx context.Context, token string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
}

// openWatch opens a Watch stream as token and waits for its first message
// (the current status), which it returns.
func openWatch(ctx context.Context, c billingv1.BillingStatusServiceClient, token, id string) (billingv1.BillingStatusService_WatchCustomerStatusClient, *billingv1.CustomerStatus, error) {
	st, err := c.WatchCustomerStatus(as(ctx, token), &billingv1.WatchCustomerStatusRequest{CustomerId: id})
	if err != nil {
		return nil, nil, err
	}
	first, err := st.Recv()
	if err != nil {
		return nil, nil, err
	}
	return st, first, nil
}

// byID is the GetCustomerStatus request for a customer id.
func byID(id string) *billingv1.GetCustomerStatusRequest {
	return &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: id}}
}

// testContext ends with the test, or after a minute.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}
