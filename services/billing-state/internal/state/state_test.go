package state_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/services/billing-state/internal/stripeapi"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/journey"
	"github.com/launchready/launchready/test/testkit/stripemock"
)

var base = time.Date(2025, 4, 1, 9, 0, 0, 0, time.UTC)

type bundle struct {
	store *state.Store
	pool  *pgxpool.Pool
	ctx   context.Context
}

// The package's tests share one migrated database (each test uses its own
// customers), because creating and migrating a database per test costs
// seconds on a busy server. Tests that look at whole tables get their own.
var shared struct {
	once sync.Once
	url  string
	drop func()
	pool *pgxpool.Pool
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.drop != nil {
		shared.drop()
	}
	// The shared database is dropped first: its pool's goroutines are not leaks.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

func sharedPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	shared.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		base := pgtest.BaseURL()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			shared.err = fmt.Errorf("Postgres is required and unreachable at %s: %w", base, err)
			return
		}
		defer conn.Close(ctx)
		name := fmt.Sprintf("lrtest_state_%d", time.Now().UnixNano())
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
			shared.err = err
			return
		}
		u, _ := url.Parse(base)
		u.Path = "/" + name
		shared.url = u.String()
		shared.pool, shared.err = pg.Open(ctx, shared.url, pg.WithIndexPlans()) // as the service opens it
		shared.drop = func() {
			if shared.pool != nil {
				shared.pool.Close()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if c, err := pgx.Connect(ctx, base); err == nil {
				_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
				c.Close(ctx)
			}
		}
		if shared.err == nil {
			shared.err = state.Migrate(ctx, shared.pool)
		}
	})
	if shared.err != nil {
		t.Fatalf("shared test database: %v", shared.err)
	}
	return shared.pool
}

type option func(*state.Options)

func withPolicy(p canonical.Policy) option { return func(o *state.Options) { o.Policy = p } }
func withFetcher(f state.Fetcher) option   { return func(o *state.Options) { o.Fetcher = f } }

// setup returns a store on the shared database.
func setup(t *testing.T, opts ...option) *bundle {
	t.Helper()
	t.Parallel()
	return newBundle(t, sharedPool(t), opts)
}

// setupIsolated returns a store on a database of its own.
func setupIsolated(t *testing.T, opts ...option) *bundle {
	t.Helper()
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t), pg.WithIndexPlans())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := state.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	return newBundle(t, pool, opts)
}

