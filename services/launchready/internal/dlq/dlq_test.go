package dlq_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	billingstate "github.com/launchready/launchready/services/billing-state"
	"github.com/launchready/launchready/services/launchready/internal/dlq"
	"github.com/launchready/launchready/services/launchready/internal/status"
	"github.com/launchready/launchready/test/testkit"
)

func token(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestListAndReplayAgainstBillingState runs billing-state on a real NATS
// server and Postgres database, dead-letters two messages, and lists and
// replays them with the command.
func TestListAndReplayAgainstBillingState(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ns := natstest.Start(t)
	dbURL := pgtest.NewDatabase(t)
	tok := token(t)
	env := ns.Env(natsauth.BillingState)
	for k, v := range map[string]string{
		"DATABASE_URL": dbURL, "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
		"STATUS_API_TOKENS": "ops=" + tok + ":read+admin", "CONSUMER_MAX_DELIVER": "2",
		"CONSUMER_BACKOFF_BASE": "20ms", "CONSUMER_BACKOFF_MAX": "100ms",
	} {
		env[k] = v
	}
	cfg, err := billingstate.ConfigFromEnv(config.Map(env))
	if err != nil {
		t.Fatal(err)
	}
	ready := make(chan map[string]string, 1)
	cfg.Ready = func(a map[string]string) { ready <- a }
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- billingstate.Run(runCtx, cfg) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("billing-state: %v", err)
		}
	})
	var addrs map[string]string
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("billing-state ended: %v", err)
	}
	// Events arrive as ingress publishes them, as its user.
	nc, js, err := bus.Connect(ctx, ns.Conn(natsauth.Ingress), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	pub := bus.NewPublisher(js, nil)
	db, err := pg.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	// The command runs as the admin, the only user that may read and
	// remove dead letters.
	getenv := config.Map(ns.Env(natsauth.Admin))
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := dlq.Main(ctx, args, getenv, &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, _ := run("list"); code != 0 || !strings.Contains(out, "no dead letters") {
		t.Fatalf("empty list: %d %q", code, out)
	}

	// A poison message, and an event the database refuses until fixed.
	if _, err := pub.Publish(ctx, bus.EventSubject("invoice.paid"), "poison-1", []byte{0xff, 0xff}, nil); err != nil {
		t.Fatal(err)
	}
	ev := &billingv1.BillingEvent{EventId: "evt_cli_fail1", Type: "customer.subscription.created", ObjectType: "subscription",
		CustomerId: "cus_Cli1", SubscriptionId: "sub_Cli1", Status: "active"}
	if _, err := db.Exec(ctx, `CREATE FUNCTION billing.test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.event_id = 'evt_cli_fail1' THEN RAISE EXCEPTION 'refused for the test'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER test_refuse BEFORE INSERT ON billing.processed_events FOR EACH ROW EXECUTE FUNCTION billing.test_refuse();`); err != nil {
		t.Fatal(err)
	}
	if _, err := pub.PublishEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}
	var rows []map[string]any
	testkit.Eventually(t, 15*time.Second, "two dead letters listed", func() bool {
		rows = nil
		code, out, errs := run("list", "--json", "--consumer", "billing-state")
		if code != 0 {
			t.Fatalf("list: %d %s", code, errs)
		}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if line == "" {
				continue
			}
			var r map[string]any
			if err := json.Unmarshal([]byte(line), &r); err != nil {
				t.Fatalf("list --json line %q: %v", line, err)
			}
			rows = append(rows, r)
		}
		return len(rows) >= 2
	})
	var failID string
	for _, r := range rows {
		if r["event_id"] == "evt_cli_fail1" {
			failID = strconv.FormatFloat(r["id"].(float64), 'f', 0, 64)
			if r["delivered"].(float64) != 2 || !strings.Contains(r["error"].(string), "refused for the test") {
				t.Fatalf("failing event row %v", r)
			}
		} else if r["delivered"].(float64) != 1 {
			t.Fatalf("poison row %v: want one delivery", r)
		}
	}
	code, out, _ := run("list")
	if code != 0 || !strings.Contains(out, "evt_cli_fail1") || !strings.Contains(out, "billing-state") {
		t.Fatalf("table: %d\n%s", code, out)
	}

	if _, err := db.Exec(ctx, `DROP TRIGGER test_refuse ON billing.processed_events`); err != nil {
		t.Fatal(err)
	}
	code, out, errs := run("replay", failID)
	if code != 0 || !strings.Contains(out, "replayed "+failID) {
		t.Fatalf("replay: %d %q %q", code, out, errs)
	}
	// The replayed event is applied: the status command sees it.
	statusEnv := config.Map(map[string]string{"GRPC_ADDR": addrs["grpc"], "STATUS_API_TOKEN": tok})
	testkit.Eventually(t, 10*time.Second, "the replayed event applied", func() bool {
		var sout, serr bytes.Buffer
		return status.Main(ctx, []string{"cus_Cli1"}, statusEnv, &sout, &serr) == 0 && strings.Contains(sout.String(), "active")
	})
	if code, _, errs := run("replay", failID); code != 1 || !strings.Contains(errs, "no such dead letter") {
		t.Fatalf("second replay: %d %q", code, errs)
	}
	if code, _, _ := run("replay", "abc"); code != 2 {
		t.Fatalf("bad id: %d", code)
	}
	// The poison message cannot be replayed usefully: purge it.
	if code, _, _ := run("purge"); code != 2 {
		t.Fatalf("purge without --consumer or --all: %d", code)
	}
	if code, out, errs := run("purge", "--consumer", "billing-state"); code != 0 || !strings.Contains(out, "purged 1 dead letters") {
		t.Fatalf("purge: %d %q %q", code, out, errs)
	}
	if code, out, _ := run("list"); code != 0 || !strings.Contains(out, "no dead letters") {
		t.Fatalf("after purge: %d %q", code, out)
	}
	// Another user's credentials: the server refuses the purge.
	asBillingState := config.Map(ns.Env(natsauth.BillingState))
	var pout, perr bytes.Buffer
	if code := dlq.Main(ctx, []string{"purge", "--all", "--timeout", "2s"}, asBillingState, &pout, &perr); code != 1 {
		t.Fatalf("purge as billing-state: %d %q %q", code, pout.String(), perr.String())
	}
	if code, _, _ := run("frobnicate"); code != 2 {
		t.Fatalf("unknown subcommand: %d", code)
	}
	if code, _, _ := run(); code != 2 {
		t.Fatalf("no subcommand: %d", code)
	}
}
