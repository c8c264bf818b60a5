package bus_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/test/testkit"
)

func TestConsumerKeepsSlowHandlerAlive(t *testing.T) {
	t.Parallel()
	b := setup(t)
	cfg := quiet("slow")
	cfg.AckWait = 300 * time.Millisecond
	var calls atomic.Int32
	done := make(chan struct{})
	b.run(t, cfg, func(ctx context.Context, d *bus.Delivery) error {
		if calls.Add(1) == 1 {
			// Work for four ack windows; without InProgress the server
			// would redeliver to another worker meanwhile.
			time.Sleep(4 * cfg.AckWait)
			close(done)
		}
		return nil
	}, bus.ConsumerOptions{})
	b.publish(t, event("evt_slow", "invoice.finalized", "cus_5"))
	<-done
	testkit.Eventually(t, 10*time.Second, "ack", func() bool { return settled(t, b.js, "slow") })
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times; the message was redelivered while in progress", n)
	}
}
