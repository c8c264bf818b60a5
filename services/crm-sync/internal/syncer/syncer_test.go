package syncer_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/pkg/canonical"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/crm-sync/internal/crm"
	"github.com/launchready/launchready/services/crm-sync/internal/store"
	"github.com/launchready/launchready/services/crm-sync/internal/syncer"
	"github.com/launchready/launchready/test/testkit/hubspotfake"
	"github.com/launchready/launchready/test/testkit/journey"
)

type bundle struct {
	pool    *pgxpool.Pool
	fake    *hubspotfake.Server
	hubspot *crm.HubSpot
	sy      *syncer.Syncer
	policy  canonical.Policy
	trips   *pgtest.RoundTrips
}

func randomToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "pat-na1-" + hex.EncodeToString(b)
}

func setup(t *testing.T, mutate func(*syncer.Options)) *bundle {
	t.Helper()
	ctx := context.Background()
	trips := &pgtest.RoundTrips{}
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t), pg.WithMaxConns(16), pg.WithTracer(trips))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := store.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	token := randomToken(t)
	fake := hubspotfake.Start(token)
	t.Cleanup(fake.Close)
	caller := crm.NewClient(crm.ClientConfig{Vendor: "hubspot", Timeout: 5 * time.Second, Limit: 100000, Window: time.Second, Secrets: []string{token}})
	hs := crm.NewHubSpot(caller, crm.HubSpotConfig{BaseURL: fake.URL(), Token: token})
	o := syncer.Options{Pool: pool, Adapter: hs, Policy: canonical.DefaultPolicy()}
	if mutate != nil {
		mutate(&o)
	}
	return &bundle{pool: pool, fake: fake, hubspot: hs, sy: syncer.New(o), policy: o.Policy, trips: trips}
}

