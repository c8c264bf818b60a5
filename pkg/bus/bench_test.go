package bus

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/pkg/natsembed"
)

// benchConcurrency matches ingress under `make bench`: 16 requests in flight.
const benchConcurrency = 16

func benchSetup(b *testing.B) jetstream.JetStream { return benchSetupT(b) }

func benchSetupT(b testing.TB) jetstream.JetStream {
	b.Helper()
	// An open server: the benchmarks measure the library, and importing
	// natstest here would be an import cycle (natstest provisions with bus).
	srv, err := natsembed.Start(natsembed.Options{Port: -1, StoreDir: b.TempDir(), ServerName: "bench"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	nc, js, err := Connect(ctx, ConnConfig{URL: srv.ClientURL()}, "bench", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	if err := EnsureStreams(ctx, js, StreamConfig{Storage: jetstream.FileStorage}); err != nil {
		b.Fatal(err)
	}
	return js
}

func benchEvent(id string) *billingv1.BillingEvent {
	// Roughly the size of a real invoice event with its raw JSON.
	return &billingv1.BillingEvent{
		EventId: id, Type: "invoice.payment_succeeded", CustomerId: "cus_bench", SubscriptionId: "sub_bench",
		InvoiceId: "in_bench", AmountPaid: 2000, Currency: "usd", Status: "paid",
		RawJson: make([]byte, 3000),
	}
}

// BenchmarkPublishEvent measures synchronous publishes (each waits for its
// PubAck) from 16 goroutines into file-backed JetStream on the embedded
// server, including tracing and header injection.
func BenchmarkPublishEvent(b *testing.B) {
	js := benchSetup(b)
	pub := NewPublisher(js, nil)
	var seq atomic.Int64
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism((benchConcurrency + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		local := make([]time.Duration, 0, 1024)
		ctx := context.Background()
		for pb.Next() {
			id := fmt.Sprintf("evt_bench_%d", seq.Add(1))
			start := time.Now()
			if _, err := pub.PublishEvent(ctx, benchEvent(id)); err != nil {
				b.Error(err)
				return
			}
			local = append(local, time.Since(start))
		}
		mu.Lock()
		lat = append(lat, local...)
		mu.Unlock()
	})
	b.StopTimer()
	reportLatency(b, lat)
}

// BenchmarkPublishRawBaseline is the same load through jetstream.PublishMsg
// alone, to show what the publisher adds (span, header injection, proto).
func BenchmarkPublishRawBaseline(b *testing.B) {
	js := benchSetup(b)
	data, err := proto.Marshal(benchEvent("evt_raw"))
	if err != nil {
		b.Fatal(err)
	}
	var seq atomic.Int64
	b.SetParallelism((benchConcurrency + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			m := &nats.Msg{Subject: "billing.events.invoice.payment_succeeded", Data: data,
				Header: nats.Header{jetstream.MsgIDHeader: {fmt.Sprintf("evt_raw_%d", seq.Add(1))}}}
			if _, err := js.PublishMsg(ctx, m); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(float64(len(lat))/b.Elapsed().Seconds(), "events/s")
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
}

// BenchmarkConsume measures the runner end to end with a handler that does
// nothing: plain Ack against DoubleAck (waits for the server's confirmation).
func BenchmarkConsume(b *testing.B) {
	for _, double := range []bool{false, true} {
		name := "ack"
		if double {
			name = "double-ack"
		}
		b.Run(name, func(b *testing.B) {
			js := benchSetup(b)
			pub := NewPublisher(js, nil)
			ctx := context.Background()
			for i := range b.N {
				if _, err := pub.PublishEvent(ctx, benchEvent(fmt.Sprintf("evt_%d", i))); err != nil {
					b.Fatal(err)
				}
			}
			var handled, last, maxGap atomic.Int64
			last.Store(time.Now().UnixNano())
			all := make(chan struct{})
			c := NewConsumer(js, ConsumerConfig{Durable: "bench", Concurrency: 8}, func(context.Context, *Delivery) error {
				// The longest pause between two deliveries shows stalls
				// that an average would hide.
				now := time.Now().UnixNano()
				if gap := now - last.Swap(now); gap > maxGap.Load() {
					maxGap.Store(gap)
				}
				if handled.Add(1) == int64(b.N) {
					close(all)
				}
				return nil
			}, ConsumerOptions{})
			c.doubleAck = double
			runCtx, cancel := context.WithCancel(ctx)
			done := make(chan error, 1)
			b.ResetTimer()
			go func() { done <- c.Run(runCtx) }()
			<-all
			b.StopTimer()
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
			b.ReportMetric(float64(time.Duration(maxGap.Load()).Milliseconds()), "max-gap-ms")
		})
	}
}
