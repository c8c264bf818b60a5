package crmsync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/httpserver"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/crm-sync/internal/crm"
	"github.com/launchready/launchready/services/crm-sync/internal/syncer"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/hubspotfake"
	"github.com/launchready/launchready/test/testkit/journey"
)

// env is one test's world: a NATS server, a database and a fake HubSpot,
// shared by the service instances the test starts in turn.
type env struct {
	t    *testing.T
	nats *natstest.Server
	// nc and js are the admin's (dead letters, consumer state); ingress
	// and pub publish events as ingress's user does.
	nc      *nats.Conn
	js      jetstream.JetStream
	ingress jetstream.JetStream
	pub     *bus.Publisher
	dbURL   string
	pool    *pgxpool.Pool
	fake    *hubspotfake.Server
	token   string
	vars    map[string]string
}

func secret(t testing.TB, prefix string) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return prefix + hex.EncodeToString(b)
}

func newEnv(t *testing.T, vars map[string]string) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{t: t, nats: natstest.Start(t), dbURL: pgtest.NewDatabase(t), token: secret(t, "pat-na1-")}
	var err error
	e.nc, e.js, err = bus.Connect(ctx, e.nats.Conn(natsauth.Admin), "crm-sync-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.nc.Close)
	inc, ijs, err := bus.Connect(ctx, e.nats.Conn(natsauth.Ingress), "crm-sync-test-ingress", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inc.Close)
	e.ingress, e.pub = ijs, bus.NewPublisher(ijs, nil)
	e.pool, err = pg.Open(ctx, e.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.pool.Close)
	e.fake = hubspotfake.Start(e.token)
	t.Cleanup(e.fake.Close)
	e.vars = e.nats.Env(natsauth.CRMSync)
	for k, v := range map[string]string{
		"DATABASE_URL":          e.dbURL,
		"HTTP_ADDR":             "127.0.0.1:0",
		"CRM_PROVIDER":          "hubspot",
		"HUBSPOT_TOKEN":         e.token,
		"HUBSPOT_BASE_URL":      e.fake.URL(),
		"CONSUMER_BACKOFF_BASE": "50ms",
		"CONSUMER_BACKOFF_MAX":  "400ms",
		"CONSUMER_ACK_WAIT":     "5s",
	} {
		e.vars[k] = v
	}
	for k, v := range vars {
		e.vars[k] = v
	}
	return e
}

// instance is one running crm-sync.
type instance struct {
	cancel context.CancelFunc
	done   chan error
	http   string
	reg    *prometheus.Registry
}

