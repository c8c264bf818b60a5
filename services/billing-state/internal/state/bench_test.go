package state_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/canonical"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/journeytest"
	"github.com/launchready/launchready/services/billing-state/internal/state"
)

// BenchmarkApplyEvent applies subscription updates for many customers from
// parallel goroutines, as the consumer's workers do. Run with
// -cpu to vary the workers: go test ./internal/state -run x -bench ApplyEvent -cpu 8.
func BenchmarkApplyEvent(b *testing.B) {
	store := state.New(sharedPool(b), state.Options{Policy: canonical.DefaultPolicy()})
	const customers = 500
	jb := make([]*journeytest.Builder, customers)
	for i := range jb {
		jb[i] = journeytest.New(b, fmt.Sprintf("cus_bench%d_%d", time.Now().UnixNano(), i), time.Now())
	}
	// Pre-build events outside the timer: each worker takes the next one.
	evs := make([]*billingv1.BillingEvent, b.N)
	for i := range evs {
		c := jb[i%customers]
		status := []string{"active", "past_due"}[(i/customers)%2]
		evs[i] = c.Subscription("customer.subscription.updated", i/customers+1, "sub_"+c.CustomerID, status, false, nil)
	}
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
