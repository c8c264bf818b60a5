package billingstate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/httpserver"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/pkg/telemetry"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/grpcapi"
)

// harness runs billing-state in process against a real Postgres database
// and a real embedded NATS server.
type harness struct {
	t     *testing.T
	ctx   context.Context
	cfg   Config
	addrs map[string]string
	nats  *natstest.Server // nil after startOn
	// connAs is how a user of pkg/natsauth reaches the test's NATS server.
	connAs func(user string) bus.ConnConfig
	dbURL  string
	dbName string
	reg    *prometheus.Registry
	// nc and js are the admin's, for dead letters and stream state; pub
	// publishes events as ingress does, as ingress's user.
	nc     *nats.Conn
	js     jetstream.JetStream
	pub    *bus.Publisher
	db     *pgxpool.Pool
	client billingv1.BillingStatusServiceClient
	conn   *grpc.ClientConn

	readToken, adminToken string
	stop                  func()
}

func randomToken(t testing.TB) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// testConfig is a Config for tests: ephemeral ports, fast retries.
func testConfig(t *testing.T, nc bus.ConnConfig, dbURL string) (Config, string, string) {
	read, admin := randomToken(t), randomToken(t)
	tokens, err := grpcapi.ParseTokens(fmt.Sprintf("mobile=%s:read,ops=%s:read+admin", read, admin))
	if err != nil {
		t.Fatal(err)
	}
	return Config{
		DatabaseURL: dbURL,
		NATSURL:     nc,
		GRPCAddr:    "127.0.0.1:0",
		HTTPAddr:    "127.0.0.1:0",
		Tokens:      tokens,
		Policy:      canonical.DefaultPolicy(),
		AsyncCommit: true, // the default of ConfigFromEnv
		Streams:     bus.StreamConfig{Replicas: 1, DuplicateWindow: time.Hour, MaxAge: time.Hour, Storage: jetstream.FileStorage},
		Consumer: bus.ConsumerConfig{
			Durable: Durable, Concurrency: 4, MaxDeliver: 4, AckWait: 2 * time.Second,
			BackoffBase: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		},
		Telemetry:     telemetry.Config{ServiceName: "billing-state-test"},
		ParkRetry:     30 * time.Millisecond,
		ShutdownGrace: 5 * time.Second,
		Logger:        logging.Discard(),
	}, read, admin
}

func start(t *testing.T, mods ...func(*Config)) *harness {
	t.Helper()
	t.Parallel() // each test has its own server and database
	ns := natstest.Start(t)
	h := startOn(t, ns.Conn, mods...)
	h.nats = ns
	return h
}

// startOn is start against the NATS server connAs reaches.
func startOn(t *testing.T, connAs func(user string) bus.ConnConfig, mods ...func(*Config)) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	h := &harness{t: t, ctx: ctx, connAs: connAs, reg: httpserver.NewRegistry()}
	h.dbURL = pgtest.NewDatabase(t)
	h.dbName = h.dbURL[strings.LastIndex(h.dbURL, "/")+1:]
	if i := strings.Index(h.dbName, "?"); i >= 0 {
		h.dbName = h.dbName[:i]
	}
	h.cfg, h.readToken, h.adminToken = testConfig(t, h.connAs(natsauth.BillingState), h.dbURL)
	h.cfg.Registry = h.reg
	for _, m := range mods {
		m(&h.cfg)
	}
	if h.cfg.DatabaseURL != h.dbURL { // a test's own server (pgtest.StartServer)
		h.dbURL = h.cfg.DatabaseURL
		h.dbName = ""
	}
	h.addrs, h.stop = h.launch(h.cfg)

	var err error
	h.nc, h.js = h.natsAs(natsauth.Admin)
	_, ingress := h.natsAs(natsauth.Ingress)
	h.pub = bus.NewPublisher(ingress, nil)
	h.db, err = pg.Open(ctx, h.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.db.Close)
	h.conn, err = grpc.NewClient(h.addrs["grpc"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.conn.Close() })
	h.client = billingv1.NewBillingStatusServiceClient(h.conn)
	return h
}

// natsAs connects to the test's NATS server as user, until the test ends.
func (h *harness) natsAs(user string) (*nats.Conn, jetstream.JetStream) {
	h.t.Helper()
	nc, js, err := bus.Connect(h.ctx, h.connAs(user), "test-"+user, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(nc.Close)
	return nc, js
}

// launch runs billing-state with cfg and returns, once it serves, its
// addresses and a function that stops it; the test's cleanup calls that
// too.
func (h *harness) launch(cfg Config) (map[string]string, func()) {
	t := h.t
	t.Helper()
	ready := make(chan map[string]string, 1)
	cfg.Ready = func(a map[string]string) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run returned %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("Run did not stop within 30s")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case addrs := <-ready:
		return addrs, stop
	case err := <-done:
		t.Fatalf("Run ended before ready: %v", err)
	case <-h.ctx.Done():
		t.Fatal("billing-state not ready in time")
	}
	return nil, stop
}

// as returns ctx carrying a bearer token.
func (h *harness) as(token string) context.Context {
	return metadata.AppendToOutgoingContext(h.ctx, "authorization", "Bearer "+token)
}

func (h *harness) publish(evs ...*billingv1.BillingEvent) {
	h.t.Helper()
	for _, ev := range evs {
		if _, err := h.pub.PublishEvent(h.ctx, ev); err != nil {
			h.t.Fatalf("publish %s: %v", ev.GetEventId(), err)
		}
	}
}

// eventually polls cond every 10ms until it holds or d passes.
func (h *harness) eventually(d time.Duration, what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		select {
		case <-h.ctx.Done():
			h.t.Fatalf("test context ended waiting for %s", what)
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// statusOf reads a customer's status over gRPC; nil while unknown.
func (h *harness) statusOf(cus string) *billingv1.CustomerStatus {
	st, err := h.client.GetCustomerStatus(h.as(h.readToken), &billingv1.GetCustomerStatusRequest{
		Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: cus}})
	if err != nil {
		return nil
	}
	return st
}

// drained reports whether the durable has nothing pending or unacked.
func (h *harness) drained() bool {
	c, err := h.js.Consumer(h.ctx, bus.StreamEvents, Durable)
	if err != nil {
		return false
	}
	info, err := c.Info(h.ctx)
	return err == nil && info.NumPending == 0 && info.NumAckPending == 0
}

func (h *harness) counter(name string, labels ...string) float64 {
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metric:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue metric
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
}

func prometheusRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

func counterValue(c prometheus.Counter) float64 { return testutil.ToFloat64(c) }

func metadataCtx(ctx context.Context, authorization string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", authorization)
}

// pgxConnectAdmin connects to the server's postgres database, to take the
// test's database away and give it back.
func pgxConnectAdmin(h *harness) (*pgx.Conn, error) {
	return pgx.Connect(h.ctx, pgtest.BaseURL())
}
