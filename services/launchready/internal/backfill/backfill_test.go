package backfill_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/launchready/internal/backfill"
	"github.com/launchready/launchready/test/testkit/stripefake"
)

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

type bundle struct {
	fake *stripefake.Server
	nats *natstest.Server
	env  map[string]string
	db   *pgxpool.Pool
	js   jetstream.JetStream
	// ids are the events stored in the fake, in Stripe's order (by
	// created time, then as added).
	ids []string
	// order is the event ids in the stream's order, as the last call of
	// stream found them.
	order []string
}

func setup(t *testing.T) *bundle {
	t.Helper()
	key := "sk_test_" + random(12)
	b := &bundle{fake: stripefake.New(key), nats: natstest.Start(t)}
	t.Cleanup(b.fake.Close)
	dbURL := pgtest.NewDatabase(t)
	b.env = map[string]string{
		"STRIPE_API_KEY":  key,
		"STRIPE_API_BASE": b.fake.URL(),
		"STRIPE_API_RATE": "200",
		"STRIPE_LIVEMODE": "test",
		"DATABASE_URL":    dbURL,
		"LOG_LEVEL":       "warn",
	}
	maps.Copy(b.env, b.nats.Env(natsauth.Backfill))
	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	b.db = pool
	nc, js, err := bus.Connect(context.Background(), b.nats.Conn(natstest.Observer), "observer", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	b.js = js
	return b
}

// addEvents stores n customer events, created one a second ending now-1m.
func (b *bundle) addEvents(t *testing.T, n int, typ string) {
	t.Helper()
	b.addEventsPerSecond(t, n, 1, typ)
}

// addEventsPerSecond stores n customer events, created perSecond a second
// ending now-1m.
func (b *bundle) addEventsPerSecond(t *testing.T, n, perSecond int, typ string) {
	t.Helper()
	end := time.Now().Add(-time.Minute).Unix()
	for i := range n {
		id := "evt_" + random(12)
		cus := fmt.Sprintf("cus_bf%04d", i%50)
		body := fmt.Sprintf(`{"id":%q,"object":"event","api_version":"2023-10-16","created":%d,"livemode":false,"type":%q,`+
			`"data":{"object":{"id":%q,"object":"customer","email":"%s@example.com"}},"request":{"id":null,"idempotency_key":null}}`,
			id, end-int64((n-1-i)/perSecond), typ, cus, cus)
		if err := b.fake.AddEvent([]byte(body)); err != nil {
			t.Fatal(err)
		}
		b.ids = append(b.ids, id)
	}
}

func (b *bundle) run(t *testing.T, ctx context.Context, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errw bytes.Buffer
	code = backfill.Main(ctx, args, func(k string) string { return b.env[k] }, &out, &errw)
	return code, out.String(), errw.String()
}

// stream returns the stored events by id, with their source header.
func (b *bundle) stream(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	st, err := b.js.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	b.order = b.order[:0]
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var ev billingv1.BillingEvent
		if err := proto.Unmarshal(m.Data, &ev); err != nil {
			t.Fatal(err)
		}
		if _, dup := got[ev.EventId]; dup {
			t.Fatalf("event %s stored twice", ev.EventId)
		}
		if m.Header.Get("Nats-Msg-Id") != ev.EventId || m.Header.Get(bus.HeaderSource) != bus.SourceName(ev.Source) {
			t.Fatalf("event %s: Nats-Msg-Id %q, source %v, header %q", ev.EventId, m.Header.Get("Nats-Msg-Id"), ev.Source, m.Header.Get(bus.HeaderSource))
		}
		got[ev.EventId] = m.Header.Get(bus.HeaderSource) + " " + m.Subject
		b.order = append(b.order, ev.EventId)
	}
	return got
}