func journeys(t *testing.T, tag string) []journey.Story {
	t.Helper()
	js, err := journey.Stories(tag, time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// expectContact is the contact the service's own derivation makes of f.
func expectContact(customerID string, f journey.Facts, p canonical.Policy) crm.Contact {
	return syncer.DeriveContact(customerID, f.Email, f.Name, f.UserID, f.Deleted, false, f.LastFailed, f.DisputeOpen, f.Subscriptions, f.Purchases, p)
}

// checkHubSpot checks that the fake holds what events, folded in order,
// make of the journey's customer, through the service's own derivation.
func checkHubSpot(t testing.TB, fake *hubspotfake.Server, j journey.Story, events []*billingv1.BillingEvent, p canonical.Policy) {
	t.Helper()
	f := journey.Fold(events)
	contact := expectContact(j.CustomerID, f, p)
	want := hubspotfake.Want{CustomerID: j.CustomerID, Contact: crm.ContactProperties(contact), Deals: map[string]map[string]string{}}
	hs := crm.NewHubSpot(nil, crm.HubSpotConfig{})
	for _, s := range f.Subscriptions {
		if d, ok := syncer.DeriveDeal(s, contact.Email); ok {
			want.Deals[s.ID] = hs.DealProperties(d)
		}
	}
	fake.Check(t, fmt.Sprintf("%s after %d events", j.Name, len(events)), want)
	if got, made := len(want.Deals), len(j.Subscriptions); len(events) == len(j.Events) && got != made {
		t.Errorf("%s: oracle knows %d subscriptions, journey made %d", j.Name, got, made)
	}
}

func checkCRM(t *testing.T, b *bundle, j journey.Story, events []*billingv1.BillingEvent) {
	t.Helper()
	checkHubSpot(t, b.fake, j, events, b.policy)
}

func TestJourneysInOrderMatchCanonicalAfterEveryStep(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	outcomes := map[string]int{}
	for _, j := range journeys(t, "ord") {
		for i, ev := range j.Events {
			before := len(b.fake.Requests())
			out, err := b.sy.SyncEvent(ctx, ev, 1)
			if err != nil {
				t.Fatalf("%s step %d (%s): %v", j.Name, i, ev.GetType(), err)
			}
			outcomes[out]++
			if out == syncer.OutcomeUnchanged && len(b.fake.Requests()) != before {
				t.Errorf("%s step %d: unchanged, yet %d CRM calls", j.Name, i, len(b.fake.Requests())-before)
			}
			checkCRM(t, b, j, j.Events[:i+1])
		}
	}
	if outcomes[syncer.OutcomeSynced] == 0 || outcomes[syncer.OutcomeUnchanged] == 0 {
		t.Errorf("outcomes %v: want some synced and some unchanged (an invoice.paid that changes nothing makes no call)", outcomes)
	}
	// Spot checks that the oracle itself says what the journeys are about.
	want := map[string]string{"lifecycle": "canceled", "trial": "active", "refund": "refunded", "dispute": "active", "two-subscriptions": "active"}
	for _, j := range journeys(t, "ord") {
		got := expectContact(j.CustomerID, journey.Fold(j.Events), b.policy).Status
		if got != want[j.Name] {
			t.Errorf("%s ends %s, want %s", j.Name, got, want[j.Name])
		}
		c, ok := b.fake.Find("contacts", "stripe_customer_id", j.CustomerID)
		if !ok || c.Properties["billing_status"] != want[j.Name] {
			t.Errorf("%s: CRM billing_status %q, want %s", j.Name, c.Properties["billing_status"], want[j.Name])
		}
	}
}

func TestDuplicateEventIsSkipped(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	j := journeys(t, "dup")[0]
	if _, err := b.sy.SyncEvent(ctx, j.Events[0], 1); err != nil {
		t.Fatal(err)
	}
	writes := b.fake.Writes()
	out, err := b.sy.SyncEvent(ctx, j.Events[0], 2)
	if err != nil || out != syncer.OutcomeDuplicate {
		t.Fatalf("redelivery: outcome %q, err %v; want duplicate", out, err)
	}
	if b.fake.Writes() != writes {
		t.Fatalf("redelivery wrote to the CRM: %d writes, want %d", b.fake.Writes(), writes)
	}
}

// A synced subscription event costs four round trips to Postgres (see the
// README), a duplicate one.
func TestSyncedEventCostsFourRoundTrips(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	j := journeys(t, "trips")[0]
	measured := 0
	for i, ev := range j.Events {
		before := b.trips.Count()
		out, err := b.sy.SyncEvent(ctx, ev, 1)
		if err != nil {
			t.Fatalf("event %d (%s): %v", i, ev.GetType(), err)
		}
		if out != syncer.OutcomeSynced || !strings.HasPrefix(ev.GetType(), "customer.subscription.") {
			continue
		}
		measured++
		t.Logf("%s: %d round trips", ev.GetType(), b.trips.Count()-before)
		if got := b.trips.Count() - before; got != 4 {
			t.Fatalf("event %d (%s) synced in %d round trips, want 4", i, ev.GetType(), got)
		}
		before = b.trips.Count()
		if out, err := b.sy.SyncEvent(ctx, ev, 2); err != nil || out != syncer.OutcomeDuplicate {
			t.Fatalf("redelivery: outcome %q, err %v; want duplicate", out, err)
		}
		// BEGIN with the lock and the check, then COMMIT.
		if got := b.trips.Count() - before; got != 2 {
			t.Fatalf("duplicate of %s took %d round trips, want 2", ev.GetType(), got)
		}
	}
	if measured == 0 {
		t.Fatalf("journey %s has no synced subscription event", j.Name)
	}
}

func TestIgnoredEventTypesMakeNoCalls(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	g := &journey.ObjectGen{Prefix: "ign"}
	ev, err := g.Event("payment_method.attached", time.Now(), journey.Obj{"id": "pm_1", "object": "payment_method", "customer": "cus_ign"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.sy.SyncEvent(context.Background(), ev, 1)
	if err != nil || out != syncer.OutcomeIgnored {
		t.Fatalf("outcome %q, err %v; want ignored", out, err)
	}
	if n := len(b.fake.Requests()); n != 0 {
		t.Fatalf("%d CRM requests for an ignored event", n)
	}
}

// Shuffled delivery with duplicates, sequential and concurrent, must end
// where in-order delivery ends, with no duplicate record.
func TestShuffledDuplicatedDeliveriesConverge(t *testing.T) {
	t.Parallel()
	const seeds = 8
	b := setup(t, nil)
	ctx := context.Background()
	for seed := uint64(1); seed <= seeds; seed++ {
		tag := fmt.Sprintf("s%d", seed)
		js := journeys(t, tag)
		var all []*billingv1.BillingEvent
		for _, j := range js {
			all = append(all, j.Events...)
		}
		r := mrand.New(mrand.NewPCG(seed, 42))
		n := len(all)
		for i := 0; i < n/3; i++ {
			all = append(all, all[r.IntN(n)])
		}
		r.Shuffle(len(all), func(i, k int) { all[i], all[k] = all[k], all[i] })
		if seed%3 == 0 {
			// Concurrent workers, as the consumer runs them.
			var wg sync.WaitGroup
			errs := make(chan error, len(all))
			ch := make(chan *billingv1.BillingEvent)
			for w := 0; w < 6; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for ev := range ch {
						if _, err := b.sy.SyncEvent(ctx, ev, 1); err != nil {
							errs <- fmt.Errorf("%s: %w", ev.GetEventId(), err)
						}
					}
				}()
			}
			for _, ev := range all {
				ch <- ev
			}
			close(ch)
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("seed %d: %v", seed, err)
			}
		} else {
			for _, ev := range all {
				if _, err := b.sy.SyncEvent(ctx, ev, 1); err != nil {
					t.Fatalf("seed %d %s: %v", seed, ev.GetEventId(), err)
				}
			}
		}
		for _, j := range js {
			checkCRM(t, b, j, j.Events)
		}
	}
	var n int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM crm.processed_events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if want := seeds * countEvents(journeys(t, "x")); n != want {
		t.Fatalf("processed_events has %d rows, want %d (one per distinct event)", n, want)
	}
}

func countEvents(js []journey.Story) int {
	n := 0
	for _, j := range js {
		n += len(j.Events)
	}
	return n
}

// A crash between the CRM call and the commit: the retry writes to the
// same records.
func TestCrashAfterPushCreatesNoDuplicate(t *testing.T) {
	t.Parallel()
	var once sync.Once
	crashed := false
	b := setup(t, func(o *syncer.Options) {
		o.AfterPush = func(string) error {
			err := error(nil)
			once.Do(func() { crashed, err = true, fmt.Errorf("simulated crash") })
			return err
		}
	})
	ctx := context.Background()
	j := journeys(t, "crash")[0]
	// The subscription event: contact, deal and association all happen
	// before the staged crash.
	ev := j.Events[2]
	if _, err := b.sy.SyncEvent(ctx, ev, 1); err == nil || !crashed {
		t.Fatalf("first delivery: err %v, crashed %v; want the staged crash", err, crashed)
	}
	if len(b.fake.Contacts()) != 1 || len(b.fake.Deals()) != 1 {
		t.Fatalf("after the crash the CRM holds %d contacts and %d deals; the push should have landed", len(b.fake.Contacts()), len(b.fake.Deals()))
	}
	out, err := b.sy.SyncEvent(ctx, ev, 2)
	if err != nil || out != syncer.OutcomeSynced {
		t.Fatalf("redelivery: outcome %q err %v", out, err)
	}
	if len(b.fake.Contacts()) != 1 || len(b.fake.Deals()) != 1 {
		t.Fatalf("after redelivery: %d contacts, %d deals; want 1 and 1", len(b.fake.Contacts()), len(b.fake.Deals()))
	}
	upserts := 0
	for _, r := range b.fake.Requests() {
		if r.Path == "/crm/v3/objects/deals/batch/upsert" {
			upserts++
		}
	}
	if upserts != 2 {
		t.Fatalf("deal upserts = %d, want 2 (one before the crash, one on redelivery)", upserts)
	}
	var rolledBack int
	if err := b.pool.QueryRow(ctx, `SELECT count(*) FROM crm.sync_log WHERE event_id = $1 AND outcome = 'rolled_back'`, ev.GetEventId()).Scan(&rolledBack); err != nil {
		t.Fatal(err)
	}
	if rolledBack != 1 {
		t.Fatalf("sync_log rolled_back rows = %d, want 1", rolledBack)
	}
}

// A contact deleted in HubSpot by a user is recreated, not lost.
func TestContactDeletedInCRMIsRecreated(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx := context.Background()
	j := journeys(t, "gone")[0]
	for _, ev := range j.Events[:3] {
		if _, err := b.sy.SyncEvent(ctx, ev, 1); err != nil {
			t.Fatal(err)
		}
	}
	c, _ := b.fake.Find("contacts", "stripe_customer_id", j.CustomerID)
	b.fake.Archive("contacts", c.ID)
	for _, ev := range j.Events[3:] {
		if _, err := b.sy.SyncEvent(ctx, ev, 1); err != nil {
			t.Fatal(err)
		}
	}
	checkCRM(t, b, j, j.Events)
}
