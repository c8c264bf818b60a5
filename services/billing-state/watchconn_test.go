package billingstate

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/service"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit/journey"
)

// refuseByName is a NATS server's client authentication that admits
// everyone until refuse is set, and then refuses the clients named name.
type refuseByName struct {
	name   string
	refuse atomic.Bool
}

func (a *refuseByName) Check(c server.ClientAuthentication) bool {
	return !a.refuse.Load() || c.GetOpts().Name != a.name
}

// Watch's own NATS connection closed for good (here the server refuses it
// from then on, as it would after its credentials were revoked): Watch
// answers Unavailable, /readyz names the connection and gRPC health says
// NOT_SERVING, while /healthz, the consumer and the unary calls carry on,
// and the service stops cleanly.
func TestWatchConnectionClosedForGood(t *testing.T) {
	t.Parallel()
	auth := &refuseByName{name: Durable + "-watch"}
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		NoSigs: true, NoLog: true, CustomClientAuthentication: auth})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats server not ready")
	}
	// An open server: every user of the model gets in, as no one but
	// billing-state's watch connection is refused.
	h := startOn(t, func(user string) bus.ConnConfig { return bus.ConnConfig{URL: srv.ClientURL(), User: user} })
	read := h.as(h.readToken)
	ops := "http://" + h.addrs["http"]

	jb := journey.New(t, "cus_WatchGone1", base)
	steps := journey.SubscriptionLifecycle(jb)
	h.publish(journey.Events(steps[:3])...)
	h.eventually(10*time.Second, "active", func() bool {
		st := h.statusOf(jb.CustomerID)
		return st != nil && st.GetStatus() == billingv1.BillingStatus_BILLING_STATUS_ACTIVE
	})
	// watch runs a Watch until it ends; first, when set, receives the
	// stream's first message.
	watch := func(first chan<- struct{}) error {
		stream, err := h.client.WatchCustomerStatus(read, &billingv1.WatchCustomerStatusRequest{CustomerId: jb.CustomerID})
		for n := 0; err == nil; n++ {
			if _, err = stream.Recv(); err == nil && n == 0 && first != nil {
				close(first)
			}
		}
		return err
	}
	open, first := make(chan error, 1), make(chan struct{})
	go func() { open <- watch(first) }()
	select {
	case <-first:
	case err := <-open:
		t.Fatalf("Watch before: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no first snapshot within 10s")
	}

	auth.refuse.Store(true)
	conns, err := srv.Connz(&server.ConnzOptions{})
	if err != nil {
		t.Fatal(err)
	}
	kicked := 0
	for _, c := range conns.Conns {
		if c.Name == auth.name {
			if err := srv.DisconnectClientByID(c.Cid); err != nil {
				t.Fatal(err)
			}
			kicked++
		}
	}
	if kicked != 1 {
		t.Fatalf("%d connections named %s, want 1", kicked, auth.name)
	}

	select {
	case err := <-open:
		if status.Code(err) != codes.Unavailable {
			t.Errorf("the open Watch ended with %v, want Unavailable", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the open Watch still runs 10s after its connection was refused")
	}
	h.eventually(10*time.Second, "/readyz to name the watch connection", func() bool {
		code, body := httpGet(t, ops+"/readyz")
		return code == http.StatusServiceUnavailable &&
			strings.Contains(body, `"nats billing-state-watch":"`+service.ErrNATSClosed.Error()+`"`)
	})
	h.eventually(5*time.Second, "gRPC health NOT_SERVING", func() bool {
		r, err := healthpb.NewHealthClient(h.conn).Check(h.ctx, &healthpb.HealthCheckRequest{Service: serviceName})
		return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_NOT_SERVING
	})
	if err := watch(nil); status.Code(err) != codes.Unavailable {
		t.Errorf("a new Watch: %v, want Unavailable", err)
	}
	if code, body := httpGet(t, ops+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s, want 200: the consumer has nothing to gain from a restart", code, body)
	}

	h.publish(steps[3].Events...) // payment failed: past_due
	h.eventually(10*time.Second, "the consumer to apply past_due", func() bool {
		st := h.statusOf(jb.CustomerID)
		return st != nil && st.GetStatus() == billingv1.BillingStatus_BILLING_STATUS_PAST_DUE
	})
	h.stop() // fails the test unless Run returns nil
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
