package supportnotify_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit"

	supportnotify "github.com/launchready/launchready/services/support-notify"
	"github.com/launchready/launchready/test/testkit/fakes"
	"github.com/launchready/launchready/test/testkit/journey"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// pgx's pool health checker and the NATS client's flusher stop
		// asynchronously after Close.
		goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats.go.(*Conn).flusher"),
		goleak.IgnoreAnyFunction("github.com/nats-io/nats-server/v2/server.(*Server).Start.func1"),
	)
}

type bundle struct {
	zendesk *fakes.Zendesk
	slack   *fakes.Slack
	js      jetstream.JetStream
	pub     *bus.Publisher
	pool    *pgxpool.Pool
	reg     *prometheus.Registry
	ops     string
	// ns is the NATS server, for clients of other users (the console).
	ns *natstest.Server
}

func randomHex(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// setup runs the service against a real NATS, a real Postgres and the fake
// vendors; env overrides the defaults below.
func setup(t *testing.T, env map[string]string, tune func(*supportnotify.Config)) *bundle {
	t.Helper()
	ns := natstest.Start(t)
	dbURL := pgtest.NewDatabase(t)
	token := randomHex(t)
	b := &bundle{
		zendesk: fakes.NewZendesk("ops@example.com", token),
		slack:   fakes.NewSlack("/services/T" + randomHex(t)[:8] + "/B" + randomHex(t)[:8] + "/" + randomHex(t)),
		reg:     prometheus.NewRegistry(),
		ns:      ns,
	}
	t.Cleanup(b.zendesk.Close)
	t.Cleanup(b.slack.Close)
	vars := ns.Env(natsauth.SupportNotify)
	for k, v := range map[string]string{
		"DATABASE_URL":          dbURL,
		"HTTP_ADDR":             "127.0.0.1:0",
		"SUPPORT_PROVIDER":      "zendesk",
		"ZENDESK_BASE_URL":      b.zendesk.URL(),
		"ZENDESK_EMAIL":         "ops@example.com",
		"ZENDESK_API_TOKEN":     token,
		"ALERT_PROVIDER":        "slack",
		"SLACK_WEBHOOK_URL":     b.slack.URL(),
		"CONSUMER_BACKOFF_BASE": "50ms",
		"CONSUMER_BACKOFF_MAX":  "500ms",
	} {
		vars[k] = v
	}
	for k, v := range env {
		vars[k] = v
	}
	cfg, err := supportnotify.ConfigFromEnv(config.Map(vars))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	cfg.Logger = logging.Discard()
	cfg.Registry = b.reg
	ready := make(chan map[string]string, 1)
	cfg.Ready = func(a map[string]string) { ready <- a }
	if tune != nil {
		tune(&cfg)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- supportnotify.Run(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case a := <-ready:
		b.ops = a["http"]
	case err := <-done:
		t.Fatalf("Run returned before ready: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("service not ready after 30s")
	}

	// The admin reads dead letters and consumer state; events arrive as
	// ingress publishes them, as its user.
	nc, js, err := bus.Connect(context.Background(), ns.Conn(natsauth.Admin), "support-notify-test", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	inc, ingress, err := bus.Connect(context.Background(), ns.Conn(natsauth.Ingress), "support-notify-test-ingress", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(inc.Close)
	b.js, b.pub = js, bus.NewPublisher(ingress, nil)
	b.pool, err = pg.Open(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.pool.Close)
	return b
}

func (b *bundle) publish(t *testing.T, evs ...*billingv1.BillingEvent) {
	t.Helper()
	for _, ev := range evs {
		if _, err := b.pub.PublishEvent(context.Background(), ev); err != nil {
			t.Fatalf("publish %s: %v", ev.GetEventId(), err)
		}
	}
}

// drained waits until both consumers have settled every message, so a test
// can assert that something did NOT happen.
func (b *bundle) drained(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		idle := true
		for _, durable := range []string{supportnotify.TicketsDurable, supportnotify.AlertsDurable} {
			c, err := b.js.Consumer(context.Background(), bus.StreamEvents, durable)
			if errors.Is(err, jetstream.ErrConsumerNotFound) {
				idle = false // Run creates the durables after it reports ready
				continue
			}
			if err != nil {
				t.Fatalf("consumer %s: %v", durable, err)
			}
			info, err := c.Info(context.Background())
			if err != nil {
				t.Fatalf("consumer %s info: %v", durable, err)
			}
			// A message between a nak and its redelivery counts as neither
			// pending nor awaiting its ack; only the ack floor, still
			// below the last delivery, shows it.
			if info.NumPending > 0 || info.NumAckPending > 0 || info.NumRedelivered > 0 || info.AckFloor.Stream < info.Delivered.Stream {
				idle = false
			}
		}
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("consumers did not drain within 20s")
		}
		<-tick.C
	}
}

func count(n int) func([]fakes.ZendeskTicket) bool {
	return func(ts []fakes.ZendeskTicket) bool { return len(ts) >= n }
}

func alerts(n int) func([]fakes.SlackMessage) bool {
	return func(ms []fakes.SlackMessage) bool { return len(ms) >= n }
}

// alertedEvents holds once the messages name n events, alone or in
// digests.
func alertedEvents(n int) func([]fakes.SlackMessage) bool {
	return func(ms []fakes.SlackMessage) bool { return len(eventsAlerted(ms)) >= n }
}

// eventsAlerted counts, per event id, the messages that named it.
func eventsAlerted(ms []fakes.SlackMessage) map[string]int {
	out := map[string]int{}
	for _, m := range ms {
		for _, id := range m.EventIDs {
			out[id]++
		}
	}
	return out
}

func TestFailedPaymentGivesOneTicketAndOneTimelyAlert(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	c := journey.NewCustomer()
	// A realistic event: Stripe created it a moment before it reached us.
	ev := c.InvoiceFailed(journey.ID("in"), 1, time.Now().Add(-1500*time.Millisecond).Truncate(time.Second))
	b.publish(t, ev)

	msgs := b.slack.WaitFor(t, 30*time.Second, "the alert", alerts(1))
	tickets := b.zendesk.WaitFor(t, 30*time.Second, "the ticket", count(1))
	b.drained(t)

	if n, m := len(b.zendesk.Tickets()), len(b.slack.Messages()); n != 1 || m != 1 {
		t.Fatalf("want exactly 1 ticket and 1 alert, got %d and %d", n, m)
	}
	latency := msgs[0].At.Sub(ev.GetCreated().AsTime())
	if latency > 2*time.Minute {
		t.Fatalf("alert arrived %s after the event, past the 2-minute promise", latency)
	}
	t.Logf("alert accepted %s after the Stripe event was created", latency.Round(time.Millisecond))
	if tk := tickets[0]; tk.ExternalID != ev.GetEventId() || tk.Requester.Email != c.Email {
		t.Fatalf("ticket: %+v", tk)
	}
	if !strings.Contains(msgs[0].Text, "49.00 USD") {
		t.Fatalf("alert text: %s", msgs[0].Text)
	}

	var late bool
	var recorded float64
	if err := b.pool.QueryRow(context.Background(), `SELECT late, latency_seconds FROM support.alerts_sent WHERE event_id = $1`, ev.GetEventId()).Scan(&late, &recorded); err != nil {
		t.Fatal(err)
	}
	if late || recorded <= 0 || recorded > 120 {
		t.Fatalf("alerts_sent: late=%v latency=%v", late, recorded)
	}
	hist := gather(t, b.reg, "lr_alert_latency_seconds")
	if hist == nil || hist.GetHistogram().GetSampleCount() != 1 || hist.GetHistogram().GetSampleSum() > 120 {
		t.Fatalf("lr_alert_latency_seconds: %v", hist)
	}
	if m := gather(t, b.reg, "lr_alerts_late_total"); m.GetCounter().GetValue() != 0 {
		t.Fatalf("lr_alerts_late_total = %v", m.GetCounter().GetValue())
	}
}

func TestSuccessfulPurchaseCreatesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	c := journey.NewCustomer()
	in := journey.ID("in")
	b.publish(t, c.CheckoutPaid(time.Now()), c.InvoicePaid("invoice.paid", in, time.Now()), c.InvoicePaid("invoice.payment_succeeded", in, time.Now()))
	b.drained(t)
	posts, puts, _ := b.zendesk.Counts()
	if posts+puts != 0 || b.slack.CallCount() != 0 {
		t.Fatalf("a successful purchase reached a vendor: zendesk %d/%d, slack %d", posts, puts, b.slack.CallCount())
	}
}

func TestDuplicateDeliveryGivesNoSecondTicketOrAlert(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	ev := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, time.Now())
	b.publish(t, ev)
	b.slack.WaitFor(t, 30*time.Second, "the alert", alerts(1))
	b.zendesk.WaitFor(t, 30*time.Second, "the ticket", count(1))

	// Stripe re-sends the same event after the stream's duplicate window:
	// a second message with the same event id reaches both consumers.
	data, err := protoMarshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.pub.Publish(context.Background(), bus.EventSubject(ev.GetType()), ev.GetEventId()+"-resent", data, nil); err != nil {
		t.Fatal(err)
	}
	// And within the window, the stream itself absorbs it.
	if res, err := b.pub.PublishEvent(context.Background(), ev); err != nil || !res.Duplicate {
		t.Fatalf("same Nats-Msg-Id should be a stream duplicate: %+v %v", res, err)
	}
	b.drained(t)
	posts, _, _ := b.zendesk.Counts()
	if n, m := len(b.zendesk.Tickets()), len(b.slack.Messages()); n != 1 || m != 1 || posts != 1 {
		t.Fatalf("duplicate delivery: %d tickets (%d POSTs), %d alerts; want 1, 1, 1", n, posts, m)
	}
}

// The Zendesk call succeeds but the service never learns it (the answer is
// lost, as in a crash right after the call): nothing commits, the event is
// redelivered, and the Idempotency-Key returns the first ticket.
func TestLostZendeskAnswerDoesNotOpenASecondTicket(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, func(c *supportnotify.Config) { c.ZendeskTimeout = 500 * time.Millisecond })
	b.zendesk.LoseNextAnswers(1)
	ev := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, time.Now())
	b.publish(t, ev)
	// The consumers' counts may not show a message yet right after its
	// publish, so drained alone could return before the first call: wait
	// for the ticket the lost answer leaves, then for the redelivery.
	b.zendesk.WaitFor(t, 30*time.Second, "the ticket", count(1))
	b.drained(t)
	posts, _, hits := b.zendesk.Counts()
	if n := len(b.zendesk.Tickets()); n != 1 || posts != 2 || hits != 1 {
		t.Fatalf("want 1 ticket from 2 POSTs (1 idempotent replay), got %d tickets, %d POSTs, %d replays", n, posts, hits)
	}
	var rows int
	if err := b.pool.QueryRow(context.Background(), `SELECT count(*) FROM support.tickets WHERE ticket_id = $1`, b.zendesk.Tickets()[0].ID).Scan(&rows); err != nil || rows != 1 {
		t.Fatalf("ticket recorded %d times (%v)", rows, err)
	}
}