func newBundle(t *testing.T, pool *pgxpool.Pool, opts []option) *bundle {
	o := state.Options{Policy: canonical.DefaultPolicy()}
	for _, f := range opts {
		f(&o)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return &bundle{store: state.New(pool, o), pool: pool, ctx: ctx}
}

func (b *bundle) apply(t *testing.T, ev *billingv1.BillingEvent) state.Result {
	t.Helper()
	res, err := b.store.ApplyEvent(b.ctx, ev, state.ApplyOptions{})
	if err != nil {
		t.Fatalf("apply %s %s: %v", ev.GetType(), ev.GetEventId(), err)
	}
	return res
}

func (b *bundle) status(t *testing.T, cus string) *billingv1.CustomerStatus {
	t.Helper()
	st, err := b.store.Status(b.ctx, cus)
	if err != nil {
		t.Fatalf("status %s: %v", cus, err)
	}
	return st
}

func checkStep(t *testing.T, step journey.Step, st *billingv1.CustomerStatus) {
	t.Helper()
	if st.GetStatus() != step.Status || st.GetEntitled() != step.Entitled {
		t.Fatalf("after %q: status %v entitled=%v, want %v entitled=%v", step.Name, st.GetStatus(), st.GetEntitled(), step.Status, step.Entitled)
	}
	if st.GetDisputeOpen() != step.DisputeOpen {
		t.Fatalf("after %q: dispute_open=%v, want %v", step.Name, st.GetDisputeOpen(), step.DisputeOpen)
	}
	if st.GetCancelAtPeriodEnd() != step.Cancel {
		t.Fatalf("after %q: cancel_at_period_end=%v, want %v", step.Name, st.GetCancelAtPeriodEnd(), step.Cancel)
	}
	if st.GetNeedsReconciliation() {
		t.Fatalf("after %q: marked for reconciliation; every tie in the journeys is ordered by previous_attributes", step.Name)
	}
}

// TestJourneysInOrder checks the status and entitlement after every step of
// each journey delivered in order.
func TestJourneysInOrder(t *testing.T) {
	b := setup(t)
	for name, build := range journey.Journeys {
		t.Run(name, func(t *testing.T) {
			jb := journey.New(t, "cus_"+strings.ReplaceAll(name, " ", ""), base)
			for _, step := range build(jb) {
				for _, ev := range step.Events {
					if res := b.apply(t, ev); res.Outcome != state.OutcomeApplied {
						t.Fatalf("%s %s: outcome %s", step.Name, ev.GetType(), res.Outcome)
					}
				}
				checkStep(t, step, b.status(t, jb.CustomerID))
			}
		})
	}
}

func TestSubscriptionLifecycleDetails(t *testing.T) {
	b := setup(t)
	jb := journey.New(t, "cus_Details1", base)
	steps := journey.SubscriptionLifecycle(jb)
	for _, ev := range journey.Events(steps[:5]) {
		b.apply(t, ev)
	}
	st := b.status(t, jb.CustomerID)
	want := &billingv1.CustomerStatus{
		CustomerId: jb.CustomerID, Status: billingv1.BillingStatus_BILLING_STATUS_ACTIVE, Entitled: true,
		Email: jb.Email(), UserId: jb.UserID(), Plan: "price_1IDQm5JDPojXS6LNM31hxKzp",
		SubscriptionId: "sub_Details1", Mrr: 1500, Currency: "usd",
	}
	got := proto.Clone(st).(*billingv1.CustomerStatus)
	if got.GetCurrentPeriodEnd().AsTime() != base.Add(30*24*time.Hour) || got.GetLastPaymentFailedAt().AsTime() != base.Add(30*24*time.Hour) {
		t.Errorf("period end %v / last failure %v", got.GetCurrentPeriodEnd().AsTime(), got.GetLastPaymentFailedAt().AsTime())
	}
	if got.GetLastEventId() == "" || got.GetUpdatedAt() == nil {
		t.Errorf("last event and update time missing: %v", got)
	}
	got.CurrentPeriodEnd, got.LastPaymentFailedAt, got.LastEventId, got.UpdatedAt = nil, nil, "", nil
	if !proto.Equal(got, want) {
		t.Errorf("status\n got %v\nwant %v", got, want)
	}
}

// shuffledRun is one journey of one customer, shuffled with duplicates.
type shuffledRun struct {
	name string
	seed int
	cus  string
	evs  []*billingv1.BillingEvent
}

// shuffledRuns builds every journey in 50 shuffled orders with duplicates
// (same-second ties included), for customers named after prefix, and
// returns them with the status each journey ends at when delivered in
// order.
func shuffledRuns(t *testing.T, b *bundle, prefix string) ([]shuffledRun, map[string]*billingv1.CustomerStatus) {
	t.Helper()
	const seeds = 50
	want := map[string]*billingv1.CustomerStatus{}
	var runs []shuffledRun
	for name, build := range journey.Journeys {
		key := strings.ReplaceAll(name, " ", "")
		ordered := journey.New(t, "cus_"+prefix+"ord"+key, base)
		for _, ev := range journey.Events(build(ordered)) {
			b.apply(t, ev)
		}
		want[name] = b.status(t, ordered.CustomerID)
		for seed := 0; seed < seeds; seed++ {
			jb := journey.New(t, fmt.Sprintf("cus_%ss%d%s", prefix, seed, key), base)
			evs := journey.Events(build(jb))
			r := rand.New(rand.NewSource(int64(seed)))
			for i := 0; i < 2+r.Intn(3); i++ {
				evs = append(evs, evs[r.Intn(len(evs))])
			}
			r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
			runs = append(runs, shuffledRun{name: name, seed: seed, cus: jb.CustomerID, evs: evs})
		}
	}
	return runs, want
}

// checkConverged compares each run's final status with in-order delivery.
func checkConverged(t *testing.T, b *bundle, runs []shuffledRun, want map[string]*billingv1.CustomerStatus) {
	t.Helper()
	for _, r := range runs {
		got := b.status(t, r.cus)
		if !sameMaterial(got, want[r.name]) {
			t.Fatalf("%s seed %d: shuffled delivery ended at\n%v\nin order:\n%v", r.name, r.seed, got, want[r.name])
		}
	}
}

// TestShuffledDeliveryConverges delivers every journey in 50 shuffled
// orders with duplicates (same-second ties included) and checks each ends
// where in-order delivery ends. It drives ApplyEvent the way the consumer
// does: a dispute or refund whose charge is not known yet goes back on the
// queue, and is parked once its retries are used up.
func TestShuffledDeliveryConverges(t *testing.T) {
	b := setup(t)
	runs, want := shuffledRuns(t, b, "")
	var wg sync.WaitGroup
	errs := make(chan error, len(runs))
	work := make(chan shuffledRun)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range work {
				if err := deliver(b, r.evs); err != nil {
					errs <- fmt.Errorf("%s seed %d: %w", r.name, r.seed, err)
				}
			}
		}()
	}
	for _, r := range runs {
		work <- r
	}
	close(work)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	checkConverged(t, b, runs, want)
}

// deliver applies events as the consumer would: unknown charges are
// retried after the others, then parked.
func deliver(b *bundle, evs []*billingv1.BillingEvent) error {
	type item struct {
		ev    *billingv1.BillingEvent
		tries int
	}
	queue := make([]item, 0, len(evs))
	for _, ev := range evs {
		queue = append(queue, item{ev: ev})
	}
	for len(queue) > 0 {
		it := queue[0]
		queue = queue[1:]
		it.tries++
		_, err := b.store.ApplyEvent(b.ctx, it.ev, state.ApplyOptions{ParkUnresolved: it.tries >= 3})
		switch {
		case errors.Is(err, state.ErrCustomerUnknown):
			queue = append(queue, it)
		case err != nil:
			return err
		}
	}
	return nil
}

// sameMaterial compares two statuses of different customers: everything
// but the ids and bookkeeping.
func sameMaterial(a, b *billingv1.CustomerStatus) bool {
	ca, cb := proto.Clone(a).(*billingv1.CustomerStatus), proto.Clone(b).(*billingv1.CustomerStatus)
	for _, c := range []*billingv1.CustomerStatus{ca, cb} {
		c.CustomerId, c.Email, c.UserId, c.SubscriptionId, c.LastEventId, c.UpdatedAt = "", "", "", "", "", nil
	}
	return proto.Equal(ca, cb)
}