func TestBackfillPublishesTheWindowOnceAndASecondRunNothing(t *testing.T) {
	b := setup(t)
	b.addEvents(t, 230, "customer.updated")
	ctx := context.Background()
	code, out, errs := b.run(t, ctx, "--since", "1h")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(out, "230 published, 0 already known") || !strings.Contains(out, "customer.updated  230") {
		t.Fatalf("summary:\n%s", out)
	}
	got := b.stream(t)
	if len(got) != 230 {
		t.Fatalf("stream holds %d events, want 230", len(got))
	}
	for _, id := range b.ids {
		if !strings.HasPrefix(got[id], "api ") {
			t.Fatalf("event %s: source header %q, want api", id, got[id])
		}
	}

	// A second run over the same window publishes nothing new.
	code, out, errs = b.run(t, ctx, "--since", "1h")
	if code != 0 || !strings.Contains(out, "0 published, 230 already known") {
		t.Fatalf("second run: exit %d\n%s%s", code, out, errs)
	}
	if n := len(b.stream(t)); n != 230 {
		t.Fatalf("after a second run the stream holds %d events, want 230", n)
	}

	// Without --since the next run starts where the last one ended.
	before := len(b.fake.Requests())
	code, out, errs = b.run(t, ctx)
	if code != 0 {
		t.Fatalf("run without --since: exit %d\n%s%s", code, out, errs)
	}
	var lastEnd time.Time
	if err := b.db.QueryRow(ctx, `SELECT max(window_end) FROM backfill.runs WHERE completed_at IS NOT NULL AND id < (SELECT max(id) FROM backfill.runs)`).Scan(&lastEnd); err != nil {
		t.Fatal(err)
	}
	reqs := b.fake.Requests()[before:]
	if len(reqs) == 0 || reqs[0].Query.Get("created[gte]") != fmt.Sprint(lastEnd.Unix()) {
		t.Fatalf("run without --since asked for %v, want created[gte]=%d", reqs, lastEnd.Unix())
	}
}

func TestInterruptedBackfillResumesFromItsMark(t *testing.T) {
	b := setup(t)
	b.addEvents(t, 450, "customer.updated")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Killed while it asks for the third page.
	var pages atomic.Int32
	b.fake.OnRequest(func(r *http.Request) {
		if r.URL.Path == "/v1/events" && pages.Add(1) == 3 {
			cancel()
		}
	})
	code, out, errs := b.run(t, ctx, "--since", "1h")
	if code != 1 {
		t.Fatalf("interrupted run: exit %d, want 1\n%s%s", code, out, errs)
	}
	b.fake.OnRequest(nil)
	// It lists the whole window before it publishes any of it.
	if n := len(b.stream(t)); n != 0 {
		t.Fatalf("the run interrupted while listing published %d events, want none", n)
	}
	var spooled, published int
	if err := b.db.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE published) FROM backfill.spool`).Scan(&spooled, &published); err != nil {
		t.Fatal(err)
	}
	if spooled != 200 || published != 0 {
		t.Fatalf("the interrupted run spooled %d events (%d published), want its two full pages (200), none published", spooled, published)
	}
	var mark time.Time
	var done *time.Time
	if err := b.db.QueryRow(context.Background(), `SELECT next_until, completed_at FROM backfill.runs`).Scan(&mark, &done); err != nil {
		t.Fatal(err)
	}
	if done != nil {
		t.Fatal("the interrupted run is recorded as complete")
	}

	// The next invocation, with a later window of its own, goes back for
	// the older part first.
	before := len(b.fake.Requests())
	code, out, errs = b.run(t, context.Background(), "--since", "5m")
	if code != 0 {
		t.Fatalf("resumed run: exit %d\n%s%s", code, out, errs)
	}
	resumed := b.fake.Requests()[before]
	if resumed.Query.Get("created[lte]") != fmt.Sprint(mark.Unix()) || resumed.Query.Get("starting_after") != "" {
		t.Fatalf("resumed with %v, want created[lte]=%d (the mark)", resumed.Query, mark.Unix())
	}
	if !strings.Contains(out, "continued 1 interrupted run") {
		t.Fatalf("summary:\n%s", out)
	}
	all := b.stream(t)
	if len(all) != 450 {
		t.Fatalf("after resuming the stream holds %d events, want 450", len(all))
	}
	if !slices.Equal(b.order[:450], b.ids) {
		t.Fatal("the resumed run did not publish its window oldest first")
	}
	var unfinished int
	if err := b.db.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM backfill.runs WHERE completed_at IS NULL) + (SELECT count(*) FROM backfill.spool)`).Scan(&unfinished); err != nil || unfinished != 0 {
		t.Fatalf("%d runs left unfinished or events left spooled (%v)", unfinished, err)
	}
}

