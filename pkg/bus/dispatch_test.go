package bus_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit"

	"github.com/launchready/launchready/pkg/bus"
)

func TestPartitionedHandlersNeverShareACustomer(t *testing.T) {
	t.Parallel()
	b := setup(t)
	const n = 240
	for i := range n {
		b.publish(t, event(fmt.Sprintf("evt_p%03d", i), "invoice.paid", fmt.Sprintf("cus_%d", i%6)))
	}
	var mu sync.Mutex
	inFlight := map[string]int{}
	var clash string
	var log batchLog
	cfg := quiet("partitioned")
	cfg.Concurrency, cfg.BatchSize = 4, 8
	b.runBatch(t, cfg, func(_ context.Context, ds []*bus.Delivery) []error {
		mine := map[string]bool{}
		mu.Lock()
		for _, d := range ds {
			c := d.Event.GetCustomerId()
			if inFlight[c] > 0 && !mine[c] && clash == "" {
				clash = c
			}
			if !mine[c] {
				mine[c] = true
				inFlight[c]++
			}
		}
		mu.Unlock()
		time.Sleep(2 * time.Millisecond) // a transaction holding the customers' locks
		mu.Lock()
		for c := range mine {
			inFlight[c]--
		}
		mu.Unlock()
		log.add(ds)
		return make([]error, len(ds))
	}, bus.ConsumerOptions{PartitionKey: billingv1.EncodedCustomerID})
	testkit.Eventually(t, 20*time.Second, "all handled", func() bool { return settled(t, b.js, "partitioned") })
	mu.Lock()
	defer mu.Unlock()
	if clash != "" {
		t.Fatalf("two handlers had %s at once", clash)
	}
	if len(log.handled) != n {
		t.Fatalf("handled %d events, want %d", len(log.handled), n)
	}
}