func TestDuplicateIsSkipped(t *testing.T) {
	b := setup(t)
	jb := journey.New(t, "cus_Dup1", base)
	ev := jb.Subscription("customer.subscription.created", 0, "sub_Dup1", "active", false, nil)
	if res := b.apply(t, ev); res.Outcome != state.OutcomeApplied || !res.StatusChanged {
		t.Fatalf("first apply: %+v", res)
	}
	if res := b.apply(t, proto.Clone(ev).(*billingv1.BillingEvent)); res.Outcome != state.OutcomeDuplicate {
		t.Fatalf("second apply: %+v", res)
	}
	var audits, outbox int
	pool := b.store.Pool()
	if err := pool.QueryRow(b.ctx, `SELECT (SELECT count(*) FROM billing.audit_log WHERE customer_id = $1),
		(SELECT count(*) FROM billing.outbox WHERE customer_id = $1)`, jb.CustomerID).Scan(&audits, &outbox); err != nil {
		t.Fatal(err)
	}
	if audits != 1 || outbox != 1 {
		t.Fatalf("audit rows %d, outbox rows %d; want 1 each", audits, outbox)
	}
}

func TestAuditLogIsAppendOnly(t *testing.T) {
	b := setup(t)
	jb := journey.New(t, "cus_Audit1", base)
	b.apply(t, jb.Customer("customer.created", 0))
	pool := b.store.Pool()
	for _, q := range []string{
		`UPDATE billing.audit_log SET actor = 'someone' WHERE customer_id = 'cus_Audit1'`,
		`DELETE FROM billing.audit_log WHERE customer_id = 'cus_Audit1'`,
		`TRUNCATE billing.audit_log`,
	} {
		if _, err := pool.Exec(b.ctx, q); err == nil || !strings.Contains(err.Error(), "append-only") {
			t.Errorf("%s: err = %v, want append-only refusal", q, err)
		}
	}
	var n int
	if err := pool.QueryRow(b.ctx, `SELECT count(*) FROM billing.audit_log WHERE customer_id = 'cus_Audit1'`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("audit rows = %d (%v), want 1", n, err)
	}
}

func TestStaleSnapshotIsAuditedNotApplied(t *testing.T) {
	b := setup(t)
	jb := journey.New(t, "cus_Stale1", base)
	newer := jb.Subscription("customer.subscription.updated", 100, "sub_Stale1", "past_due", false, map[string]any{"status": "active"})
	older := jb.Subscription("customer.subscription.created", 0, "sub_Stale1", "active", false, nil)
	b.apply(t, newer)
	res := b.apply(t, older)
	if res.Outcome != state.OutcomeStale || res.StatusChanged {
		t.Fatalf("older snapshot: %+v", res)
	}
	st := b.status(t, jb.CustomerID)
	if st.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_PAST_DUE || st.GetLastEventId() != newer.GetEventId() {
		t.Fatalf("status %v last event %s", st.GetStatus(), st.GetLastEventId())
	}
	evs, _, err := b.store.Timeline(b.ctx, jb.CustomerID, 0, 10)
	if err != nil || len(evs) != 2 || evs[0].GetAction() != state.ActionStale || evs[1].GetAction() != state.ActionApplied {
		t.Fatalf("timeline %v, %v", evs, err)
	}
}

func TestSameSecondTieWithoutChainMarksReconciliation(t *testing.T) {
	b := setup(t)
	jb := journey.New(t, "cus_Tie1", base)
	b.apply(t, jb.Subscription("customer.subscription.created", 0, "sub_Tie1", "active", false, nil))
	// Two updates in one second whose previous_attributes prove nothing.
	u1 := jb.Subscription("customer.subscription.updated", 50, "sub_Tie1", "past_due", false, map[string]any{"latest_invoice": "in_x"})
	u2 := jb.Subscription("customer.subscription.updated", 50, "sub_Tie1", "active", true, map[string]any{"latest_invoice": "in_y"})
	b.apply(t, u2)
	res := b.apply(t, u1)
	if !res.Ambiguous || !res.Status.GetNeedsReconciliation() {
		t.Fatalf("tie not reported: %+v", res)
	}
	st := b.status(t, jb.CustomerID)
	if st.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_PAST_DUE || !st.GetNeedsReconciliation() {
		t.Fatalf("want the more advanced past_due and a reconciliation mark, got %v", st)
	}
	after, err := b.store.Reconcile(b.ctx, jb.CustomerID, "ops-oncall")
	if err != nil {
		t.Fatal(err)
	}
	if after.GetNeedsReconciliation() || after.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_PAST_DUE {
		t.Fatalf("after reconcile: %v", after)
	}
	evs, _, err := b.store.Timeline(b.ctx, jb.CustomerID, 0, 1)
	if err != nil || evs[0].GetActor() != "ops-oncall" || evs[0].GetAction() != state.ActionReconcile {
		t.Fatalf("reconcile audit: %v %v", evs, err)
	}
	if _, err := b.store.Reconcile(b.ctx, "cus_nobody", "ops"); !errors.Is(err, state.ErrNotFound) {
		t.Fatalf("reconcile unknown: %v", err)
	}
}

