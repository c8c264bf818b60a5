package alerts

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/services/support-notify/internal/metrics"
	"github.com/launchready/launchready/services/support-notify/internal/rules"
	"github.com/launchready/launchready/services/support-notify/internal/slack"
	"github.com/launchready/launchready/services/support-notify/internal/store"
	"github.com/launchready/launchready/services/support-notify/internal/vendor"
	"github.com/launchready/launchready/test/testkit/fakes"
	"github.com/launchready/launchready/test/testkit/journey"
)

type bundle struct {
	h     *Handler
	slack *fakes.Slack
	pool  *pgxpool.Pool
	m     *metrics.Metrics
	now   time.Time
	trips *pgtest.RoundTrips
}

func setup(t *testing.T) *bundle {
	t.Helper()
	ctx := context.Background()
	trips := &pgtest.RoundTrips{}
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t), pg.WithTracer(trips))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	hook := fakes.NewSlack("/services/" + journey.ID("T") + "/" + journey.ID("B") + "/" + journey.ID("x"))
	t.Cleanup(hook.Close)
	m, err := metrics.New(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	b := &bundle{slack: hook, pool: pool, m: m, now: time.Now(), trips: trips}
	ch := slack.New(config.Secret(hook.URL()), vendor.New(vendor.Config{Vendor: "slack", Timeout: 2 * time.Second, Metrics: m}))
	b.h = &Handler{Pool: pool, Rules: rules.Defaults(), Channel: ch, Metrics: m, Log: logging.Discard(),
		SLO: 2 * time.Minute, Now: func() time.Time { return b.now }, Window: 10 * time.Millisecond}
	return b
}

func (b *bundle) handle(ev *billingv1.BillingEvent) error {
	return b.h.PostAlert(context.Background(), &bus.Delivery{Event: ev, Delivered: 1})
}

func TestAlertSentOnceAndMeasured(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ev := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, b.now.Add(-5*time.Second))
	// Sending costs three round trips (the lock with the dedupe check, the
	// record, the unlock), the duplicate two.
	for i, want := range []int64{3, 2} {
		n := b.trips.Count()
		if err := b.handle(ev); err != nil {
			t.Fatal(err)
		}
		if got := b.trips.Count() - n; got != want {
			t.Errorf("delivery %d: %d round trips, want %d", i+1, got, want)
		}
	}
	msgs := b.slack.Messages()
	if len(msgs) != 1 {
		t.Fatalf("want 1 alert, got %d", len(msgs))
	}
	for _, want := range []string{"49.00 USD", "Your card was declined.", "dashboard.stripe.com/test/invoices/" + ev.GetInvoiceId(), `"type":"actions"`} {
		if !strings.Contains(string(msgs[0].Raw), want) {
			t.Errorf("alert lacks %q: %s", want, msgs[0].Raw)
		}
	}
	if strings.Contains(msgs[0].Text, "LATE") {
		t.Errorf("on-time alert marked late: %s", msgs[0].Text)
	}
	var late bool
	var latency float64
	if err := b.pool.QueryRow(context.Background(), `SELECT late, latency_seconds FROM support.alerts_sent WHERE event_id = $1`, ev.GetEventId()).Scan(&late, &latency); err != nil {
		t.Fatal(err)
	}
	if late || latency != 5 {
		t.Fatalf("recorded late=%v latency=%v, want false 5", late, latency)
	}
	if got := testutil.ToFloat64(b.m.AlertsSent.WithLabelValues(ChannelSlack)); got != 1 {
		t.Fatalf("lr_alerts_sent_total = %v", got)
	}
	if n := histogramCount(t, b.m.AlertLatency.WithLabelValues(ChannelSlack).(prometheus.Histogram)); n != 1 {
		t.Fatalf("latency observations = %d", n)
	}
}

func TestLateAlertStillSentAndCounted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ev := journey.NewCustomer().Dispute(5000, "fraudulent", b.now.Add(-3*time.Minute))
	if err := b.handle(ev); err != nil {
		t.Fatal(err)
	}
	msgs := b.slack.Messages()
	if len(msgs) != 1 || !strings.HasPrefix(msgs[0].Text, "LATE: ") || !strings.Contains(string(msgs[0].Raw), "SLO 2m0s") {
		t.Fatalf("want one alert marked late, got %+v", msgs)
	}
	if got := testutil.ToFloat64(b.m.AlertsLate.WithLabelValues(ChannelSlack)); got != 1 {
		t.Fatalf("lr_alerts_late_total = %v", got)
	}
}

func TestNoAlertForEventsWithoutAlertRule(t *testing.T) {
	t.Parallel()
	b := setup(t)
	c := journey.NewCustomer()
	for _, ev := range []*billingv1.BillingEvent{
		c.CheckoutPaid(b.now),
		c.InvoicePaid("invoice.paid", journey.ID("in"), b.now),
		{EventId: journey.ID("evt"), Type: "checkout.session.async_payment_failed"}, // ticket only
	} {
		if err := b.handle(ev); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.slack.CallCount(); n != 0 {
		t.Fatalf("slack was called %d times", n)
	}
}

func TestSlackFailuresAreClassifiedAndNotRecorded(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ev := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, b.now)
	b.slack.FailNext(http.StatusInternalServerError)
	if err := b.handle(ev); err == nil || bus.IsPermanent(err) {
		t.Fatalf("500 should be retryable: %v", err)
	}
	b.slack.FailNext(http.StatusGone) // channel_is_archived
	if err := b.handle(ev); !bus.IsPermanent(err) {
		t.Fatalf("410 should be permanent: %v", err)
	} else if strings.Contains(err.Error(), b.slack.Path) {
		t.Fatalf("webhook path leaked: %v", err)
	}
	if sent, err := store.AlertSent(context.Background(), b.pool, ChannelSlack, ev.GetEventId()); err != nil || sent {
		t.Fatalf("a refused alert was recorded as sent (%v)", err)
	}
	if err := b.handle(ev); err != nil {
		t.Fatal(err)
	}
	if n := len(b.slack.Messages()); n != 1 {
		t.Fatalf("want 1 accepted alert, got %d", n)
	}
}

