package security

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/launchready/launchready/pkg/pg/pgtest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/journey"
)

// grpcWatchCap is GRPC_MAX_WATCH_PER_TOKEN for the attack stack.
const grpcWatchCap = 3

// Attacks on billing-state's gRPC API by a holder of a read token: none of
// them gets past validation, and billing-state keeps serving in the same
// process throughout (the harness supervises it, as Kubernetes would, so a
// crash would show as a restart).
func TestGRPCAttacksLeaveBillingStateServing(t *testing.T) {
	s := harness.StartStack(t, harness.StackOptions{
		Services:   []string{"ingress", "billing-state"},
		Supervise:  true,
		ServiceEnv: map[string]map[string]string{"billing-state": {"GRPC_MAX_WATCH_PER_TOKEN": fmt.Sprint(grpcWatchCap)}},
	})
	bs := s.Procs["billing-state"]
	pid := bs.Pid()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// The attack of the incident: one Watch whose customer id would push
	// the NATS SUB line past the server's 4,096-byte control line.
	t.Run("5000-character watch id", func(t *testing.T) {
		for _, id := range []string{strings.Repeat("a", 5000), "cus_x.>", "cus_x *"} {
			stream, err := s.Status.WatchCustomerStatus(ctx, &billingv1.WatchCustomerStatusRequest{CustomerId: id})
			if err == nil {
				_, err = stream.Recv()
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Errorf("watch %.12q...: %v, want InvalidArgument", id, err)
			}
		}
	})

	t.Run("long lookup fields", func(t *testing.T) {
		for name, lookup := range map[string]*billingv1.GetCustomerStatusRequest{
			"customer_id": {Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: "cus_" + strings.Repeat("a", 5000)}},
			"user_id":     {Lookup: &billingv1.GetCustomerStatusRequest_UserId{UserId: strings.Repeat("u", 256)}},
			"email":       {Lookup: &billingv1.GetCustomerStatusRequest_Email{Email: strings.Repeat("e", 310) + "@example.com"}},
		} {
			_, err := s.Status.GetCustomerStatus(ctx, lookup)
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), name) {
				t.Errorf("%s: %v, want InvalidArgument naming the field", name, err)
			}
		}
	})

	// A customer whose changes the watchers below must see, applied after
	// every refusal.
	dir, err := testkit.FindFixturesDir()
	if err != nil {
		t.Fatal(err)
	}
	gen, err := journey.NewGen(dir, "sec"+harness.Random(3))
	if err != nil {
		t.Fatal(err)
	}
	journey, err := journey.TrialConverts(gen.Customer("watch", time.Now().Add(-time.Hour)))
	if err != nil {
		t.Fatal(err)
	}

	var watchers []<-chan watched
	owner := t // the streams outlive the subtest that opens them
	t.Run("watch streams past the per-token cap", func(t *testing.T) {
		for i := 0; i < grpcWatchCap; i++ {
			w, err := openWatch(ctx, owner, s, journey.Customer)
			if err != nil {
				t.Fatalf("watch %d of %d: %v", i+1, grpcWatchCap, err)
			}
			watchers = append(watchers, w)
		}
		for i := 0; i < 2; i++ {
			if _, err := openWatch(ctx, owner, s, journey.Customer); status.Code(err) != codes.ResourceExhausted {
				t.Errorf("watch %d: %v, want ResourceExhausted", grpcWatchCap+1+i, err)
			}
		}
	})
	if len(watchers) != grpcWatchCap {
		t.Fatalf("%d watchers open, want %d", len(watchers), grpcWatchCap)
	}

	t.Run("still serving", func(t *testing.T) {
		for _, e := range journey.Events {
			if a := s.Driver.Post(ctx, e.Raw); a.Err != nil || a.Status != http.StatusOK {
				t.Fatalf("deliver %s: status %d, %v", e.Type, a.Status, a.Err)
			}
		}
		for i, w := range watchers {
			if err := waitWatched(w, journey.Want.Status, time.Minute); err != nil {
				t.Errorf("watcher %d: %v", i+1, err)
			}
		}
		var got *billingv1.CustomerStatus
		if !testkit.Poll(time.Minute, 20*time.Millisecond, func() bool {
			got, err = s.Status.GetCustomerStatus(ctx, &billingv1.GetCustomerStatusRequest{
				Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: journey.Customer}})
			return err == nil && got.GetStatus() == journey.Want.Status
		}) {
			t.Fatalf("GetCustomerStatus: %v %v, want %v", got.GetStatus(), err, journey.Want.Status)
		}
		resp, err := http.Get(s.Ops["billing-state"] + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/healthz %d", resp.StatusCode)
		}
		if !bs.Running() || bs.Pid() != pid || bs.Starts() != 1 || bs.Crashes() != 0 {
			t.Fatalf("billing-state restarted: running %v, pid %d (was %d), %d starts, %d crashes", bs.Running(), bs.Pid(), pid, bs.Starts(), bs.Crashes())
		}
	})
}