type fakeFetcher struct {
	mu      sync.Mutex
	sub     state.FetchedSubscription
	charges map[string]state.FetchedCharge
	calls   []string
}

func (f *fakeFetcher) Subscription(_ context.Context, id string) (state.FetchedSubscription, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "sub:"+id)
	return f.sub, nil
}

func (f *fakeFetcher) Charge(_ context.Context, id string) (state.FetchedCharge, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "charge:"+id)
	c, ok := f.charges[id]
	if !ok {
		return state.FetchedCharge{}, errors.New("no such charge")
	}
	return c, nil
}

func TestSameSecondTieSettledByStripe(t *testing.T) {
	f := &fakeFetcher{sub: state.FetchedSubscription{Status: "active", CancelAtPeriodEnd: true, PriceID: "price_now"}}
	b := setup(t, withFetcher(f))
	settleTie(t, b, "Tie2", "price_now")
	if len(f.calls) != 1 || f.calls[0] != "sub:sub_Tie2" {
		t.Fatalf("fetches: %v", f.calls)
	}
}

// TestSameSecondTieSettledByStripeMock settles the same tie through
// stripe-go against stripe-mock (STRIPE_API_BASE's use offline): the
// status, cancel flag and plan come from what the API answers.
func TestSameSecondTieSettledByStripeMock(t *testing.T) {
	api := stripeapi.New(fmt.Sprintf("sk_test_%024x", rand.Int63()), stripemock.Start(t), 100) // a made-up test-mode key
	want, err := api.Subscription(context.Background(), "sub_TieMock")
	if err != nil {
		t.Fatal(err)
	}
	if want.Status != "active" || !want.CancelAtPeriodEnd {
		t.Fatalf("stripe-mock %s answers %+v; this test expects its fixture's active subscription set to cancel", stripemock.Version, want)
	}
	settleTie(t, setup(t, withFetcher(api)), "TieMock", want.PriceID)
}

// settleTie applies a subscription's creation and then two updates in one
// second that nothing orders (past_due, unpaid), and checks that the
// customer took what the fetcher answers: active, set to cancel, on plan.
func settleTie(t *testing.T, b *bundle, name, plan string) {
	t.Helper()
	jb := journey.New(t, "cus_"+name, base)
	sub := "sub_" + name
	b.apply(t, jb.Subscription("customer.subscription.created", 0, sub, "active", false, nil))
	b.apply(t, jb.Subscription("customer.subscription.updated", 50, sub, "past_due", false, map[string]any{"latest_invoice": "in_y"}))
	res := b.apply(t, jb.Subscription("customer.subscription.updated", 50, sub, "unpaid", false, map[string]any{"latest_invoice": "in_x"}))
	if res.Ambiguous || res.Status.GetNeedsReconciliation() {
		t.Fatalf("tie should be settled by the API: %+v", res)
	}
	st := b.status(t, jb.CustomerID)
	if st.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_ACTIVE || !st.GetCancelAtPeriodEnd() || st.GetPlan() != plan {
		t.Fatalf("status not taken from the API: %v", st)
	}
}

func TestDisputeBeforeChargeIsParkedThenApplied(t *testing.T) {
	b := setupIsolated(t)
	jb := journey.New(t, "cus_Park1", base)
	dispute := jb.Dispute("charge.dispute.created", 100, "dp_Park1", "ch_Park1", "needs_response")
	if _, err := b.store.ApplyEvent(b.ctx, dispute, state.ApplyOptions{}); !errors.Is(err, state.ErrCustomerUnknown) {
		t.Fatalf("want ErrCustomerUnknown, got %v", err)
	}
	res, err := b.store.ApplyEvent(b.ctx, dispute, state.ApplyOptions{ParkUnresolved: true})
	if err != nil || res.Outcome != state.OutcomeUnresolved {
		t.Fatalf("park: %+v %v", res, err)
	}
	if n, _ := b.store.Unresolved(b.ctx); n != 1 {
		t.Fatalf("unresolved = %d, want 1", n)
	}
	if res := b.apply(t, dispute); res.Outcome != state.OutcomeDuplicate {
		t.Fatalf("redelivery of a parked event: %+v", res)
	}
	b.apply(t, jb.CheckoutPayment("checkout.session.completed", 0, "cs_Park1", "pi_Park1", 2000, "paid"))
	res = b.apply(t, jb.Charge("charge.succeeded", 0, "ch_Park1", "pi_Park1", 2000, 0, "succeeded"))
	if !res.Status.GetDisputeOpen() {
		t.Fatalf("parked dispute not applied when the charge arrived: %v", res.Status)
	}
	if n, _ := b.store.Unresolved(b.ctx); n != 0 {
		t.Fatalf("unresolved = %d, want 0", n)
	}
	var outcome string
	if err := b.store.Pool().QueryRow(b.ctx, `SELECT outcome FROM billing.processed_events WHERE event_id = $1`, dispute.GetEventId()).Scan(&outcome); err != nil || outcome != "applied" {
		t.Fatalf("parked event outcome %q %v", outcome, err)
	}
}

