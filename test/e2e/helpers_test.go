package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/journey"
)

// startStack starts the whole system for one test. Every test gets its own
// database, broker, services, fakes, webhook secret and API token.
func startStack(t *testing.T, o harness.StackOptions) *harness.Stack {
	t.Helper()
	return harness.StartStack(t, o)
}

func newGen(t *testing.T) *journey.Gen {
	t.Helper()
	dir, err := testkit.FindFixturesDir()
	if err != nil {
		t.Fatal(err)
	}
	g, err := journey.NewGen(dir, "e"+harness.Random(3))
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func build(t *testing.T, b *journey.B) *journey.Journey {
	t.Helper()
	j, err := b.Build(t.Name(), journey.Want{})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// deliver posts each event once and requires a fresh 200 for it.
func deliver(t *testing.T, s *harness.Stack, evs ...*journey.Event) []harness.Answer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out []harness.Answer
	for _, e := range evs {
		a := s.Driver.Post(ctx, e.Raw)
		if a.Err != nil || a.Status != 200 {
			t.Fatalf("deliver %s %s: status %d err %v body %s", e.ID, e.Type, a.Status, a.Err, a.Body)
		}
		if a.Duplicate {
			t.Fatalf("deliver %s %s: first delivery answered duplicate", e.ID, e.Type)
		}
		out = append(out, a)
	}
	return out
}

// getStatus asks billing-state over gRPC.
func getStatus(s *harness.Stack, cus string) (*billingv1.CustomerStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.Status.GetCustomerStatus(ctx, &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: cus}})
}

// waitStatus polls GetCustomerStatus until the customer has want, and
// returns it with the time it took.
func waitStatus(t *testing.T, s *harness.Stack, cus string, want billingv1.BillingStatus, timeout time.Duration) (*billingv1.CustomerStatus, time.Duration) {
	t.Helper()
	start := time.Now()
	var last *billingv1.CustomerStatus
	var lastErr error
	ok := testkit.Poll(timeout, 20*time.Millisecond, func() bool {
		last, lastErr = getStatus(s, cus)
		return lastErr == nil && last.GetStatus() == want
	})
	if !ok {
		t.Fatalf("%s: status %v (err %v), want %v within %s", cus, last.GetStatus(), lastErr, want, timeout)
	}
	return last, time.Since(start)
}

func isNotFound(err error) bool { return status.Code(err) == codes.NotFound }

// processedOnce requires each event to appear exactly once in the table's
// event_id column.
func processedOnce(t *testing.T, s *harness.Stack, table string, evs ...*journey.Event) {
	t.Helper()
	for _, e := range evs {
		if n := s.Count(`SELECT count(*) FROM `+table+` WHERE event_id = $1`, e.ID); n != 1 {
			t.Errorf("%s has %d rows for %s (%s), want 1", table, n, e.ID, e.Type)
		}
	}
}

// slackFor returns the accepted alerts naming eventID.
func slackFor(s *harness.Stack, eventID string) int {
	return len(s.Slack.ByEvent()[eventID])
}

// watch opens WatchCustomerStatus and delivers every status on a channel.
// deadline 0 opens the stream without one, as a long-lived watcher would.
func watch(t *testing.T, s *harness.Stack, cus string, deadline time.Duration) <-chan *billingv1.CustomerStatus {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if deadline > 0 {
		ctx, cancel = context.WithTimeout(context.Background(), deadline)
	}
	stream, err := s.Status.WatchCustomerStatus(ctx, &billingv1.WatchCustomerStatusRequest{CustomerId: cus})
	if err != nil {
		cancel()
		t.Fatalf("watch %s: %v", cus, err)
	}
	ch := make(chan *billingv1.CustomerStatus, 64)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ch)
		for {
			st, err := stream.Recv()
			if err != nil {
				if !errors.Is(err, io.EOF) && status.Code(err) != codes.Canceled {
					ch <- &billingv1.CustomerStatus{CustomerId: "error: " + err.Error()}
				}
				return
			}
			ch <- st
		}
	}()
	t.Cleanup(func() { cancel(); wg.Wait() })
	return ch
}

// next waits for the next watched status.
func next(t *testing.T, ch <-chan *billingv1.CustomerStatus, timeout time.Duration) *billingv1.CustomerStatus {
	t.Helper()
	select {
	case st, ok := <-ch:
		if !ok {
			t.Fatalf("watch stream ended")
		}
		return st
	case <-time.After(timeout):
		t.Fatalf("no status on the watch stream within %s", timeout)
		return nil
	}
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d.Microseconds())/1000) }
