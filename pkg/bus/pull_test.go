package bus_test

import (
	"context"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/test/testkit"
)

func TestConsumerSurvivesServerRestart(t *testing.T) {
	t.Parallel()
	b := setup(t)
	var rec recorder
	b.run(t, quiet("steadfast"), func(_ context.Context, d *bus.Delivery) error {
		rec.add(d)
		return nil
	}, bus.ConsumerOptions{})
	b.publish(t, event("evt_before_outage", "invoice.paid", "cus_r"))
	testkit.Eventually(t, 10*time.Second, "first event", func() bool { return rec.len() == 1 })

	b.srv.Shutdown()
	b.srv.Restart()
	testkit.Eventually(t, 20*time.Second, "publish after restart", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		_, err := b.pub.PublishEvent(ctx, event("evt_after_outage", "invoice.paid", "cus_r"))
		return err == nil
	})
	testkit.Eventually(t, 20*time.Second, "event after restart", func() bool { return rec.len() == 2 })
	got, _ := rec.snapshot()
	if got[1].Event.EventId != "evt_after_outage" {
		t.Fatalf("after restart got %+v", got[1])
	}
}