func TestUnknownChargeFetchedFromStripe(t *testing.T) {
	f := &fakeFetcher{charges: map[string]state.FetchedCharge{"ch_Fetch1": {CustomerID: "cus_Fetch1", PaymentIntentID: "pi_Fetch1"}}}
	b := setup(t, withFetcher(f))
	jb := journey.New(t, "cus_Fetch1", base)
	res := b.apply(t, jb.Dispute("charge.dispute.created", 100, "dp_Fetch1", "ch_Fetch1", "needs_response"))
	if res.CustomerID != "cus_Fetch1" || !res.Status.GetDisputeOpen() {
		t.Fatalf("dispute not attached through the API: %+v", res)
	}
	// Learned: the next event for the charge needs no API call.
	b.apply(t, jb.Dispute("charge.dispute.closed", 200, "dp_Fetch1", "ch_Fetch1", "lost"))
	if len(f.calls) != 1 {
		t.Fatalf("fetches: %v", f.calls)
	}
	if _, err := b.store.ApplyEvent(b.ctx, jb.Dispute("charge.dispute.created", 100, "dp_x", "ch_unknown", "needs_response"), state.ApplyOptions{}); !errors.Is(err, state.ErrCustomerUnknown) {
		t.Fatalf("charge unknown to stripe too: %v", err)
	}
}

func TestLostDisputeRefundsOneTimePurchase(t *testing.T) {
	b := setup(t)
	jb := journey.New(t, "cus_Lost1", base)
	b.apply(t, jb.CheckoutPayment("checkout.session.completed", 0, "cs_Lost1", "pi_Lost1", 2000, "paid"))
	b.apply(t, jb.Charge("charge.succeeded", 0, "ch_Lost1", "pi_Lost1", 2000, 0, "succeeded"))
	b.apply(t, jb.Dispute("charge.dispute.created", 100, "dp_Lost1", "ch_Lost1", "needs_response"))
	res := b.apply(t, jb.Dispute("charge.dispute.closed", 200, "dp_Lost1", "ch_Lost1", "lost"))
	if res.Status.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_REFUNDED || res.Status.GetEntitled() || res.Status.GetDisputeOpen() {
		t.Fatalf("lost dispute: %v", res.Status)
	}
}

func TestRefundEventsAddUp(t *testing.T) {
	b := setup(t)
	jb := journey.New(t, "cus_Ref1", base)
	b.apply(t, jb.CheckoutPayment("checkout.session.completed", 0, "cs_Ref1", "pi_Ref1", 2000, "paid"))
	b.apply(t, jb.Charge("charge.succeeded", 0, "ch_Ref1", "pi_Ref1", 2000, 0, "succeeded"))
	res := b.apply(t, jb.Refund("refund.created", 100, "re_1", "ch_Ref1", 500, "succeeded"))
	if res.Status.GetAmountRefunded() != 500 || res.Status.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_ACTIVE {
		t.Fatalf("partial refund: %v", res.Status)
	}
	res = b.apply(t, jb.Refund("refund.created", 200, "re_2", "ch_Ref1", 1500, "succeeded"))
	if res.Status.GetAmountRefunded() != 2000 || res.Status.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_REFUNDED {
		t.Fatalf("refunds adding up to the amount: %v", res.Status)
	}
}

func TestAsyncCheckout(t *testing.T) {
	b := setup(t)
	jb := journey.New(t, "cus_Async1", base)
	res := b.apply(t, jb.CheckoutPayment("checkout.session.completed", 0, "cs_Async1", "pi_Async1", 2000, "unpaid"))
	if res.Status.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_INCOMPLETE || res.Status.GetEntitled() {
		t.Fatalf("unpaid async checkout: %v", res.Status)
	}
	res = b.apply(t, jb.CheckoutPayment("checkout.session.async_payment_succeeded", 3*24*3600, "cs_Async1", "pi_Async1", 2000, "paid"))
	if res.Status.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_ACTIVE || !res.Status.GetEntitled() {
		t.Fatalf("async payment succeeded: %v", res.Status)
	}
	jb2 := journey.New(t, "cus_Async2", base)
	b.apply(t, jb2.CheckoutPayment("checkout.session.async_payment_failed", 100, "cs_Async2", "pi_Async2", 2000, "unpaid"))
	res = b.apply(t, jb2.CheckoutPayment("checkout.session.completed", 0, "cs_Async2", "pi_Async2", 2000, "unpaid"))
	if res.Status.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_NONE {
		t.Fatalf("failed async payment, delivered before its completion: %v", res.Status)
	}
}

func TestPastDuePolicy(t *testing.T) {
	b := setup(t, withPolicy(canonical.Policy{PastDueEntitled: false}))
	jb := journey.New(t, "cus_Strict1", base)
	res := b.apply(t, jb.Subscription("customer.subscription.created", 0, "sub_Strict1", "past_due", false, nil))
	if res.Status.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_PAST_DUE || res.Status.GetEntitled() {
		t.Fatalf("past_due without grace: %v", res.Status)
	}
}

func TestBasilSubscriptionShape(t *testing.T) {
	b := setup(t)
	jb := journey.New(t, "cus_Basil1", base)
	end := base.Add(31 * 24 * time.Hour)
	res := b.apply(t, jb.BasilSubscription("customer.subscription.created", 0, "sub_Basil1", "active", end))
	if !res.Status.GetCurrentPeriodEnd().AsTime().Equal(end) || res.Status.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_ACTIVE {
		t.Fatalf("basil subscription: %v", res.Status)
	}
}

