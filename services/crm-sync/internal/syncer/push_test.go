package syncer_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/pg"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/crm-sync/internal/crm"
	"github.com/launchready/launchready/services/crm-sync/internal/syncer"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/hubspotfake"
	"github.com/launchready/launchready/test/testkit/journey"
)

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	var state string
	if !testkit.Poll(within, testkit.PollInterval, func() (ok bool) { ok, state = cond(); return ok }) {
		t.Fatalf("%s: not within %s (%s)", what, within, state)
	}
}

// gate holds every request whose body contains marker until open is
// closed, and reports the first one it holds on held.
type gate struct {
	next     http.Handler
	marker   string
	held     chan struct{}
	heldOnce sync.Once
	open     chan struct{}

	mu sync.Mutex
	// landed is the billing_status of each write, in the order they
	// reached the fake.
	landed []string
}

func (g *gate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	r.Body = io.NopCloser(bytes.NewReader(body))
	if bytes.Contains(body, []byte(g.marker)) {
		select {
		case <-g.open:
		default:
			g.heldOnce.Do(func() { close(g.held) })
			select {
			case <-g.open:
			case <-r.Context().Done():
				return
			}
		}
	}
	if m := statusRE.FindSubmatch(body); m != nil {
		g.mu.Lock()
		g.landed = append(g.landed, string(m[1]))
		g.mu.Unlock()
	}
	g.next.ServeHTTP(w, r)
}

var statusRE = regexp.MustCompile(`"billing_status":"([a-z_]+)"`)

// Two replicas sync two events of one customer at once; the older event's
// push reaches HubSpot last and writes the older state over the newer one.
// The push that settles last sees the overlap and pushes the current
// state again: the CRM ends with the newer state.
func TestOlderPushLandingLastIsRepaired(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	token := randomToken(t)
	fake := hubspotfake.New(token)
	g := &gate{next: fake.Handler(), marker: `"billing_status":"trialing"`, held: make(chan struct{}), open: make(chan struct{})}
	srv := httptest.NewServer(g)
	t.Cleanup(srv.Close)
	replica := func() *syncer.Syncer {
		c := crm.NewClient(crm.ClientConfig{Vendor: "hubspot", Timeout: 20 * time.Second, Limit: 100000, Window: time.Second, Secrets: []string{token}})
		return syncer.New(syncer.Options{Pool: b.pool, Adapter: crm.NewHubSpot(c, crm.HubSpotConfig{BaseURL: srv.URL, Token: token}), Policy: b.policy})
	}
	a, other := replica(), replica()

	var j journey.Story
	for _, x := range journeys(t, "race") {
		if x.Name == "trial" {
			j = x
		}
	}
	created, trialing, active := j.Events[0], j.Events[1], j.Events[2]
	if trialing.GetType() != "customer.subscription.created" || active.GetType() != "customer.subscription.updated" {
		t.Fatalf("journey changed: %s, %s", trialing.GetType(), active.GetType())
	}
	if _, err := a.SyncEvent(ctx, created, 1); err != nil {
		t.Fatal(err)
	}

	older := make(chan error, 1)
	go func() {
		out, err := a.SyncEvent(ctx, trialing, 1)
		if err == nil && out != syncer.OutcomeSynced {
			err = fmt.Errorf("outcome %s", out)
		}
		older <- err
	}()
	select {
	case <-g.held:
	case err := <-older:
		t.Fatalf("the older push finished before reaching HubSpot: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("the older push never reached HubSpot")
	}
	// The newer event, on the other replica, while the older push hangs.
	if out, err := other.SyncEvent(ctx, active, 1); err != nil || out != syncer.OutcomeSynced {
		t.Fatalf("newer event: %q, %v", out, err)
	}
	if c, _ := fake.Find("contacts", "stripe_customer_id", j.CustomerID); c.Properties["billing_status"] != "active" {
		t.Fatalf("after the newer push the CRM shows %q", c.Properties["billing_status"])
	}
	close(g.open) // the older push lands now, last
	if err := <-older; err != nil {
		t.Fatalf("older event: %v", err)
	}

	// The older state did land after the newer one, and was pushed over.
	g.mu.Lock()
	landed := strings.Join(g.landed, " ")
	g.mu.Unlock()
	if !regexp.MustCompile(`active.* trialing.* active`).MatchString(landed) {
		t.Fatalf("writes landed as %q; want active, then the older trialing, then active again", landed)
	}
	c, _ := fake.Find("contacts", "stripe_customer_id", j.CustomerID)
	if c.Properties["billing_status"] != "active" {
		t.Fatalf("the CRM ends with %q, want the newer state active (writes %s)", c.Properties["billing_status"], landed)
	}
	checkHubSpot(t, fake, j, j.Events[:3], b.policy)
	var processed int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM crm.processed_events WHERE event_id = ANY($1)`,
		[]string{created.GetEventId(), trialing.GetEventId(), active.GetEventId()}).Scan(&processed); err != nil || processed != 3 {
		t.Fatalf("processed %d (%v), want 3", processed, err)
	}
	var open int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM crm.push_intents`).Scan(&open); err != nil || open != 0 {
		t.Fatalf("%d push intents left open (%v)", open, err)
	}
	// The next event pushes without a repair: the hash is right again.
	before := len(fake.Requests())
	if out, err := a.SyncEvent(ctx, j.Events[3], 1); err != nil || (out != syncer.OutcomeUnchanged && out != syncer.OutcomeSynced) {
		t.Fatalf("next event: %q, %v", out, err)
	}
	if n := len(fake.Requests()) - before; n > 1 {
		t.Errorf("an invoice after a settled push made %d CRM calls", n)
	}
}

// A vendor that hangs holds workers, never connections: while every
// delivery waits on HubSpot, the pool has nothing acquired, and a pool of
// two still serves other work.
func TestHangingVendorHoldsNoConnection(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	small, err := pg.Open(ctx, b.pool.Config().ConnString(), pg.WithMaxConns(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(small.Close)
	sy := syncer.New(syncer.Options{Pool: small, Adapter: b.hubspot, Policy: canonical.DefaultPolicy()})

	const deliveries = 6
	b.fake.Inject(hubspotfake.Fault{Hang: true, Status: http.StatusServiceUnavailable, Count: deliveries})
	var evs []*billingv1.BillingEvent
	var js []journey.Story
	for i := range deliveries {
		j := journeys(t, fmt.Sprintf("hang%d", i))[0]
		js = append(js, j)
		evs = append(evs, j.Events[0])
	}
	errs := make(chan error, deliveries)
	for _, ev := range evs {
		go func() {
			_, err := sy.SyncEvent(ctx, ev, 1)
			errs <- err
		}()
	}
	eventually(t, 20*time.Second, "every delivery waiting on HubSpot", func() (bool, string) {
		return b.fake.InFlight() == deliveries, fmt.Sprintf("%d in flight", b.fake.InFlight())
	})
	for range 20 {
		if n := small.Stat().AcquiredConns(); n != 0 {
			t.Fatalf("%d connections held while every delivery waits on the vendor", n)
		}
	}
	actx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var one int
	if err := small.QueryRow(actx, `SELECT 1`).Scan(&one); err != nil {
		t.Fatalf("the pool could not serve a query while the vendor hangs: %v", err)
	}
	b.fake.Release() // the hung calls answer 503 and are retried in place
	for range deliveries {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for i, j := range js {
		checkHubSpot(t, b.fake, j, j.Events[:1], b.policy)
		if strings.TrimSpace(j.CustomerID) == "" {
			t.Fatalf("journey %d has no customer", i)
		}
	}
}