// TestBackfillPublishesOldestFirstInStripesOrder: Stripe lists newest
// first, several events share a second, and the window spans three pages;
// the stream receives them as webhooks would have come, oldest first and
// in Stripe's order within a second, page boundaries included.
func TestBackfillPublishesOldestFirstInStripesOrder(t *testing.T) {
	b := setup(t)
	b.addEventsPerSecond(t, 250, 7, "customer.updated")
	code, out, errs := b.run(t, context.Background(), "--since", "1h")
	if code != 0 || !strings.Contains(out, "read 250 events") || !strings.Contains(out, "250 published, 0 already known") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	b.stream(t)
	if !slices.Equal(b.order, b.ids) {
		for i := range min(len(b.order), len(b.ids)) {
			if b.order[i] != b.ids[i] {
				t.Fatalf("stream position %d holds %s, want %s; %d events stored", i, b.order[i], b.ids[i], len(b.order))
			}
		}
		t.Fatalf("stream holds %d events, want 250", len(b.order))
	}
	var spooled int
	if err := b.db.QueryRow(context.Background(), `SELECT count(*) FROM backfill.spool`).Scan(&spooled); err != nil || spooled != 0 {
		t.Fatalf("%d events left in the spool after a complete run (%v)", spooled, err)
	}
}

func TestDryRunCountsByTypeAndPublishesNothing(t *testing.T) {
	b := setup(t)
	b.addEvents(t, 30, "customer.updated")
	b.addEvents(t, 12, "customer.created")
	code, out, errs := b.run(t, context.Background(), "--since", "2h", "--dry-run", "--types", "customer.created")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(out, "12 events would be published") || !strings.Contains(out, "customer.created  12") || strings.Contains(out, "customer.updated") {
		t.Fatalf("dry run summary:\n%s", out)
	}
	if n := len(b.stream(t)); n != 0 {
		t.Fatalf("a dry run stored %d events", n)
	}
	var runs int
	if err := b.db.QueryRow(context.Background(), `SELECT count(*) FROM pg_tables WHERE schemaname = 'backfill'`).Scan(&runs); err != nil || runs != 0 {
		t.Fatalf("a dry run with --since touched the database: %d tables (%v)", runs, err)
	}
}

func TestBackfillRefusesWithoutWhatItNeeds(t *testing.T) {
	b := setup(t)
	for _, c := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"no key", map[string]string{"STRIPE_API_KEY": ""}, []string{"--since", "1h"}, "STRIPE_API_KEY is not set"},
		{"live key in test mode", map[string]string{"STRIPE_API_KEY": "sk_live_" + random(12)}, []string{"--since", "1h"}, "STRIPE_LIVEMODE=test"},
		{"bad since", nil, []string{"--since", "yesterday"}, "neither a duration"},
		{"no since and no earlier run", nil, nil, "give --since"},
	} {
		t.Run(c.name, func(t *testing.T) {
			saved := maps.Clone(b.env)
			defer func() { b.env = saved }()
			maps.Copy(b.env, c.env)
			code, out, errs := b.run(t, context.Background(), c.args...)
			if code == 0 || !strings.Contains(errs, c.want) {
				t.Fatalf("exit %d, want a refusal saying %q\n%s%s", code, c.want, out, errs)
			}
			if strings.Contains(errs, "sk_live_") {
				t.Fatal("the refusal shows the key")
			}
		})
	}
}