func TestCustomerProfileAndDeletion(t *testing.T) {
	b := setup(t)
	jb := journey.New(t, "cus_Prof1", base)
	// The subscription arrives before the customer: a placeholder holds it.
	b.apply(t, jb.Subscription("customer.subscription.created", 10, "sub_Prof1", "active", false, nil))
	b.apply(t, jb.Customer("customer.created", 0))
	st := b.status(t, jb.CustomerID)
	if st.GetEmail() != jb.Email() || st.GetUserId() != jb.UserID() || !st.GetEntitled() {
		t.Fatalf("profile: %v", st)
	}
	res := b.apply(t, jb.Customer("customer.deleted", 20))
	if !res.Status.GetDeleted() || !res.StatusChanged {
		t.Fatalf("deleted: %+v", res)
	}
	if res := b.apply(t, jb.Customer("customer.updated", 30)); res.Outcome != state.OutcomeStale {
		t.Fatalf("update after deletion: %+v", res)
	}
	res = b.apply(t, jb.Subscription("customer.subscription.deleted", 20, "sub_Prof1", "canceled", false, nil))
	if res.Status.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_CANCELED || res.Status.GetEntitled() || !res.Status.GetDeleted() {
		t.Fatalf("after the subscription's deletion: %v", res.Status)
	}
}

// The lookups run as the service runs them: one generic plan, sequential
// scans off. Their partial indexes must still serve them; a whole-table scan
// per lookup by user id is what they did before the queries repeated the
// indexes' predicates.
func TestLookupsUseTheirIndexesUnderGenericPlans(t *testing.T) {
	b := setupIsolated(t)
	ctx := b.ctx
	pool := b.pool
	if _, err := pool.Exec(ctx, `INSERT INTO billing.customers (id, email, user_id, placeholder, status_json)
		SELECT 'cus_p' || g, 'p' || g || '@example.com', CASE WHEN g % 2 = 0 THEN 'usr_' || g ELSE '' END, false, '{}'
		FROM generate_series(1, 5000) g`); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `ANALYZE billing.customers`); err != nil {
		t.Fatal(err)
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	for name, sql := range state.LookupSQL {
		if _, err := conn.Exec(ctx, "PREPARE lookup_"+name+"(text) AS "+sql); err != nil {
			t.Fatal(err)
		}
		rows, err := conn.Query(ctx, "EXPLAIN EXECUTE lookup_"+name+"('usr_10')")
		if err != nil {
			t.Fatal(err)
		}
		plan, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		if text := strings.Join(plan, "\n"); strings.Contains(text, "Seq Scan") || !strings.Contains(text, "Index") {
			t.Errorf("lookup by %s does not use its indexes under a generic plan:\n%s", name, text)
		}
	}
}

func TestLookups(t *testing.T) {
	b := setup(t)
	jb := journey.New(t, "cus_Look1", base)
	for _, ev := range journey.Events(journey.TrialToActive(jb)) {
		b.apply(t, ev)
	}
	byUser, err := b.store.StatusByUserID(b.ctx, jb.UserID())
	if err != nil || byUser.GetCustomerId() != jb.CustomerID {
		t.Fatalf("by user id: %v %v", byUser, err)
	}
	byEmail, err := b.store.StatusByEmail(b.ctx, strings.ToUpper(jb.Email()))
	if err != nil || byEmail.GetCustomerId() != jb.CustomerID {
		t.Fatalf("by email: %v %v", byEmail, err)
	}
	for _, f := range []func() error{
		func() error { _, err := b.store.Status(b.ctx, "cus_none"); return err },
		func() error { _, err := b.store.StatusByUserID(b.ctx, "user_none"); return err },
		func() error { _, err := b.store.StatusByEmail(b.ctx, "none@example.com"); return err },
		func() error { _, _, err := b.store.Timeline(b.ctx, "cus_none", 0, 10); return err },
	} {
		if err := f(); !errors.Is(err, state.ErrNotFound) {
			t.Errorf("unknown customer: %v", err)
		}
	}
	// Pages of 2 over the 4 audit rows, newest first, no overlap.
	var ids []int64
	var before int64
	for page := 0; ; page++ {
		evs, next, err := b.store.Timeline(b.ctx, jb.CustomerID, before, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			ids = append(ids, e.GetId())
		}
		if next == 0 {
			break
		}
		before = next
		if page > 5 {
			t.Fatal("pagination does not end")
		}
	}
	if len(ids) != 4 {
		t.Fatalf("timeline ids %v, want 4", ids)
	}
	for i := 1; i < len(ids); i++ {
		if ids[i] >= ids[i-1] {
			t.Fatalf("timeline not newest first: %v", ids)
		}
	}
}

