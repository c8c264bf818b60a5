package state_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/canonical"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/test/testkit/journey"
)

// benchEvents builds n subscription updates spread over 500 customers, each
// flipping its customer's status.
func benchEvents(b *testing.B, n int) []*billingv1.BillingEvent {
	const customers = 500
	jb := make([]*journey.Builder, customers)
	for i := range jb {
		jb[i] = journey.New(b, fmt.Sprintf("cus_bench%d_%d", time.Now().UnixNano(), i), time.Now())
	}
	evs := make([]*billingv1.BillingEvent, n)
	for i := range evs {
		c := jb[i%customers]
		status := []string{"active", "past_due"}[(i/customers)%2]
		evs[i] = c.Subscription("customer.subscription.updated", i/customers+1, "sub_"+c.CustomerID, status, false, nil)
	}
	return evs
}

// BenchmarkApplyEvent applies subscription updates for many customers from
// parallel goroutines, one transaction per event. Run with -cpu to vary the
// workers: go test ./internal/state -run x -bench ApplyEvent -cpu 8.
func BenchmarkApplyEvent(b *testing.B) {
	store := state.New(sharedPool(b), state.Options{Policy: canonical.DefaultPolicy()})
	// Pre-built outside the timer: each worker takes the next one.
	evs := benchEvents(b, b.N)
	var next atomic.Int64
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ev := evs[next.Add(1)-1]
			if _, err := store.ApplyEvent(ctx, ev, state.ApplyOptions{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkApplyBatch is BenchmarkApplyEvent with the consumer's batching:
// each worker applies the next batch of consecutive events in one shared
// transaction. -cpu sets the workers, as CONSUMER_CONCURRENCY does.
func BenchmarkApplyBatch(b *testing.B) {
	for _, size := range []int{8, 32, 64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			store := state.New(sharedPool(b), state.Options{Policy: canonical.DefaultPolicy()})
			evs := benchEvents(b, b.N)
			var next atomic.Int64
			ctx := context.Background()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				items := make([]state.BatchItem, 0, size)
				flush := func() {
					for _, r := range store.ApplyBatch(ctx, items) {
						if r.Err != nil {
							b.Error(r.Err)
						}
					}
					items = items[:0]
				}
				for pb.Next() {
					items = append(items, state.BatchItem{Event: evs[next.Add(1)-1]})
					if len(items) == size {
						flush()
					}
				}
				if len(items) > 0 {
					flush()
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
		})
	}
}