func TestFailedThenPaidResolvesTheTicket(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	c := journey.NewCustomer()
	in := journey.ID("in")
	b.publish(t, c.InvoiceFailed(in, 1, time.Now().Add(-time.Minute)))
	b.zendesk.WaitFor(t, 30*time.Second, "the ticket", count(1))
	b.publish(t, c.InvoicePaid("invoice.paid", in, time.Now()))
	ts := b.zendesk.WaitFor(t, 30*time.Second, "the resolved ticket", func(ts []fakes.ZendeskTicket) bool {
		return len(ts) > 0 && ts[0].Status == "solved"
	})
	b.drained(t)
	if len(b.zendesk.Tickets()) != 1 {
		t.Fatalf("a new ticket opened: %+v", b.zendesk.Tickets())
	}
	last := ts[0].Comments[len(ts[0].Comments)-1]
	if !strings.HasPrefix(last.Body, "Resolved: the invoice is paid.") || last.Public {
		t.Fatalf("resolved comment: %+v", last)
	}
	if m := len(b.slack.Messages()); m != 1 {
		t.Fatalf("want only the failure's alert, got %d", m)
	}
}

// Zendesk takes 10 s per call. Alerts run on their own consumer, so they
// go out at once even with every ticket worker busy.
func TestSlowZendeskDoesNotDelayAlerts(t *testing.T) {
	t.Parallel()
	b := setup(t, map[string]string{"CONSUMER_CONCURRENCY": "2"}, nil)
	b.zendesk.Hang(10 * time.Second)
	start := time.Now()
	for range 3 { // more events than ticket workers
		b.publish(t, journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, time.Now()))
	}
	// The three may leave alone or folded into a digest.
	msgs := b.slack.WaitFor(t, 5*time.Second, "3 alerts while Zendesk hangs", alertedEvents(3))
	lastAlert := msgs[len(msgs)-1].At
	t.Logf("3 alerts accepted %s after publishing, Zendesk still hanging", lastAlert.Sub(start).Round(time.Millisecond))
	if n := len(b.zendesk.Tickets()); n != 0 {
		t.Fatalf("tickets already exist (%d): Zendesk was not slow", n)
	}
	ts := b.zendesk.WaitFor(t, 20*time.Second, "the first slow ticket", count(1))
	if gap := ts[0].CreatedAt.Sub(lastAlert); gap < 5*time.Second {
		t.Fatalf("alerts should arrive well before the slow ticket; gap %s", gap)
	}
	// Zendesk recovers: the rest of the tickets follow promptly.
	b.zendesk.StopHanging()
	b.zendesk.WaitFor(t, 20*time.Second, "all tickets", count(3))
	b.drained(t)
	if n, m := len(b.zendesk.Tickets()), len(eventsAlerted(b.slack.Messages())); n != 3 || m != 3 {
		t.Fatalf("want 3 tickets and 3 alerted events, got %d and %d", n, m)
	}
}