func TestOutboxPublishesOnceInOrder(t *testing.T) {
	b := setupIsolated(t)
	jb := journey.New(t, "cus_Out1", base)
	for _, ev := range journey.Events(journey.SubscriptionLifecycle(jb)) {
		b.apply(t, ev)
	}
	pending, _, err := b.store.OutboxPending(b.ctx)
	if err != nil || pending == 0 {
		t.Fatalf("pending %d %v", pending, err)
	}
	var seen []*billingv1.CustomerStatus
	var last int64
	n, err := b.store.PublishOutbox(b.ctx, 100, func(_ context.Context, rows []state.OutboxRow) (int, error) {
		for i, r := range rows {
			if r.ID <= last {
				t.Errorf("outbox out of order: %d after %d", r.ID, last)
			}
			last = r.ID
			st := &billingv1.CustomerStatus{}
			if err := proto.Unmarshal(r.Payload, st); err != nil {
				return i, err
			}
			seen = append(seen, st)
		}
		return len(rows), nil
	})
	if err != nil || n != pending {
		t.Fatalf("published %d of %d: %v", n, pending, err)
	}
	if final := seen[len(seen)-1]; final.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_CANCELED {
		t.Fatalf("last published status %v", final.GetStatus())
	}
	n, err = b.store.PublishOutbox(b.ctx, 100, func(_ context.Context, rows []state.OutboxRow) (int, error) {
		t.Error("published twice")
		return len(rows), nil
	})
	if err != nil || n != 0 {
		t.Fatalf("second pass: %d %v", n, err)
	}
	// A failing publish leaves the row pending for the next pass.
	jb2 := journey.New(t, "cus_Out2", base)
	b.apply(t, jb2.Subscription("customer.subscription.created", 0, "sub_Out2", "active", false, nil))
	if _, err := b.store.PublishOutbox(b.ctx, 100, func(context.Context, []state.OutboxRow) (int, error) { return 0, errors.New("nats down") }); err == nil {
		t.Fatal("publish failure not reported")
	}
	if p, _, _ := b.store.OutboxPending(b.ctx); p != 1 {
		t.Fatalf("pending after failure = %d, want 1", p)
	}
	// A batch that fails part way marks only the rows before the failure.
	b.apply(t, jb2.Subscription("customer.subscription.updated", 10, "sub_Out2", "past_due", false, map[string]any{"status": "active"}))
	n, err = b.store.PublishOutbox(b.ctx, 100, func(_ context.Context, rows []state.OutboxRow) (int, error) {
		if len(rows) != 2 {
			t.Errorf("claimed %d rows, want 2", len(rows))
		}
		return 1, errors.New("nats went away after the first")
	})
	if err == nil || n != 1 {
		t.Fatalf("partial batch: published %d, err %v; want 1 and the error", n, err)
	}
	if p, _, _ := b.store.OutboxPending(b.ctx); p != 1 {
		t.Fatalf("pending after a partial batch = %d, want 1", p)
	}
}

func TestMalformedAndIgnored(t *testing.T) {
	b := setup(t)
	if _, err := b.store.ApplyEvent(b.ctx, &billingv1.BillingEvent{Type: "invoice.paid"}, state.ApplyOptions{}); !errors.Is(err, state.ErrMalformed) {
		t.Fatalf("no id: %v", err)
	}
	res, err := b.store.ApplyEvent(b.ctx, &billingv1.BillingEvent{EventId: "evt_plan", Type: "plan.created", ObjectType: "plan"}, state.ApplyOptions{})
	if err != nil || res.Outcome != state.OutcomeIgnored {
		t.Fatalf("unknown type: %+v %v", res, err)
	}
	res, err = b.store.ApplyEvent(b.ctx, &billingv1.BillingEvent{EventId: "evt_guest", Type: "charge.succeeded", ObjectType: "charge", ChargeId: "ch_guest"}, state.ApplyOptions{})
	if err != nil || res.Outcome != state.OutcomeIgnored {
		t.Fatalf("guest charge: %+v %v", res, err)
	}
}

// TestEveryFixtureApplies feeds every envelope in the fixtures (normalised
// as ingress does) through ApplyEvent: each is applied, ignored, a
// duplicate, stale or parked; none fails.
func TestEveryFixtureApplies(t *testing.T) {
	b := setup(t)
	dir := testkit.FixturesDir(t)
	var files []string
	err := filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".json") {
			files = append(files, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	outcomes := map[state.Outcome]int{}
	envelopes := 0
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ev, err := stripeevent.Normalize(raw)
		if err != nil {
			continue // bare objects and data-only files are not envelopes
		}
		envelopes++
		res, err := b.store.ApplyEvent(b.ctx, ev, state.ApplyOptions{ParkUnresolved: true})
		if err != nil {
			t.Errorf("%s: %v", strings.TrimPrefix(f, dir), err)
			continue
		}
		outcomes[res.Outcome]++
	}
	if envelopes < 170 {
		t.Fatalf("only %d envelopes found", envelopes)
	}
	if outcomes[state.OutcomeApplied] == 0 || outcomes[state.OutcomeIgnored] == 0 || outcomes[state.OutcomeDuplicate] == 0 {
		t.Errorf("outcomes %v: expected applied, ignored and duplicate events among the fixtures", outcomes)
	}
	t.Logf("%d envelopes: %v", envelopes, outcomes)
}

