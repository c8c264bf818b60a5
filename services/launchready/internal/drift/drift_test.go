package drift_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	billingstate "github.com/launchready/launchready/services/billing-state"
	"github.com/launchready/launchready/services/launchready/internal/drift"
	"github.com/launchready/launchready/test/testkit/stripefake"
)

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func subscription(id, cus, status string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"object":"subscription","status":%q,"customer":%q,"livemode":false,"cancel_at_period_end":false,`+
		`"created":1700000000,"current_period_end":%d,"items":{"object":"list","data":[{"id":"si_%s","object":"subscription_item",`+
		`"price":{"id":"price_drift","object":"price","unit_amount":900,"currency":"usd","recurring":{"interval":"month","interval_count":1}},"quantity":1}]},"metadata":{}}`,
		id, status, cus, time.Now().Add(20*24*time.Hour).Unix(), id)
}

// event wraps an object in a webhook's envelope, created at.
func event(t *testing.T, typ string, object []byte, at time.Time) *billingv1.BillingEvent {
	t.Helper()
	raw := fmt.Appendf(nil, `{"id":"evt_%s","object":"event","api_version":"2023-10-16","created":%d,"livemode":false,"type":%q,"data":{"object":%s}}`,
		random(12), at.Unix(), typ, object)
	ev, err := stripeevent.Normalize(raw)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestDriftFoundPrintedRepairedAndAudited is the whole drift story against
// billing-state running in process and a fake Stripe API: Stripe changes a
// subscription without an event; the scheduled check finds it within an
// interval; `launchready drift` prints it and exits 1; `drift --fix`
// repairs it with an audit row naming the token; a webhook older than the
// repair does not undo it.
func TestDriftFoundPrintedRepairedAndAudited(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	key, admin, read := "sk_test_"+random(12), random(20), random(20)
	fake := stripefake.New(key)
	defer fake.Close()
	ns := natstest.Start(t)
	dbURL := pgtest.NewDatabase(t)

	env := map[string]string{
		"DATABASE_URL": dbURL, "GRPC_ADDR": "127.0.0.1:0", "HTTP_ADDR": "127.0.0.1:0",
		"STATUS_API_TOKENS": fmt.Sprintf("ops=%s:read+admin,mobile=%s:read", admin, read),
		"STRIPE_API_KEY":    key, "STRIPE_API_BASE": fake.URL(), "DRIFT_CHECK_INTERVAL": "1s",
		"NATS_STREAM_REPLICAS": "1",
	}
	for k, v := range ns.Env(natsauth.BillingState) {
		env[k] = v
	}
	cfg, err := billingstate.ConfigFromEnv(config.Map(env))
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	cfg.Registry, cfg.Logger = reg, logging.Discard()
	ready := make(chan map[string]string, 1)
	cfg.Ready = func(a map[string]string) { ready <- a }
	runCtx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- billingstate.Run(runCtx, cfg) }()
	defer func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("billing-state: %v", err)
		}
	}()
	var addrs map[string]string
	select {
	case addrs = <-ready:
	case err := <-done:
		t.Fatalf("billing-state ended: %v", err)
	case <-ctx.Done():
		t.Fatal("billing-state not ready")
	}
	db, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ingressNC, ingress, err := bus.Connect(ctx, ns.Conn(natsauth.Ingress), "test-ingress", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ingressNC.Close()
	pub := bus.NewPublisher(ingress, nil)
	publish := func(ev *billingv1.BillingEvent) {
		t.Helper()
		if _, err := pub.PublishEvent(ctx, ev); err != nil {
			t.Fatal(err)
		}
		poll(t, ctx, "event "+ev.GetEventId()+" applied", func() bool {
			var n int
			_ = db.QueryRow(ctx, `SELECT count(*) FROM billing.processed_events WHERE event_id = $1`, ev.GetEventId()).Scan(&n)
			return n == 1
		})
	}
	statusOf := func(cus string) string {
		var s string
		if err := db.QueryRow(ctx, `SELECT status FROM billing.customers WHERE id = $1`, cus).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	cli := func(args ...string) (int, string, string) {
		var out, errw bytes.Buffer
		code := drift.Main(ctx, append([]string{"--addr", addrs["grpc"]}, args...), config.Map(map[string]string{"STATUS_API_TOKEN": admin}), &out, &errw)
		return code, out.String(), errw.String()
	}

	// Two customers in step with Stripe, by webhook.
	cus, other := "cus_drift"+random(4), "cus_calm"+random(4)
	sub, otherSub := "sub_drift"+random(4), "sub_calm"+random(4)
	for _, s := range [][3]string{{sub, cus, "active"}, {otherSub, other, "active"}} {
		obj := subscription(s[0], s[1], s[2])
		if err := fake.PutObject(obj); err != nil {
			t.Fatal(err)
		}
		publish(event(t, "customer.subscription.created", obj, time.Now().Add(-time.Hour)))
	}
	if code, out, errs := cli(); code != 0 || !strings.Contains(out, "no drift") {
		t.Fatalf("in step: exit %d\n%s%s", code, out, errs)
	}

	// Stripe moves one to past_due and no event comes.
	if err := fake.PutObject(subscription(sub, cus, "past_due")); err != nil {
		t.Fatal(err)
	}
	changed, cleanBefore := time.Now(), counter(t, reg, "lr_billing_drift_checks_total", "clean")
	gauge := func() float64 {
		mfs, _ := reg.Gather()
		for _, mf := range mfs {
			if mf.GetName() == "lr_billing_drift_customers" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}
	poll(t, ctx, "the scheduled check to find the drift", func() bool { return gauge() == 1 })
	// The check's result outlives the process: the console's overview
	// reads the newest row.
	lastCheck := func() (outcome string, customers, subs int, took time.Duration) {
		t.Helper()
		var started, finished time.Time
		err := db.QueryRow(ctx, `SELECT outcome, customers, subscriptions, started_at, finished_at FROM billing.drift_checks ORDER BY id DESC LIMIT 1`).
			Scan(&outcome, &customers, &subs, &started, &finished)
		if err != nil {
			t.Fatalf("the last drift check: %v", err)
		}
		return outcome, customers, subs, finished.Sub(started)
	}
	poll(t, ctx, "the drift check's row", func() bool { o, _, _, _ := lastCheck(); return o == "drift" })
	if o, n, subs, took := lastCheck(); o != "drift" || n != 1 || subs != 1 || took < 0 {
		t.Fatalf("the last drift check: %s, %d customers, %d subscriptions, took %s", o, n, subs, took)
	}
	if n := counter(t, reg, "lr_billing_drift_checks_total", "drift"); n < 1 {
		t.Fatalf("lr_billing_drift_checks_total{outcome=drift} = %v", n)
	}
	// Within one interval: at most the check already under way when
	// Stripe changed (it may have listed before the change) came out
	// clean; the next scheduled one found it. The drift persists, so no
	// clean check can follow.
	if missed := counter(t, reg, "lr_billing_drift_checks_total", "clean") - cleanBefore; missed > 1 {
		t.Fatalf("%v scheduled checks came out clean after Stripe changed, want at most the one under way", missed)
	}
	t.Logf("the scheduled check (every %s) found the drift %s after Stripe changed", env["DRIFT_CHECK_INTERVAL"], time.Since(changed).Round(time.Millisecond))

	code, out, errs := cli()
	if code != 1 || !strings.Contains(out, cus) || !strings.Contains(out, sub) || strings.Contains(out, other) ||
		!strings.Contains(out, "active") || !strings.Contains(out, "past_due") {
		t.Fatalf("drift: exit %d, want 1 naming %s active vs past_due only\n%s%s", code, cus, out, errs)
	}
	// The read role may not look.
	var out2, errs2 bytes.Buffer
	if code := drift.Main(ctx, []string{"--addr", addrs["grpc"], "--token", read}, config.Map(nil), &out2, &errs2); code != 1 || !strings.Contains(errs2.String(), "PermissionDenied") {
		t.Fatalf("read token: exit %d %s%s", code, out2.String(), errs2.String())
	}

	code, out, errs = cli("--fix")
	if code != 0 || !strings.Contains(out, "repaired 1 customer") {
		t.Fatalf("drift --fix: exit %d\n%s%s", code, out, errs)
	}
	if got := statusOf(cus); got != "past_due" {
		t.Fatalf("after the repair %s is %s, want past_due", cus, got)
	}
	var actor, action, before, after string
	err = db.QueryRow(ctx, `SELECT actor, action, before->>'status', after->>'status' FROM billing.audit_log
		WHERE customer_id = $1 ORDER BY id DESC LIMIT 1`, cus).Scan(&actor, &action, &before, &after)
	if err != nil || actor != "ops" || action != "repair" || !strings.Contains(before, "ACTIVE") || !strings.Contains(after, "PAST_DUE") {
		t.Fatalf("audit row: actor %q action %q before %q after %q (%v)", actor, action, before, after, err)
	}

	// A webhook created before the repair, delivered late, says active: it
	// is older than what the repair applied and changes nothing.
	publish(event(t, "customer.subscription.updated", subscription(sub, cus, "active"), time.Now().Add(-2*time.Minute)))
	if got := statusOf(cus); got != "past_due" {
		t.Fatalf("a late webhook older than the repair made %s %s", cus, got)
	}
	if code, out, errs := cli(); code != 0 || !strings.Contains(out, "no drift") {
		t.Fatalf("after the repair: exit %d\n%s%s", code, out, errs)
	}
	poll(t, ctx, "the scheduled check to see no drift", func() bool { return gauge() == 0 })
	// A scheduled check under way during the repair may still end in
	// drift; the next one is clean.
	poll(t, ctx, "a clean drift check's row", func() bool { o, _, _, _ := lastCheck(); return o == "clean" })
	if o, n, subs, _ := lastCheck(); o != "clean" || n != 0 || subs != 0 {
		t.Fatalf("the last drift check after the repair: %s, %d customers, %d subscriptions", o, n, subs)
	}
}

// counter is the counter name{outcome}; 0 before its first increment.
func counter(t *testing.T, reg *prometheus.Registry, name, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func poll(t *testing.T, ctx context.Context, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