func TestDisputeOpensUrgentTicketWithAmountAndReason(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	ev := journey.NewCustomer().Dispute(15_000, "product_not_received", time.Now())
	b.publish(t, ev)
	ts := b.zendesk.WaitFor(t, 30*time.Second, "the dispute ticket", count(1))
	msgs := b.slack.WaitFor(t, 30*time.Second, "the dispute alert", alerts(1))
	if ts[0].Priority != "urgent" {
		t.Fatalf("dispute ticket priority %q", ts[0].Priority)
	}
	for _, want := range []string{"Amount: 150.00 EUR", "Dispute reason: product not received"} {
		if !strings.Contains(ts[0].Comments[0].Body, want) {
			t.Errorf("ticket lacks %q:\n%s", want, ts[0].Comments[0].Body)
		}
	}
	if !strings.Contains(string(msgs[0].Raw), "150.00 EUR") || !strings.Contains(string(msgs[0].Raw), "product not received") {
		t.Errorf("alert lacks amount or reason: %s", msgs[0].Raw)
	}
}

func TestSlackRateLimitHonoursRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	b.slack.RateLimitNext(1, "1")
	start := time.Now()
	b.publish(t, journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, time.Now()))
	msgs := b.slack.WaitFor(t, 30*time.Second, "the alert after the 429", alerts(1))
	// The consumer's own backoff is 50 ms here; a retry a second later is
	// Slack's Retry-After at work.
	if wait := msgs[0].At.Sub(start); wait < time.Second {
		t.Fatalf("retried after %s, before Retry-After: 1", wait)
	}
	if got := counterValue(t, b.reg, "lr_support_calls_total", map[string]string{"vendor": "slack", "outcome": "rate_limited"}); got != 1 {
		t.Fatalf("lr_support_calls_total{slack,rate_limited} = %v", got)
	}
}