// TestParkedEventMissedByItsTeacherIsSwept reproduces the race between
// parking and learning: the charge's customer becomes known by a
// transaction that did not see the parked event. The sweep applies it once.
func TestParkedEventMissedByItsTeacherIsSwept(t *testing.T) {
	b := setupIsolated(t)
	jb := journey.New(t, "cus_Sweep1", base)
	dispute := jb.Dispute("charge.dispute.created", 100, "dp_Sweep1", "ch_Sweep1", "needs_response")
	if res, err := b.store.ApplyEvent(b.ctx, dispute, state.ApplyOptions{ParkUnresolved: true}); err != nil || res.Outcome != state.OutcomeUnresolved {
		t.Fatalf("park: %+v %v", res, err)
	}
	if n, err := b.store.ResolveParked(b.ctx, 100); err != nil || n != 0 {
		t.Fatalf("sweep before the charge is known: %d %v", n, err)
	}
	// The teacher committed its payment ref without claiming the parked
	// event, as a transaction running alongside the park would.
	b.apply(t, jb.CheckoutPayment("checkout.session.completed", 0, "cs_Sweep1", "pi_Sweep1", 2000, "paid"))
	if _, err := b.store.Pool().Exec(b.ctx, `INSERT INTO billing.payment_refs (ref, customer_id) VALUES ('ch_Sweep1', $1)`, jb.CustomerID); err != nil {
		t.Fatal(err)
	}
	if st := b.status(t, jb.CustomerID); st.GetDisputeOpen() {
		t.Fatal("dispute applied before the sweep")
	}
	n, err := b.store.ResolveParked(b.ctx, 100)
	if err != nil || n != 1 {
		t.Fatalf("sweep: applied %d, %v; want 1", n, err)
	}
	if st := b.status(t, jb.CustomerID); !st.GetDisputeOpen() {
		t.Fatalf("swept dispute not in the status: %v", st)
	}
	if n, err := b.store.ResolveParked(b.ctx, 100); err != nil || n != 0 {
		t.Fatalf("second sweep: %d %v; want nothing left", n, err)
	}
	if u, _ := b.store.Unresolved(b.ctx); u != 0 {
		t.Fatalf("unresolved = %d", u)
	}
	var outcome string
	var audits int
	if err := b.store.Pool().QueryRow(b.ctx, `SELECT outcome, (SELECT count(*) FROM billing.audit_log WHERE event_id = $1)
		FROM billing.processed_events WHERE event_id = $1`, dispute.GetEventId()).Scan(&outcome, &audits); err != nil || outcome != "applied" || audits != 1 {
		t.Fatalf("swept event: outcome %q, %d audit rows, %v; want applied and 1", outcome, audits, err)
	}
}

// objectOf is data.object of an event's raw body: the object as an API
// list would return it.
func objectOf(t *testing.T, ev *billingv1.BillingEvent) []byte {
	t.Helper()
	var env struct {
		Data struct {
			Object json.RawMessage `json:"object"`
		} `json:"data"`
	}
	if err := json.Unmarshal(ev.GetRawJson(), &env); err != nil {
		t.Fatal(err)
	}
	return env.Data.Object
}

// A backfill's snapshots restore a customer whose events are long gone,
// canceled subscriptions included, and stand as the newest truth: an event
// created before the listing is stale, one created after it applies.
func TestSnapshotsRestoreStateAndOnlyNewerEventsOverrideThem(t *testing.T) {
	b := setup(t)
	listed := base.Add(400 * 24 * time.Hour)

	gone := journey.New(t, "cus_SnapGone1", base)
	for _, ev := range []*billingv1.BillingEvent{
		gone.Customer("customer.created", 0),
		gone.Subscription("customer.subscription.deleted", 50, "sub_SnapGone1", "canceled", false, nil),
	} {
		snap, err := stripeevent.Snapshot(objectOf(t, ev), listed)
		if err != nil {
			t.Fatal(err)
		}
		if res := b.apply(t, snap); res.Outcome != state.OutcomeApplied {
			t.Fatalf("snapshot %s: %+v", snap.GetType(), res)
		}
	}
	if st := b.status(t, gone.CustomerID); st.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_CANCELED || st.GetEmail() != gone.Email() {
		t.Fatalf("restored from snapshots: %v %q", st.GetStatus(), st.GetEmail())
	}

	live := journey.New(t, "cus_SnapLive1", base)
	activeObj := objectOf(t, live.Subscription("customer.subscription.updated", 0, "sub_SnapLive1", "active", false, nil))
	snap, err := stripeevent.Snapshot(activeObj, listed)
	if err != nil {
		t.Fatal(err)
	}
	b.apply(t, snap)
	// A webhook created an hour before the listing arrives late.
	late := journey.New(t, "cus_SnapLive1", listed.Add(-time.Hour))
	if res := b.apply(t, late.Subscription("customer.subscription.updated", 0, "sub_SnapLive1", "past_due", false, map[string]any{"status": "active"})); res.Outcome != state.OutcomeStale {
		t.Fatalf("an event older than the snapshot: %+v", res)
	}
	if st := b.status(t, live.CustomerID); st.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_ACTIVE {
		t.Fatalf("after an older event: %v, want active", st.GetStatus())
	}
	if res := b.apply(t, late.Subscription("customer.subscription.updated", 3660, "sub_SnapLive1", "past_due", false, map[string]any{"status": "active"})); res.Outcome != state.OutcomeApplied {
		t.Fatalf("an event newer than the snapshot: %+v", res)
	}
	if st := b.status(t, live.CustomerID); st.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_PAST_DUE {
		t.Fatalf("after a newer event: %v, want past_due", st.GetStatus())
	}
}