// A 429 holds the channel for its Retry-After, in place: the alert is
// sent once the pause is over, within the same delivery, and alerts that
// arrive meanwhile join it in one digest.
func TestRateLimitHoldsTheChannelForRetryAfter(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.slack.RateLimitNext(1, "1")
	c := journey.NewCustomer()
	first := c.InvoiceFailed(journey.ID("in"), 1, b.now)
	start := time.Now()
	errs := make(chan error, 3)
	go func() { errs <- b.handle(first) }()
	b.slack.WaitForCalls(t, 1)
	others := []*billingv1.BillingEvent{c.InvoiceFailed(journey.ID("in"), 1, b.now), journey.NewCustomer().Dispute(5000, "fraudulent", b.now)}
	for _, ev := range others {
		go func() { errs <- b.handle(ev) }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	msgs := b.slack.Messages()
	if len(msgs) != 1 || b.slack.CallCount() != 2 {
		t.Fatalf("want one digest after one 429, got %d messages in %d calls", len(msgs), b.slack.CallCount())
	}
	if waited := msgs[0].At.Sub(start); waited < time.Second {
		t.Fatalf("sent %s after the 429 asked for 1s", waited)
	}
	ids := msgs[0].EventIDs
	slices.Sort(ids)
	want := []string{first.GetEventId(), others[0].GetEventId(), others[1].GetEventId()}
	slices.Sort(want)
	if !slices.Equal(ids, want) || !strings.HasPrefix(msgs[0].Text, "Digest: 3 billing alerts") {
		t.Fatalf("digest %q names %v, want %v", msgs[0].Text, ids, want)
	}
	var sizes []int
	rows, _ := b.pool.Query(context.Background(), `SELECT digest_size FROM support.alerts_sent ORDER BY event_id`)
	for rows.Next() {
		var n int
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, n)
	}
	if !slices.Equal(sizes, []int{3, 3, 3}) {
		t.Fatalf("recorded digest sizes %v", sizes)
	}
	if got := testutil.ToFloat64(b.m.AlertMessages.WithLabelValues(ChannelSlack, "digest")); got != 1 {
		t.Fatalf("lr_alert_messages_total{kind=digest} = %v", got)
	}
	if got := testutil.ToFloat64(b.m.AlertsSent.WithLabelValues(ChannelSlack)); got != 3 {
		t.Fatalf("lr_alerts_sent_total = %v", got)
	}
}

func histogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// A re-sent event and its original handled at the same time: the advisory
// lock lets only one of them pass the dedupe check.
func TestConcurrentDeliveriesOfOneEventSendOnce(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.slack.Hang(300 * time.Millisecond)
	ev := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, b.now)
	errs := make(chan error, 3)
	for range 3 {
		go func() { errs <- b.handle(ev) }()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := b.slack.CallCount(); n != 1 {
		t.Fatalf("want 1 webhook call, got %d", n)
	}
}

// A new durable starts at the beginning of a month of stream history; old
// events must not page anyone, unless an operator replays them.
func TestEventsOlderThanMaxAgeAreSkippedUnlessReplayed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.h.MaxAge = 96 * time.Hour
	ev := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, b.now.Add(-10*24*time.Hour))
	if err := b.handle(ev); err != nil {
		t.Fatal(err)
	}
	if n := b.slack.CallCount(); n != 0 {
		t.Fatalf("a 10-day-old event alerted")
	}
	if err := b.h.PostAlert(context.Background(), &bus.Delivery{Event: ev, Delivered: 1, Replay: true}); err != nil {
		t.Fatal(err)
	}
	if msgs := b.slack.Messages(); len(msgs) != 1 || !strings.HasPrefix(msgs[0].Text, "LATE: ") {
		t.Fatalf("a replayed old event should alert, marked late: %+v", msgs)
	}
	// Within the limit (Stripe retries for three days), late alerts still go.
	ev2 := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, b.now.Add(-50*time.Hour))
	if err := b.handle(ev2); err != nil {
		t.Fatal(err)
	}
	if n := len(b.slack.Messages()); n != 2 {
		t.Fatalf("a 50-hour-old event should still alert (late); got %d messages", n)
	}
}

// A backfill's snapshot of an object is history: however fresh its date,
// it pages nobody. A backfilled event is an event like any other.
func TestSnapshotsSendNoAlert(t *testing.T) {
	t.Parallel()
	b := setup(t)
	snap := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, b.now.Add(-time.Minute))
	snap.Source = billingv1.EventSource_EVENT_SOURCE_SNAPSHOT
	if err := b.handle(snap); err != nil {
		t.Fatal(err)
	}
	if n := b.slack.CallCount(); n != 0 {
		t.Fatalf("a snapshot alerted (%d calls)", n)
	}
	fromAPI := journey.NewCustomer().InvoiceFailed(journey.ID("in"), 1, b.now.Add(-time.Minute))
	fromAPI.Source = billingv1.EventSource_EVENT_SOURCE_API
	if err := b.handle(fromAPI); err != nil {
		t.Fatal(err)
	}
	if n := b.slack.CallCount(); n != 1 {
		t.Fatalf("a backfilled event of a minute ago should alert; %d calls", n)
	}
}