func TestRejectedTicketDeadLettersAndAlertStillGoes(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	b.zendesk.FailNext(http.StatusUnprocessableEntity)
	ev := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, time.Now())
	b.publish(t, ev)
	b.slack.WaitFor(t, 30*time.Second, "the alert", alerts(1))
	b.drained(t)
	dls, err := bus.ListDeadLetters(context.Background(), b.js, supportnotify.TicketsDurable, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 1 || dls[0].EventID != ev.GetEventId() || !strings.Contains(dls[0].Error, "HTTP 422") {
		t.Fatalf("want the event dead-lettered for the ticket consumer: %+v", dls)
	}
	if strings.Contains(dls[0].Error, "fake-secret-value") {
		t.Fatalf("dead letter carries the vendor's secret: %s", dls[0].Error)
	}
	if others, _ := bus.ListDeadLetters(context.Background(), b.js, supportnotify.AlertsDurable, 10); len(others) != 0 {
		t.Fatalf("alert consumer dead-lettered too: %+v", others)
	}
}

func TestOpsEndpoints(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ready", "/metrics": "lr_alert_latency_seconds"} {
		resp, err := http.Get("http://" + b.ops + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET %s: %d %s", path, resp.StatusCode, body)
		}
	}
}

func TestRunFailsFastOnBadDatabaseURL(t *testing.T) {
	t.Parallel()
	cfg, err := supportnotify.ConfigFromEnv(config.Map(map[string]string{"DATABASE_URL": "postgres://%zz", "HTTP_ADDR": "127.0.0.1:0"}))
	if err != nil {
		t.Fatal(err)
	}
	cfg.StartTimeout = 5 * time.Second
	err = supportnotify.Run(context.Background(), cfg)
	if err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want a prompt configuration error, got %v", err)
	}
}

