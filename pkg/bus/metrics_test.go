package bus_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/test/testkit"
)

func TestConsumerMetrics(t *testing.T) {
	t.Parallel()
	b := setup(t)
	reg := prometheus.NewRegistry()
	b.run(t, quiet("metered"), func(_ context.Context, d *bus.Delivery) error {
		switch {
		case strings.HasSuffix(d.Event.EventId, "bad"):
			return bus.Permanent(errors.New("bad"))
		case strings.HasSuffix(d.Event.EventId, "flaky") && d.Delivered == 1:
			return errors.New("flaky")
		case strings.HasSuffix(d.Event.EventId, "seen"):
			d.MarkDuplicate()
		}
		return nil
	}, bus.ConsumerOptions{Registry: reg})
	pub := bus.NewPublisher(b.js, nil, bus.WithPublisherRegistry(reg))
	for _, id := range []string{"evt_ok", "evt_bad", "evt_flaky", "evt_ok", "evt_seen"} {
		if _, err := pub.PublishEvent(testCtx(t), event(id, "invoice.paid", "cus_m")); err != nil {
			t.Fatal(err)
		}
	}
	testkit.Eventually(t, 10*time.Second, "all settled", func() bool {
		return settled(t, b.js, "metered") && streamMsgs(t, b.js, bus.StreamDLQ) == 1
	})
	testkit.Eventually(t, 10*time.Second, "counters", func() bool {
		return deliveries(t, reg, "ack") == 3
	})
	for name, want := range map[string]float64{
		"nak":         1,
		"dead_letter": 1,
	} {
		if got := deliveries(t, reg, name); got != want {
			t.Errorf("deliveries{outcome=%s} = %v, want %v", name, got, want)
		}
	}
	err := testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP lr_consumer_dead_letters_total Messages moved to BILLING_DLQ.
# TYPE lr_consumer_dead_letters_total counter
lr_consumer_dead_letters_total{consumer="metered"} 1
# HELP lr_consumer_duplicates_total Deliveries acked because the consumer had already processed the event id.
# TYPE lr_consumer_duplicates_total counter
lr_consumer_duplicates_total{consumer="metered"} 1
# HELP lr_consumer_redeliveries_total Deliveries of a message that had been delivered before.
# TYPE lr_consumer_redeliveries_total counter
lr_consumer_redeliveries_total{consumer="metered"} 1
# HELP lr_consumer_pending Messages waiting for this consumer: not yet delivered plus delivered and unacked.
# TYPE lr_consumer_pending gauge
lr_consumer_pending{consumer="metered"} 0
# HELP lr_dlq_depth Dead letters of this consumer waiting in BILLING_DLQ.
# TYPE lr_dlq_depth gauge
lr_dlq_depth{consumer="metered"} 1
# HELP lr_publish_total Publishes by outcome: ok, duplicate (already stored) or error.
# TYPE lr_publish_total counter
lr_publish_total{outcome="duplicate"} 1
lr_publish_total{outcome="ok"} 4
`), "lr_consumer_dead_letters_total", "lr_consumer_duplicates_total", "lr_consumer_redeliveries_total", "lr_consumer_pending", "lr_dlq_depth", "lr_publish_total")
	if err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(reg, "lr_consumer_processing_seconds", "lr_publish_seconds"); n != 2 {
		t.Fatalf("histograms collected: %d", n)
	}
	// One wait per stored message: the redelivery is not a second wait.
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var waits uint64 = 99
	for _, mf := range mfs {
		if mf.GetName() == "lr_consumer_wait_seconds" {
			waits = mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	if waits != 4 {
		t.Fatalf("lr_consumer_wait_seconds observed %d waits, want 4 (the stored messages)", waits)
	}
}

// deliveries reads lr_consumer_deliveries_total for one outcome.
func deliveries(t *testing.T, reg *prometheus.Registry, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "lr_consumer_deliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// metricValue reads a counter or gauge that has one series.
func metricValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		if m.GetGauge() != nil {
			return m.GetGauge().GetValue()
		}
		return m.GetCounter().GetValue()
	}
	t.Fatalf("no single series named %s", name)
	return 0
}