func TestObjectsArePublishedAsSnapshotsCanceledSubscriptionsIncluded(t *testing.T) {
	b := setup(t)
	old := time.Now().Add(-400 * 24 * time.Hour).Unix()
	objects := []string{
		`{"id":"cus_old1","object":"customer","email":"old1@example.com","created":%d}`,
		`{"id":"cus_old2","object":"customer","email":"old2@example.com","created":%d}`,
		`{"id":"sub_old1","object":"subscription","status":"canceled","customer":"cus_old1","created":%d}`,
		`{"id":"sub_old2","object":"subscription","status":"active","customer":"cus_old2","created":%d}`,
		`{"id":"cs_old3","object":"checkout.session","status":"open","mode":"payment","customer":"cus_old2","created":%d}`,
	}
	for _, o := range objects {
		if err := b.fake.PutObject(fmt.Appendf(nil, o, old)); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs := b.run(t, context.Background(), "--objects", "--dry-run")
	if code != 0 || !strings.Contains(out, "5 objects would be published") || !strings.Contains(out, "subscriptions      2") {
		t.Fatalf("dry run: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = b.run(t, context.Background(), "--objects")
	if code != 0 || !strings.Contains(out, "4 published, 0 already known, 1 skipped") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	got := b.stream(t)
	subjects := map[string]bool{}
	for id, v := range got {
		if !strings.HasPrefix(id, "snap_") || !strings.HasPrefix(v, "snapshot ") {
			t.Fatalf("message %s: %q, want a snapshot", id, v)
		}
		subjects[strings.TrimPrefix(v, "snapshot ")] = true
	}
	for _, want := range []string{"billing.events.customer.updated", "billing.events.customer.subscription.deleted", "billing.events.customer.subscription.updated"} {
		if !subjects[want] {
			t.Fatalf("no snapshot on %s: %v", want, subjects)
		}
	}
	for _, r := range b.fake.Requests() {
		if r.Path == "/v1/subscriptions" && r.Query.Get("status") != "all" {
			t.Fatalf("subscriptions listed without status=all: %v", r.Query)
		}
	}
	code, out, errs = b.run(t, context.Background(), "--objects")
	if code != 0 || !strings.Contains(out, "0 published, 4 already known") {
		t.Fatalf("second run: exit %d\n%s%s", code, out, errs)
	}
}

// TestRateLimitedBackfillWaitsAndStaysWithinTheRate: Stripe answers every
// request with a rate-limit 429 for 5 s, which stripe-go does not retry;
// the backfill backs off, keeps going and completes, and no second of the
// fake's own request log holds more than STRIPE_API_RATE requests, the
// refused ones included.
func TestRateLimitedBackfillWaitsAndStaysWithinTheRate(t *testing.T) {
	b := setup(t)
	const rate = 5
	b.env["STRIPE_API_RATE"] = fmt.Sprint(rate)
	b.addEvents(t, 500, "customer.updated")
	const refused = 5 * time.Second
	b.fake.RateLimitFor(refused)
	start := time.Now()
	code, out, errs := b.run(t, context.Background(), "--since", "1h")
	took := time.Since(start)
	if code != 0 || !strings.Contains(out, "500 published, 0 already known") {
		t.Fatalf("exit %d after %s\n%s%s", code, took, out, errs)
	}
	var limited, served int
	var lastRefused time.Time
	for _, r := range b.fake.Requests() {
		switch r.Status {
		case http.StatusTooManyRequests:
			limited++
			lastRefused = r.At
		case http.StatusOK:
			served++
		}
	}
	if limited < 2 || took < refused || served != 5 {
		t.Fatalf("%d rate-limited answers, %d pages served, in %s: want the 429s to last %s and all 5 pages after", limited, served, took, refused)
	}
	if !strings.Contains(out, fmt.Sprintf("%d rate-limited answers waited out", limited)) {
		t.Fatalf("the summary does not count the %d rate-limited answers:\n%s", limited, out)
	}
	most := b.fake.MaxPerWindow(time.Second)
	if most > rate {
		t.Fatalf("%d requests arrived within one second, over STRIPE_API_RATE=%d", most, rate)
	}
	if n := len(b.stream(t)); n != 500 {
		t.Fatalf("the stream holds %d events, want 500", n)
	}
	t.Logf("%d rate-limited answers until %s after the start, then %d pages; done in %s; at most %d requests in any second (rate %d)",
		limited, lastRefused.Sub(start).Round(time.Millisecond), served, took.Round(time.Millisecond), most, rate)
}
