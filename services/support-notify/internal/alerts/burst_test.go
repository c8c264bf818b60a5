package alerts

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natstest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/services/support-notify/internal/metrics"
	"github.com/launchready/launchready/services/support-notify/internal/rules"
	"github.com/launchready/launchready/services/support-notify/internal/slack"
	"github.com/launchready/launchready/services/support-notify/internal/vendor"
	"github.com/launchready/launchready/test/testkit/fakes"
	"github.com/launchready/launchready/test/testkit/journey"
)

// TestBurstFoldsIntoDigestsWithinSLOAndOnceAcrossCrash sends 50 failed
// payments in 5 s to a Slack webhook that takes one message a second.
// Alone, the last alert would leave 50 s after the first; folded into
// digests every one is accepted within the SLO, set here to 15 s to show
// the difference. Midway the consumer's process dies after recording a
// digest and before acking it (its NATS connection closes), and a fresh
// process takes over the redeliveries: no event reaches Slack twice, none
// is missing, and no 429 goes unanswered.
func TestBurstFoldsIntoDigestsWithinSLOAndOnceAcrossCrash(t *testing.T) {
	t.Parallel()
	const total, slo = 50, 15 * time.Second
	ctx := context.Background()
	ns := natstest.Start(t)
	pool := newPool(t)
	hook := fakes.NewSlack("/services/" + journey.ID("T") + "/" + journey.ID("B") + "/" + journey.ID("x"))
	t.Cleanup(hook.Close)
	hook.SetPace(time.Second)
	handler := func() *Handler {
		m, err := metrics.New(prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		ch := slack.New(config.Secret(hook.URL()), vendor.New(vendor.Config{Vendor: "slack", Timeout: 5 * time.Second, Metrics: m}))
		return &Handler{Pool: pool, Rules: rules.Defaults(), Channel: ch, Metrics: m, Log: logging.Discard(), SLO: slo, Window: time.Second}
	}
	cfg := bus.ConsumerConfig{
		Durable:        "support-notify-alerts",
		FilterSubjects: bus.TypeFilterSubjects("support-notify-alerts", rules.Defaults().Types(rules.Alert)),
		Concurrency:    4, BatchSize: 100, AckWait: time.Second,
		BackoffBase: 50 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
	}

	// Process A dies once it has recorded a digest of at least five
	// alerts: no ack leaves for them.
	ids := map[string]bool{}
	evs := make([]*billingv1.BillingEvent, total)
	for i := range evs {
		evs[i] = journey.NewCustomer().InvoiceFailed(journey.ID("in"), int64(1+i%3), time.Now())
		ids[evs[i].GetEventId()] = true
	}
	start := time.Now()
	b := crashThenTakeOver(t, ns, cfg, handler, func(ctx context.Context) bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM support.alerts_sent WHERE digest_size >= 5`).Scan(&n)
		return err == nil && n > 0
	}, evs, 5*time.Second)
	waitRecorded(t, pool, total)
	// Every redelivery of what A recorded has been settled before the
	// counts below mean anything.
	waitSettled(t, b.js, cfg.Durable)

	seen := map[string]int{}
	msgs := hook.Messages()
	for _, m := range msgs {
		for _, id := range m.EventIDs {
			seen[id]++
		}
	}
	for id := range ids {
		if seen[id] != 1 {
			t.Errorf("event %s reached Slack %d times", id, seen[id])
		}
	}
	if len(seen) != total {
		t.Errorf("Slack names %d events, want %d", len(seen), total)
	}
	if b.redelivered.Load() == 0 {
		t.Error("nothing was redelivered after the crash; the test proved nothing")
	}
	if s := hook.Pace.Stats(); s.Unanswered != 0 {
		t.Errorf("%d requests ignored a Retry-After (%+v)", s.Unanswered, s)
	}
	if len(msgs) > total/3 {
		t.Errorf("%d messages for %d alerts: the burst was not folded", len(msgs), total)
	}
	var worst float64
	var late int
	if err := pool.QueryRow(ctx, `SELECT max(latency_seconds), count(*) FILTER (WHERE late) FROM support.alerts_sent`).Scan(&worst, &late); err != nil {
		t.Fatal(err)
	}
	if worst > slo.Seconds() || late > 0 {
		t.Errorf("slowest alert %.1fs, %d late; SLO %s", worst, late, slo)
	}
	t.Logf("%d alerts in %d messages, slowest %.2fs after its event, %d redeliveries after the crash, burst lasted %s",
		total, len(msgs), worst, b.redelivered.Load(), time.Since(start).Round(time.Millisecond))
}
