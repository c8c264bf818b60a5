package stripeapi_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/stripeapi"
	"github.com/launchready/launchready/test/testkit/stripefake"
)

// testKey is a made-up test-mode key, fresh for each test.
func testKey() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "sk_test_" + hex.EncodeToString(b)
}

func eventJSON(id, typ string, created int64) []byte {
	return fmt.Appendf(nil, `{"id":%q,"object":"event","type":%q,"created":%d,"livemode":false,"data":{"object":{"id":"cus_x","object":"customer"}}}`, id, typ, created)
}

func newClient(t *testing.T, fake *stripefake.Server, key string, rate int) *stripeapi.Client {
	t.Helper()
	c, err := stripeapi.New(stripeapi.Config{Key: config.Secret(key), Base: fake.URL(), Rate: rate,
		RateLimitBackoff: 200 * time.Millisecond, RateLimitBackoffMax: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestListEventsPagesThroughTheWindowNewestFirst(t *testing.T) {
	key := testKey()
	fake := stripefake.New(key)
	defer fake.Close()
	base := int64(1_800_000_000)
	// 260 events over 260 seconds, every third one an invoice event, a
	// few sharing a second.
	for i := range 260 {
		typ := "customer.updated"
		if i%3 == 0 {
			typ = "invoice.paid"
		}
		if err := fake.AddEvent(eventJSON(fmt.Sprintf("evt_%04d", i), typ, base+int64(i-i%4))); err != nil {
			t.Fatal(err)
		}
	}
	c := newClient(t, fake, key, 100)
	since, until := time.Unix(base+20, 0), time.Unix(base+239, 0)
	var got []stripeapi.Event
	pages := 0
	err := c.ListEvents(context.Background(), stripeapi.EventQuery{Since: since, Until: until, Types: []string{"customer.updated"}},
		func(evs []stripeapi.Event) error {
			pages++
			got = append(got, evs...)
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for i := range 260 {
		c := base + int64(i-i%4)
		if i%3 != 0 && c >= since.Unix() && c <= until.Unix() {
			want++
		}
	}
	if len(got) != want || want <= stripeapi.PageSize {
		t.Fatalf("listed %d events, want %d (more than a page)", len(got), want)
	}
	seen := map[string]bool{}
	for i, ev := range got {
		if seen[ev.ID] {
			t.Fatalf("event %s listed twice", ev.ID)
		}
		seen[ev.ID] = true
		if ev.Type != "customer.updated" || ev.Created.Before(since) || ev.Created.After(until) {
			t.Fatalf("event %s (%s at %s) is outside the query", ev.ID, ev.Type, ev.Created)
		}
		if i > 0 && ev.Created.After(got[i-1].Created) {
			t.Fatalf("event %s is newer than the one listed before it", ev.ID)
		}
		var back struct{ ID string }
		if json.Unmarshal(ev.Raw, &back) != nil || back.ID != ev.ID {
			t.Fatalf("raw body of %s does not carry it", ev.ID)
		}
	}
	reqs := fake.Requests()
	if len(reqs) != pages {
		t.Fatalf("%d requests for %d pages", len(reqs), pages)
	}
	for i, r := range reqs {
		q := r.Query
		if q.Get("limit") != "100" || q.Get("created[gte]") != fmt.Sprint(since.Unix()) || q.Get("created[lte]") != fmt.Sprint(until.Unix()) {
			t.Fatalf("request %d query %v: want limit=100 and the window", i, q)
		}
		if (i == 0) != (q.Get("starting_after") == "") {
			t.Fatalf("request %d: starting_after %q", i, q.Get("starting_after"))
		}
	}
}

func TestRateLimitedAnswersAreWaitedOutWithinTheRate(t *testing.T) {
	key := testKey()
	fake := stripefake.New(key)
	defer fake.Close()
	for i := range 450 {
		if err := fake.AddEvent(eventJSON(fmt.Sprintf("evt_%04d", i), "customer.updated", 1_800_000_000+int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	const rate = 5
	c := newClient(t, fake, key, rate)
	fake.RateLimitFor(3 * time.Second)
	start := time.Now()
	n := 0
	if err := c.ListEvents(context.Background(), stripeapi.EventQuery{}, func(evs []stripeapi.Event) error { n += len(evs); return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 450 {
		t.Fatalf("listed %d events, want 450", n)
	}
	if c.RateLimited() == 0 || time.Since(start) < 3*time.Second {
		t.Fatalf("%d rate-limited answers in %s: the 429s did not bite", c.RateLimited(), time.Since(start))
	}
	if most := fake.MaxPerWindow(time.Second); most > rate {
		t.Fatalf("%d requests arrived within one second, over the rate of %d", most, rate)
	}
}

func TestServerErrorsAreRetriedByStripeGo(t *testing.T) {
	key := testKey()
	fake := stripefake.New(key)
	defer fake.Close()
	if err := fake.AddEvent(eventJSON("evt_1", "customer.updated", 1_800_000_000)); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, fake, key, 100)
	fake.Fail500(2)
	n := 0
	if err := c.ListEvents(context.Background(), stripeapi.EventQuery{}, func(evs []stripeapi.Event) error { n += len(evs); return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 1 || len(fake.Requests()) != 3 || c.Requests() != 3 {
		t.Fatalf("%d events after %d requests (%d counted); want 1 after two 500s and a success", n, len(fake.Requests()), c.Requests())
	}

	// Past MaxNetworkRetries the error says what Stripe answered, not
	// its message.
	fake.Fail500(10)
	err := c.ListEvents(context.Background(), stripeapi.EventQuery{}, func([]stripeapi.Event) error { return nil })
	var ae *stripeapi.APIError
	if !errors.As(err, &ae) || ae.Status != http.StatusInternalServerError || strings.Contains(err.Error(), "unknown error occurred") {
		t.Fatalf("after persistent 500s: %v", err)
	}
}

func TestRateLimitPatienceEnds(t *testing.T) {
	key := testKey()
	fake := stripefake.New(key)
	defer fake.Close()
	c, err := stripeapi.New(stripeapi.Config{Key: config.Secret(key), Base: fake.URL(), Rate: 100,
		RateLimitBackoff: 50 * time.Millisecond, RateLimitBackoffMax: 100 * time.Millisecond, RateLimitPatience: 500 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	fake.RateLimitFor(time.Minute)
	err = c.ListEvents(context.Background(), stripeapi.EventQuery{}, func([]stripeapi.Event) error { return nil })
	if !errors.Is(err, stripeapi.ErrRateLimited) {
		t.Fatalf("after 429s past the patience: %v, want ErrRateLimited", err)
	}
}

func TestKeyModeMustMatchLivemode(t *testing.T) {
	live := "sk_live_" + strings.Repeat("0", 24)
	if _, err := stripeapi.New(stripeapi.Config{Key: config.Secret(live), Livemode: "test"}); !errors.Is(err, stripeapi.ErrWrongMode) {
		t.Fatalf("live key with STRIPE_LIVEMODE=test: %v", err)
	}
	if _, err := stripeapi.New(stripeapi.Config{Key: config.Secret(testKey()), Livemode: "live"}); !errors.Is(err, stripeapi.ErrWrongMode) {
		t.Fatalf("test key with STRIPE_LIVEMODE=live: %v", err)
	}
	if _, err := stripeapi.New(stripeapi.Config{Key: config.Secret("rk_live_x"), Livemode: "live"}); err != nil {
		t.Fatalf("restricted live key in live mode: %v", err)
	}
	if _, err := stripeapi.New(stripeapi.Config{}); !errors.Is(err, stripeapi.ErrNoKey) {
		t.Fatalf("no key: %v", err)
	}
	e := config.New(config.Map(map[string]string{"STRIPE_API_KEY": live, "STRIPE_LIVEMODE": "test"}))
	stripeapi.ConfigFromEnv(e)
	if err := e.Err(); err == nil || strings.Contains(err.Error(), live) {
		t.Fatalf("config with a live key in test mode: %v; want a refusal without the key", err)
	}
	e = config.New(config.Map(map[string]string{}))
	if c := stripeapi.ConfigFromEnv(e); e.Err() != nil || c.Rate != stripeapi.DefaultRate || c.Configured() {
		t.Fatalf("defaults: %+v %v", c, e.Err())
	}
}

func TestSubscriptionsAreListedWithCanceledOnes(t *testing.T) {
	key := testKey()
	fake := stripefake.New(key)
	defer fake.Close()
	for i, st := range []string{"active", "canceled", "past_due"} {
		if err := fake.PutObject(fmt.Appendf(nil, `{"id":"sub_%d","object":"subscription","status":%q,"customer":"cus_%d","created":%d}`, i, st, i%2, 1_800_000_000+i)); err != nil {
			t.Fatal(err)
		}
	}
	c := newClient(t, fake, key, 100)
	var ids []string
	err := c.ListObjects(context.Background(), stripeapi.Subscriptions, stripeapi.ObjectQuery{}, func(objs []stripeapi.Object) error {
		for _, o := range objs {
			ids = append(ids, o.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(ids, ",") != "sub_2,sub_1,sub_0" {
		t.Fatalf("listed %v, want every subscription newest first, the canceled one included", ids)
	}
	ids = nil
	err = c.ListObjects(context.Background(), stripeapi.Subscriptions, stripeapi.ObjectQuery{Customer: "cus_0"}, func(objs []stripeapi.Object) error {
		for _, o := range objs {
			ids = append(ids, o.ID)
		}
		return nil
	})
	if err != nil || strings.Join(ids, ",") != "sub_2,sub_0" {
		t.Fatalf("cus_0's subscriptions: %v %v", ids, err)
	}
	o, err := c.GetSubscription(context.Background(), "sub_1")
	if err != nil || o.Object != "subscription" || o.ID != "sub_1" {
		t.Fatalf("get sub_1: %+v %v", o, err)
	}
	if _, err := c.GetSubscription(context.Background(), "sub_none"); !stripeapi.IsNotFound(err) {
		t.Fatalf("get a missing subscription: %v", err)
	}
}
