package status_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/pkg/stripeevent"
	billingstate "github.com/launchready/launchready/services/billing-state"
	"github.com/launchready/launchready/services/launchready/internal/status"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/journey"
)

func token(t *testing.T) string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestStatusAgainstBillingState runs billing-state on a real NATS server and
// Postgres database, sends it a real subscription event, and reads the
// customer back with the command.
func TestStatusAgainstBillingState(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	ns := natstest.Start(t)
	read, admin := token(t), token(t)
	svcEnv := ns.Env(natsauth.BillingState)
	for k, v := range map[string]string{
		"DATABASE_URL": pgtest.NewDatabase(t), "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
		"STATUS_API_TOKENS": "mobile=" + read + ":read,ops=" + admin + ":admin",
		"STATUS_PAGE_ADDR":  "127.0.0.1:0", "STATUS_PAGE_URL": "http://127.0.0.1:8095", "STATUS_LINK_SECRETS": token(t) + token(t),
	} {
		svcEnv[k] = v
	}
	cfg, err := billingstate.ConfigFromEnv(config.Map(svcEnv))
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

	raw, err := os.ReadFile(filepath.Join(testkit.FixturesDir(t), "stripe-sync-engine", "subscription_created.json"))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := stripeevent.Normalize(raw)
	if err != nil {
		t.Fatal(err)
	}
	nc, js, err := bus.Connect(ctx, ns.Conn(natsauth.Ingress), "test", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := bus.NewPublisher(js, nil).PublishEvent(ctx, ev); err != nil {
		t.Fatal(err)
	}

	env := config.Map(map[string]string{"GRPC_ADDR": addrs["grpc"], "STATUS_API_TOKEN": read})
	run := func(getenv config.Getenv, args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := status.Main(ctx, args, getenv, &out, &errb)
		return code, out.String(), errb.String()
	}
	var out string
	testkit.Eventually(t, 10*time.Second, "the customer to appear", func() bool {
		var code int
		code, out, _ = run(env, "cus_IhGfebO16cMIGN")
		return code == 0
	})
	for _, want := range []string{"cus_IhGfebO16cMIGN", "active", "sub_JdIzvfy6o5GZRd", "price_1IDQm5JDPojXS6LNM31hxKzp", "2021-07-08T10:41:58Z"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(out, "entitled") || !strings.Contains(out, "yes") {
		t.Errorf("entitlement not shown:\n%s", out)
	}
	if strings.Contains(out, "smoke test") {
		t.Errorf("a real customer shown as a smoke test:\n%s", out)
	}

	code, out, errs := run(env, "cus_IhGfebO16cMIGN", "--json", "--events", "5")
	if code != 0 {
		t.Fatalf("json: %d %s", code, errs)
	}
	var doc struct {
		Status map[string]any   `json:"status"`
		Events []map[string]any `json:"events"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("json output %q: %v", out, err)
	}
	if doc.Status["status"] != "BILLING_STATUS_ACTIVE" || doc.Status["entitled"] != true || len(doc.Events) != 1 || doc.Events[0]["event_id"] != ev.GetEventId() {
		t.Fatalf("json: %+v", doc)
	}
	if code, out, _ := run(env, "--events", "3", "cus_IhGfebO16cMIGN"); code != 0 || !strings.Contains(out, "customer.subscription.created") || !strings.Contains(out, "none -> active") {
		t.Fatalf("timeline: %d\n%s", code, out)
	}

	// A customer made by `launchready smoke --via webhook` shows its mark,
	// as GetCustomerStatus serves it.
	smoke := journey.New(t, "cus_lrsmokestatus1", time.Now().Add(-time.Minute).Truncate(time.Second))
	if _, err := bus.NewPublisher(js, nil).PublishEvent(ctx, smoke.SmokeInvoice(0, "in_lrsmokestatus1", "status1")); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "the smoke customer to appear", func() bool {
		var code int
		code, out, _ = run(env, smoke.CustomerID)
		return code == 0
	})
	if !strings.Contains(out, "smoke test") || !strings.Contains(out, "run status1") {
		t.Errorf("smoke customer not marked:\n%s", out)
	}
	code, out, errs = run(env, smoke.CustomerID, "--json")
	var smokeDoc map[string]any
	if err := json.Unmarshal([]byte(out), &smokeDoc); code != 0 || err != nil || smokeDoc["smoke_run"] != "status1" {
		t.Errorf("json of the smoke customer: %d %v %s %s", code, err, out, errs)
	}

	// A link to the customer's status page, served on STATUS_PAGE_ADDR.
	code, out, errs = run(env, "--link", "--ttl", "10m", "cus_IhGfebO16cMIGN")
	url, until, _ := strings.Cut(strings.TrimSpace(out), "\t")
	if code != 0 || !strings.HasPrefix(url, "http://127.0.0.1:8095/s/cus_IhGfebO16cMIGN.") || !strings.HasPrefix(until, "(until ") {
		t.Fatalf("--link: %d %q %q", code, out, errs)
	}
	res, err := http.Get(strings.Replace(url, "127.0.0.1:8095", addrs["status page"], 1))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(page), "Your plan is active") {
		t.Fatalf("the linked page: %d\n%s", res.StatusCode, page)
	}
	if code, _, _ := run(env, "--link", "--json", "cus_IhGfebO16cMIGN"); code != 2 {
		t.Fatalf("--link with --json: %d, want 2", code)
	}

	// Errors.
	if code, _, errs := run(env, "cus_nobody"); code != 1 || !strings.Contains(errs, "customer not found") {
		t.Fatalf("unknown customer: %d %q", code, errs)
	}
	if code, _, errs := run(env, "--email", "nobody@example.com"); code != 1 || !strings.Contains(errs, "customer not found") {
		t.Fatalf("unknown email: %d %q", code, errs)
	}
	wrong := config.Map(map[string]string{"GRPC_ADDR": addrs["grpc"], "STATUS_API_TOKEN": token(t)})
	if code, _, errs := run(wrong, "cus_IhGfebO16cMIGN"); code != 1 || !strings.Contains(errs, "Unauthenticated") || strings.Contains(errs, read) {
		t.Fatalf("wrong token: %d %q", code, errs)
	}
	adminOnly := config.Map(map[string]string{"GRPC_ADDR": addrs["grpc"], "STATUS_API_TOKEN": admin})
	if code, _, _ := run(adminOnly, "cus_IhGfebO16cMIGN"); code != 0 {
		t.Fatalf("admin implies read: %d", code)
	}
	noToken := config.Map(map[string]string{"GRPC_ADDR": addrs["grpc"]})
	if code, _, errs := run(noToken, "--data", t.TempDir(), "cus_IhGfebO16cMIGN"); code != 2 || !strings.Contains(errs, "no token") {
		t.Fatalf("no token: %d %q", code, errs)
	}
	dataDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dataDir, "dev-secrets.json"), []byte(`{"api_token":"`+read+`"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := run(noToken, "--data", dataDir, "cus_IhGfebO16cMIGN"); code != 0 {
		t.Fatalf("dev token: %d %q", code, errs)
	}
	for _, args := range [][]string{{}, {"a", "b"}, {"--user", "u", "--email", "e"}, {"cus_1", "--user", "u"}} {
		if code, _, _ := run(env, args...); code != 2 {
			t.Errorf("usage %v: exit %d", args, code)
		}
	}
}