func (e *env) start(mutate func(*Config)) *instance {
	e.t.Helper()
	cfg, err := ConfigFromEnv(config.Map(e.vars))
	if err != nil {
		e.t.Fatal(err)
	}
	in := &instance{done: make(chan error, 1), reg: httpserver.NewRegistry()}
	ready := make(chan string, 1)
	cfg.Registry = in.reg
	cfg.Ready = func(a map[string]string) { ready <- a["http"] }
	if mutate != nil {
		mutate(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	in.cancel = cancel
	go func() { in.done <- Run(ctx, cfg) }()
	select {
	case in.http = <-ready:
	case err := <-in.done:
		cancel()
		e.t.Fatalf("crm-sync stopped before ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		e.t.Fatal("crm-sync not ready within 30s")
	}
	e.t.Cleanup(func() { in.stop(e.t) })
	return in
}

func (in *instance) stop(t *testing.T) {
	t.Helper()
	if in.cancel == nil {
		return
	}
	in.cancel()
	in.cancel = nil
	select {
	case err := <-in.done:
		if err != nil {
			t.Errorf("crm-sync run: %v", err)
		}
	case <-time.After(40 * time.Second):
		t.Error("crm-sync did not stop within 40s")
	}
}

func (e *env) publish(evs ...*billingv1.BillingEvent) {
	e.t.Helper()
	for _, ev := range evs {
		if _, err := e.pub.PublishEvent(context.Background(), ev); err != nil {
			e.t.Fatalf("publish %s: %v", ev.GetEventId(), err)
		}
	}
}

// publishAgain re-sends an event under a new message id, as a Stripe
// retry outside the duplicate window would arrive: JetStream stores it
// again and the consumer must skip it.
func (e *env) publishAgain(ev *billingv1.BillingEvent, n int) {
	e.t.Helper()
	data, err := proto.Marshal(ev)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.pub.Publish(context.Background(), bus.EventSubject(ev.GetType()), fmt.Sprintf("%s#%d", ev.GetEventId(), n), data, nil); err != nil {
		e.t.Fatal(err)
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	var state string
	if !testkit.Poll(within, testkit.PollInterval, func() (ok bool) { ok, state = cond(); return ok }) {
		t.Fatalf("%s: not reached within %s (%s)", what, within, state)
	}
}

func (e *env) processed() int {
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM crm.processed_events`).Scan(&n); err != nil {
		return -1 // schema not there yet
	}
	return n
}

func (e *env) waitProcessed(want int, within time.Duration) {
	e.t.Helper()
	eventually(e.t, within, fmt.Sprintf("%d events processed", want), func() (bool, string) {
		n := e.processed()
		return n == want, fmt.Sprintf("processed %d, DLQ %d", n, len(e.deadLetters()))
	})
}

func (e *env) deadLetters() []bus.DeadLetter {
	dls, err := bus.ListDeadLetters(context.Background(), e.js, Durable, 100)
	if err != nil {
		return nil
	}
	return dls
}

// checkHubSpot checks that the fake holds what events, folded in order,
// make of the journey's customer, through the service's own derivation
// (the same check as the syncer package's tests).
func checkHubSpot(t testing.TB, fake *hubspotfake.Server, j journey.Story, events []*billingv1.BillingEvent, p canonical.Policy) {
	t.Helper()
	f := journey.Fold(events)
	contact := syncer.DeriveContact(j.CustomerID, f.Email, f.Name, f.UserID, f.Deleted, false, f.LastFailed, f.DisputeOpen, f.Subscriptions, f.Purchases, p)
	want := hubspotfake.Want{CustomerID: j.CustomerID, Contact: crm.ContactProperties(contact), Deals: map[string]map[string]string{}}
	hs := crm.NewHubSpot(nil, crm.HubSpotConfig{})
	for _, s := range f.Subscriptions {
		if d, ok := syncer.DeriveDeal(s, contact.Email); ok {
			want.Deals[s.ID] = hs.DealProperties(d)
		}
	}
	fake.Check(t, fmt.Sprintf("%s after %d events", j.Name, len(events)), want)
	if got, made := len(want.Deals), len(j.Subscriptions); len(events) == len(j.Events) && got != made {
		t.Errorf("%s: oracle knows %d subscriptions, journey made %d", j.Name, got, made)
	}
}

func journeys(t *testing.T, tag string) ([]journey.Story, []*billingv1.BillingEvent) {
	t.Helper()
	js, err := journey.Stories(tag, time.Date(2024, 5, 1, 9, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	var all []*billingv1.BillingEvent
	for _, j := range js {
		all = append(all, j.Events...)
	}
	return js, all
}

func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, lp := range m.GetLabel() {
				got[lp.GetName()] = lp.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue metrics
				}
			}
			total += value(m)
		}
	}
	return total
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetHistogram() != nil:
		return float64(m.GetHistogram().GetSampleCount())
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return 0
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Journeys published in order through JetStream: one contact per customer,
// one deal per subscription, properties as pkg/canonical derives them.
func TestJourneysThroughJetStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	in := e.start(nil)
	js, all := journeys(t, "bus")
	e.publish(all...)
	e.waitProcessed(len(all), 30*time.Second)
	for _, j := range js {
		checkHubSpot(t, e.fake, j, j.Events, canonical.DefaultPolicy())
	}
	if dl := e.deadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters: %+v", dl)
	}

	// Ops endpoints.
	eventually(t, 10*time.Second, "ready", func() (bool, string) {
		code, body := httpGet(t, "http://"+in.http+"/readyz")
		return code == http.StatusOK, body
	})
	if code, _ := httpGet(t, "http://"+in.http+"/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d", code)
	}
	_, metrics := httpGet(t, "http://"+in.http+"/metrics")
	for _, want := range []string{`lr_crm_calls_total{outcome="ok",vendor="hubspot"}`, "lr_crm_call_seconds_bucket", "lr_consumer_"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if v := metricValue(t, in.reg, "lr_crm_calls_total", map[string]string{"vendor": "hubspot", "outcome": "ok"}); v < float64(len(js)) {
		t.Errorf("lr_crm_calls_total ok = %v, want at least one per customer", v)
	}
}