// watched is one message of a Watch stream, or the error that ended it.
type watched struct {
	status *billingv1.CustomerStatus
	err    error
}

// openWatch opens a Watch stream and waits for its first message; the
// stream then runs until owner ends.
func openWatch(ctx context.Context, owner *testing.T, s *harness.Stack, customer string) (<-chan watched, error) {
	ctx, cancel := context.WithCancel(ctx)
	stream, err := s.Status.WatchCustomerStatus(ctx, &billingv1.WatchCustomerStatusRequest{CustomerId: customer})
	if err != nil {
		cancel()
		return nil, err
	}
	first, err := stream.Recv()
	if err != nil {
		cancel()
		return nil, err
	}
	ch := make(chan watched, 64)
	ch <- watched{status: first}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(ch)
		for {
			st, err := stream.Recv()
			ch <- watched{status: st, err: err}
			if err != nil {
				return
			}
		}
	}()
	owner.Cleanup(func() { cancel(); <-done })
	return ch, nil
}

// waitWatched reads w until it shows want.
func waitWatched(w <-chan watched, want billingv1.BillingStatus, timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	last := billingv1.BillingStatus_BILLING_STATUS_UNSPECIFIED
	for {
		select {
		case m, ok := <-w:
			switch {
			case !ok:
				return fmt.Errorf("stream closed at %v", last)
			case m.err != nil:
				return fmt.Errorf("stream ended at %v: %w", last, m.err)
			case m.status.GetStatus() == want:
				return nil
			}
			last = m.status.GetStatus()
		case <-timer.C:
			return fmt.Errorf("still %v after %s, want %v", last, timeout, want)
		}
	}
}

// A token shorter than 32 characters stops billing-state at start, with a
// message that names the token's entry and never shows the token.
func TestBillingStateRefusesShortTokens(t *testing.T) {
	bin := harness.Binaries(t)
	short := harness.Random(15) // 30 hex characters
	p := harness.Start(t, "billing-state", filepath.Join(bin, "billing-state"), []string{
		"STATUS_API_TOKENS=mobile=" + short + ":read",
		"DATABASE_URL=" + pgtest.NewDatabase(t),
		"NATS_URL=nats://127.0.0.1:1",
		fmt.Sprintf("GRPC_ADDR=127.0.0.1:%d", harness.FreePort(t)),
		fmt.Sprintf("HTTP_ADDR=127.0.0.1:%d", harness.FreePort(t)),
		"OTEL_EXPORTER_OTLP_ENDPOINT=",
	})
	testkit.Eventually(t, 30*time.Second, "billing-state to exit", func() bool { return !p.Running() })
	out := p.Output()
	if !strings.Contains(out, "exit status 1") {
		t.Errorf("billing-state did not exit with status 1:\n%s", out)
	}
	if !strings.Contains(out, `the token of \"mobile\" is shorter than 32 characters`) {
		t.Errorf("no clear message naming the entry:\n%s", out)
	}
	if strings.Contains(out, short) {
		t.Error("the output shows the token")
	}
	if strings.Contains(out, "billing-state starting") {
		t.Error("billing-state started with a short token")
	}
}
