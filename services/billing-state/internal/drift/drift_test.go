package drift_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/pkg/stripeapi"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/drift"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/test/testkit/journey"
	"github.com/launchready/launchready/test/testkit/stripefake"
)

// stripeObject is the subscription an event carries, with status as Stripe
// now has it.
func stripeObject(t *testing.T, ev *billingv1.BillingEvent, status string) []byte {
	t.Helper()
	var env struct {
		Data struct {
			Object map[string]any `json:"object"`
		} `json:"data"`
	}
	if err := json.Unmarshal(ev.GetRawJson(), &env); err != nil {
		t.Fatal(err)
	}
	env.Data.Object["status"] = status
	obj, err := json.Marshal(env.Data.Object)
	if err != nil {
		t.Fatal(err)
	}
	return obj
}

// A customer that only the events of `launchready smoke --via webhook`
// marked (no Stripe object carries the metadata) is never compared: not
// its subscription whose status Stripe has otherwise, nor one of its
// subscriptions billing-state lacks. A real customer's drift beside it is
// still found.
func TestSmokeCustomerIsNotCompared(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	if err := state.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	store := state.New(pool, state.Options{Policy: canonical.DefaultPolicy()})
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	key := "sk_test_" + hex.EncodeToString(b)
	fake := stripefake.New(key)
	defer fake.Close()
	api, err := stripeapi.New(stripeapi.Config{Key: config.Secret(key), Base: fake.URL(), Livemode: "test"})
	if err != nil {
		t.Fatal(err)
	}
	checker, err := drift.New(api, store, nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}

	at := time.Now().Add(-time.Hour).Truncate(time.Second)
	smoke := journey.New(t, journey.ID("cus_lrsmoke"), at)
	plain := journey.New(t, journey.ID("cus"), at)
	smokeSub, smokeOther, plainSub := journey.ID("sub"), journey.ID("sub"), journey.ID("sub")
	smokeCreated := smoke.Subscription("customer.subscription.created", 0, smokeSub, "active", false, nil)
	plainCreated := plain.Subscription("customer.subscription.created", 0, plainSub, "active", false, nil)
	for _, ev := range []*billingv1.BillingEvent{smokeCreated, smoke.SmokeInvoice(1, journey.ID("in"), "run_drift"), plainCreated} {
		if _, err := store.ApplyEvent(ctx, ev, state.ApplyOptions{}); err != nil {
			t.Fatalf("apply %s: %v", ev.GetType(), err)
		}
	}
	if smokeCreated.GetSmokeRun() != "" {
		t.Fatal("the smoke customer's subscription carries the mark itself; the test needs one marked by its events only")
	}

	// Stripe has both active subscriptions canceled, and one more of the
	// smoke customer's that billing-state never heard of.
	for _, obj := range [][]byte{
		stripeObject(t, smokeCreated, "canceled"),
		stripeObject(t, smoke.Subscription("customer.subscription.created", 2, smokeOther, "active", false, nil), "active"),
		stripeObject(t, plainCreated, "canceled"),
	} {
		if err := fake.PutObject(obj); err != nil {
			t.Fatal(err)
		}
	}

	drifts, err := checker.Check(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := drift.Drift{CustomerID: plain.CustomerID, SubscriptionID: plainSub, Ours: "active", Stripe: "canceled"}
	if len(drifts) != 1 || drifts[0] != want {
		t.Fatalf("drifts = %+v, want only %+v", drifts, want)
	}
}