// Real Stripe payloads, normalised by the shared normaliser. The fixtures
// are years old and share sample ids, so each gets a fresh event id and a
// recent created time; everything else is Stripe's own JSON.
func TestRealStripePayloads(t *testing.T) {
	t.Parallel()
	// The real dispute names a charge no event here teaches: it waits
	// SUPPORT_LINK_WAIT for the customer, then opens its ticket without.
	b := setup(t, map[string]string{"SUPPORT_LINK_WAIT": "200ms"}, nil)
	load := func(name string) *billingv1.BillingEvent {
		raw, err := os.ReadFile(filepath.Join(testkit.FixturesDir(t), name))
		if err != nil {
			t.Fatalf("fixture %s: %v", name, err)
		}
		ev, err := stripeevent.Normalize(raw)
		if err != nil {
			t.Fatalf("normalize %s: %v", name, err)
		}
		ev.EventId = journey.ID("evt")
		ev.Created = timestamppb.New(time.Now().Add(-time.Second))
		return ev
	}
	failed := load("stripe-ruby-mock/invoice.payment_failed.json")
	dispute := load("stripe-sync-engine/charge_dispute_created.json")
	oneOff := load("stripe-sync-engine/payment_intent_payment_failed.json")
	paid := load("stripe-sync-engine/checkout_session_completed.json")
	b.publish(t, failed, dispute, oneOff, paid)
	b.drained(t)

	byEvent := map[string]fakes.ZendeskTicket{}
	for _, tk := range b.zendesk.Tickets() {
		byEvent[tk.ExternalID] = tk
	}
	if len(byEvent) != 3 {
		t.Fatalf("want tickets for the failed invoice, the dispute and the one-off payment; got %d", len(byEvent))
	}
	if tk := byEvent[dispute.GetEventId()]; tk.Priority != "urgent" || !strings.Contains(tk.Comments[0].Body, "Dispute reason: general") {
		t.Fatalf("dispute ticket: %+v", tk)
	}
	if tk := byEvent[failed.GetEventId()]; !strings.Contains(tk.Comments[0].Body, "dashboard.stripe.com/test/invoices/"+failed.GetInvoiceId()) {
		t.Fatalf("invoice ticket body:\n%s", tk.Comments[0].Body)
	}
	if _, ok := byEvent[paid.GetEventId()]; ok {
		t.Fatal("a paid checkout opened a ticket")
	}
	// The two may leave alone or together in a digest.
	if got := eventsAlerted(b.slack.Messages()); len(got) != 2 || got[failed.GetEventId()] != 1 || got[dispute.GetEventId()] != 1 {
		t.Fatalf("want one alert each for the failed invoice and the dispute only, got %v", got)
	}
}

// TestConsumersReceiveOnlyTheTypesTheirRulesActOn: each durable filters on
// the event types of its rules (and those that teach charge → customer
// links), so an event no rule acts on never reaches the service, while a
// failed payment reaches both.
func TestConsumersReceiveOnlyTheTypesTheirRulesActOn(t *testing.T) {
	t.Parallel()
	b := setup(t, nil, nil)
	c := journey.NewCustomer()
	// A profile change: no rule acts on it and it teaches no charge link.
	b.publish(t, &billingv1.BillingEvent{EventId: journey.ID("evt"), Type: "customer.updated", ObjectType: "customer",
		CustomerId: c.ID, Email: c.Email, Created: timestamppb.Now()})
	b.drained(t)
	delivered := func(durable string) uint64 {
		cons, err := b.js.Consumer(context.Background(), bus.StreamEvents, durable)
		if err != nil {
			t.Fatal(err)
		}
		info, err := cons.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(info.Config.FilterSubjects, bus.EventSubject("invoice.payment_failed")) ||
			slices.Contains(info.Config.FilterSubjects, bus.EventsPrefix+">") {
			t.Fatalf("%s filters on %v", durable, info.Config.FilterSubjects)
		}
		return info.Delivered.Stream
	}
	for _, d := range []string{supportnotify.TicketsDurable, supportnotify.AlertsDurable} {
		if n := delivered(d); n != 0 {
			t.Fatalf("%s was delivered stream seq %d: an event no rule acts on reached it", d, n)
		}
	}
	b.publish(t, c.InvoiceFailed(journey.ID("in"), 1, time.Now()))
	b.drained(t)
	for _, d := range []string{supportnotify.TicketsDurable, supportnotify.AlertsDurable} {
		if n := delivered(d); n != 2 {
			t.Fatalf("%s: last delivered stream seq %d, want the failed payment (2)", d, n)
		}
	}
}
