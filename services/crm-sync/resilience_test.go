package crmsync

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/canonical"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/crm-sync/crmwebhook"
	"github.com/launchready/launchready/test/testkit/hubspotfake"
	"github.com/launchready/launchready/test/testkit/journey"
)

// Shuffled delivery with duplicates (re-sent under new message ids, so
// JetStream stores them and the consumer must skip them) ends where
// in-order delivery ends.
func TestShuffledDuplicatedDeliveriesThroughJetStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"CONSUMER_CONCURRENCY": "4"})
	e.start(nil)
	total := 0
	var all []journey.Story
	for _, seed := range []uint64{7, 19, 101} {
		js, evs := journeys(t, fmt.Sprintf("sh%d", seed))
		all = append(all, js...)
		r := mrand.New(mrand.NewPCG(seed, 1))
		order := r.Perm(len(evs))
		for i, k := range order {
			e.publish(evs[k])
			if i%3 == 0 {
				e.publishAgain(evs[order[r.IntN(i+1)]], i)
			}
		}
		total += len(evs)
	}
	e.waitProcessed(total, 45*time.Second)
	for _, j := range all {
		checkHubSpot(t, e.fake, j, j.Events, canonical.DefaultPolicy())
	}
	// Every stored message was settled: no redelivery is pending.
	eventually(t, 10*time.Second, "consumer settled", func() (bool, string) {
		c, err := e.js.Consumer(context.Background(), bus.StreamEvents, Durable)
		if err != nil {
			return false, err.Error()
		}
		info, err := c.Info(context.Background())
		if err != nil {
			return false, err.Error()
		}
		return info.NumPending == 0 && info.NumAckPending == 0, fmt.Sprintf("pending %d ack-pending %d", info.NumPending, info.NumAckPending)
	})
}

// A storm of 429s: calls stay under the configured rate in every window
// the fake measures, Retry-After is honoured, everything syncs once.
func TestRateLimitStorm(t *testing.T) {
	t.Parallel()
	const limit = 20
	e := newEnv(t, map[string]string{
		"CRM_RATE_LIMIT":       strconv.Itoa(limit),
		"CRM_RATE_WINDOW":      "1s",
		"CONSUMER_CONCURRENCY": "6",
	})
	e.fake.Inject(hubspotfake.Fault{Status: http.StatusTooManyRequests, RetryAfter: "1", Count: 8})
	in := e.start(nil)
	js, all := journeys(t, "storm")
	e.publish(all...)
	e.waitProcessed(len(all), 60*time.Second)
	for _, j := range js {
		checkHubSpot(t, e.fake, j, j.Events, canonical.DefaultPolicy())
	}
	if got := e.fake.MaxInWindow(time.Second); got > limit {
		t.Errorf("the fake saw %d requests within one second; the limit is %d", got, limit)
	}
	n429 := 0
	var first429, after time.Time
	for _, r := range e.fake.Requests() { // in order of arrival
		if r.Status == http.StatusTooManyRequests {
			n429++
			if first429.IsZero() {
				first429 = r.At
			}
		} else if !first429.IsZero() && after.IsZero() && r.At.After(first429) {
			after = r.At
		}
	}
	if n429 != 8 {
		t.Errorf("the fake answered 429 %d times, want 8", n429)
	}
	// Retry-After: 1 pauses every worker: the first request answered
	// after the first 429 came at least a second later.
	if gap := after.Sub(first429); gap < 900*time.Millisecond {
		t.Errorf("first successful call %s after the first 429; Retry-After asked for 1s", gap)
	}
	if v := metricValue(t, in.reg, "lr_crm_calls_total", map[string]string{"outcome": "rate_limited"}); v != 8 {
		t.Errorf("lr_crm_calls_total rate_limited = %v, want 8", v)
	}
	if dl := e.deadLetters(); len(dl) != 0 {
		t.Fatalf("dead letters after the storm: %d", len(dl))
	}
	t.Logf("storm: %d requests, max %d in any 1s window (limit %d), %d answered 429",
		len(e.fake.Requests()), e.fake.MaxInWindow(time.Second), limit, n429)
}

// Killed after HubSpot applied the write but before the commit and ack:
// the redelivery upserts the same records.
func TestCrashAfterCRMWriteBeforeAck(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"CRM_TIMEOUT": "30s"})
	dealUpsert := func(r *http.Request) bool { return r.URL.Path == "/crm/v3/objects/deals/batch/upsert" }
	e.fake.Inject(hubspotfake.Fault{AfterWrite: true, Hang: true, Match: dealUpsert})
	first := e.start(func(c *Config) { c.DrainTimeout = 100 * time.Millisecond })
	js, _ := journeys(t, "kill")
	j := js[0]
	e.publish(j.Events[:2]...) // customer, checkout
	e.waitProcessed(2, 20*time.Second)
	e.publish(j.Events[2]) // subscription created
	eventually(t, 20*time.Second, "the deal written and its answer held", func() (bool, string) {
		return len(e.fake.Deals()) == 1 && e.fake.InFlight() == 1, fmt.Sprintf("deals %d in flight %d", len(e.fake.Deals()), e.fake.InFlight())
	})
	first.stop(t) // the process dies with the CRM call in flight
	if n := e.processed(); n != 2 {
		t.Fatalf("processed %d events before the crash, want 2 (the subscription event must not be recorded)", n)
	}
	e.start(nil)
	e.waitProcessed(3, 30*time.Second)
	checkHubSpot(t, e.fake, j, j.Events[:3], canonical.DefaultPolicy())
	upserts := 0
	for _, r := range e.fake.Requests() {
		if dealUpsert(&http.Request{URL: mustURL(r.Path)}) {
			upserts++
		}
	}
	if upserts != 2 || len(e.fake.Deals()) != 1 {
		t.Fatalf("deal upserts %d, deals %d; want the write repeated onto one deal", upserts, len(e.fake.Deals()))
	}
}

// The handler fails between the CRM call and the commit once (a crash
// staged at the worst moment); the bus redelivers and nothing duplicates.
func TestCrashHookThroughJetStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	var crashes atomic.Int32
	js, all := journeys(t, "hook")
	e.start(func(c *Config) {
		c.afterPush = func(string) error {
			if crashes.Add(1) <= 3 {
				return errors.New("simulated crash before commit")
			}
			return nil
		}
	})
	e.publish(all...)
	e.waitProcessed(len(all), 30*time.Second)
	if crashes.Load() < 3 {
		t.Fatalf("only %d pushes happened", crashes.Load())
	}
	for _, j := range js {
		checkHubSpot(t, e.fake, j, j.Events, canonical.DefaultPolicy())
	}
}

// A 400 from HubSpot dead-letters the message with the reason, secrets
// stripped; once the portal is fixed, replaying it syncs the customer.
func TestRejectionGoesToDLQAndReplaySyncs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, nil)
	e.fake.Undefine("contacts", "plan") // the operator forgot one custom property
	e.start(nil)
	js, _ := journeys(t, "rej")
	j := js[0]
	e.publish(j.Events[0])
	var dl bus.DeadLetter
	eventually(t, 20*time.Second, "dead letter", func() (bool, string) {
		dls := e.deadLetters()
		if len(dls) == 1 {
			dl = dls[0]
		}
		return len(dls) == 1, fmt.Sprintf("%d dead letters", len(dls))
	})
	if dl.EventID != j.Events[0].GetEventId() || dl.Consumer != Durable {
		t.Fatalf("dead letter %+v", dl)
	}
	for _, want := range []string{"400", "PROPERTY_DOESNT_EXIST", "plan"} {
		if !strings.Contains(dl.Error, want) {
			t.Errorf("dead letter reason %q lacks %q", dl.Error, want)
		}
	}
	if strings.Contains(dl.Error, e.token) {
		t.Fatal("dead letter reason carries the HubSpot token")
	}
	if dl.Delivered != 1 {
		t.Errorf("dead-lettered on delivery %d; a 400 is not retried", dl.Delivered)
	}
	if n := e.processed(); n != 0 || len(e.fake.Contacts()) != 0 {
		t.Fatalf("processed %d, contacts %d after a rejection", n, len(e.fake.Contacts()))
	}
	var logged int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM crm.sync_log WHERE event_id = $1 AND outcome = 'rejected' AND status = 400`, dl.EventID).Scan(&logged); err != nil || logged != 1 {
		t.Fatalf("sync_log rejected rows = %d (%v), want 1", logged, err)
	}

	e.fake.Define("contacts", "plan")
	if _, err := bus.ReplayDeadLetter(context.Background(), e.js, dl.Seq); err != nil {
		t.Fatal(err)
	}
	e.waitProcessed(1, 20*time.Second)
	checkHubSpot(t, e.fake, j, j.Events[:1], canonical.DefaultPolicy())
	if dls := e.deadLetters(); len(dls) != 0 {
		t.Fatalf("%d dead letters left after replay", len(dls))
	}
}

// A backlog handed over in batches, with one record HubSpot refuses (as a
// 207 multi-status): that customer's events are dead-lettered, alone, and
// every other customer is synced.
func TestBadRecordInABatchIsDeadLetteredAlone(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"CONSUMER_CONCURRENCY": "2"})
	e.fake.SetBatchErrors(hubspotfake.MultiStatus)
	var all []journey.Story
	var evs []*billingv1.BillingEvent
	for i := range 6 {
		js, more := journeys(t, fmt.Sprintf("bb%d", i))
		all = append(all, js...)
		evs = append(evs, more...)
	}
	bad := all[len(all)/2]
	e.fake.RejectRecord("contacts", "stripe_customer_id", bad.CustomerID)
	e.publish(evs...)
	e.start(nil)
	eventually(t, 60*time.Second, "every event settled", func() (bool, string) {
		n, d := e.processed(), len(e.deadLetters())
		return n+d == len(evs) && d > 0, fmt.Sprintf("processed %d, dead letters %d of %d", n, d, len(evs))
	})
	for _, dl := range e.deadLetters() {
		var owner string
		for _, ev := range bad.Events {
			if ev.GetEventId() == dl.EventID {
				owner = bad.CustomerID
			}
		}
		if owner == "" {
			t.Errorf("dead letter %s (%s) is not the bad record's", dl.EventID, dl.Error)
		}
		if !strings.Contains(dl.Error, "INVALID_OPTION") {
			t.Errorf("dead letter reason %q lacks HubSpot's", dl.Error)
		}
	}
	if _, found := e.fake.Find("contacts", "stripe_customer_id", bad.CustomerID); found {
		t.Errorf("the bad record reached HubSpot")
	}
	for _, j := range all {
		if j.CustomerID != bad.CustomerID {
			checkHubSpot(t, e.fake, j, j.Events, canonical.DefaultPolicy())
		}
	}
}

// A CRM that hangs: calls time out and are retried with backoff, no more
// calls are in flight than workers, and publishing is never held up.
func TestHangingCRMTimesOutWithBoundedConcurrency(t *testing.T) {
	t.Parallel()
	e := newEnv(t, map[string]string{"CRM_TIMEOUT": "300ms", "CONSUMER_CONCURRENCY": "3"})
	e.fake.Inject(hubspotfake.Fault{Hang: true, Count: 6})
	in := e.start(nil)
	js, all := journeys(t, "hang")
	start := time.Now()
	e.publish(all...)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("publishing %d events took %s while the CRM hung", len(all), took)
	}
	e.waitProcessed(len(all), 45*time.Second)
	for _, j := range js {
		checkHubSpot(t, e.fake, j, j.Events, canonical.DefaultPolicy())
	}
	if got := e.fake.MaxInFlight(); got > 3 {
		t.Errorf("%d CRM calls in flight at once with 3 workers", got)
	}
	if v := metricValue(t, in.reg, "lr_crm_calls_total", map[string]string{"outcome": "timeout"}); v != 6 {
		t.Errorf("lr_crm_calls_total timeout = %v, want 6", v)
	}
}

// The webhook adapter: a receiver that knows only the documented scheme
// accepts every request, and a retried change carries the same keys.
func TestWebhookProviderSignsAndKeepsIdempotencyKey(t *testing.T) {
	t.Parallel()
	whsecret := secret(t, "lrwh_")
	type doc struct{ key, kind, object string }
	type post struct {
		key    string
		docs   []doc
		status int
	}
	var mu sync.Mutex
	var got []post
	failed := false
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := verifyIndependently(whsecret, r.Header.Get("Launchready-Signature"), body, time.Now()); err != nil {
			t.Errorf("receiver refused a request: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if err := crmwebhook.Verify(whsecret, r.Header.Get("Launchready-Signature"), body, 0, time.Now()); err != nil {
			t.Errorf("crmwebhook.Verify: %v", err)
		}
		if err := crmwebhook.Verify(whsecret, r.Header.Get("Launchready-Signature"), append(body, ' '), 0, time.Now()); err == nil {
			t.Error("crmwebhook.Verify accepted a changed body")
		}
		var batch struct {
			Documents []struct {
				Kind     string `json:"kind"`
				EventID  string `json:"event_id"`
				Key      string `json:"idempotency_key"`
				Customer *struct {
					CustomerID string `json:"customer_id"`
					Status     string `json:"billing_status"`
				} `json:"customer"`
				Subscription *struct {
					SubscriptionID string `json:"subscription_id"`
				} `json:"subscription"`
			} `json:"documents"`
		}
		if err := json.Unmarshal(body, &batch); err != nil || len(batch.Documents) == 0 {
			t.Errorf("body %s: %v", body, err)
		}
		p := post{key: r.Header.Get("Idempotency-Key"), status: http.StatusOK}
		for _, d := range batch.Documents {
			obj := ""
			if d.Customer != nil {
				obj = d.Customer.CustomerID
			}
			if d.Subscription != nil {
				obj = d.Subscription.SubscriptionID
			}
			p.docs = append(p.docs, doc{key: d.Key, kind: d.Kind, object: obj})
		}
		mu.Lock()
		defer mu.Unlock()
		if !failed {
			failed = true
			p.status = http.StatusInternalServerError
		}
		got = append(got, p)
		w.WriteHeader(p.status)
	}))
	defer recv.Close()
	e := newEnv(t, map[string]string{
		"CRM_PROVIDER":       "webhook",
		"CRM_WEBHOOK_URL":    recv.URL + "/crm",
		"CRM_WEBHOOK_SECRET": whsecret,
	})
	e.start(nil)
	js, _ := journeys(t, "wh")
	j := js[0]
	e.publish(j.Events[0])
	e.waitProcessed(1, 20*time.Second)
	e.publish(j.Events[1:3]...)
	e.waitProcessed(3, 20*time.Second)

	mu.Lock()
	defer mu.Unlock()
	if len(got) < 2 || got[0].status != 500 || got[1].status != 200 {
		t.Fatalf("deliveries %+v; want a 500 then a 200", got)
	}
	if got[0].key == "" || got[0].key != got[1].key || fmt.Sprint(got[0].docs) != fmt.Sprint(got[1].docs) {
		t.Fatalf("the retry changed its keys: %+v then %+v", got[0], got[1])
	}
	keys := map[string]bool{}
	kinds := map[string]int{}
	for _, p := range got[1:] {
		for _, d := range p.docs {
			if d.key == "" || keys[d.key] {
				t.Errorf("document key %q delivered successfully twice (or empty)", d.key)
			}
			keys[d.key] = true
			kinds[d.kind]++
		}
	}
	if kinds["customer"] == 0 || kinds["subscription"] != 1 {
		t.Errorf("documents by kind %v; want customer changes and one subscription", kinds)
	}
}

// verifyIndependently is a receiver written from the documented scheme
// alone: t and v1 from the header, HMAC-SHA256 over t + "." + body.
func verifyIndependently(secret, header string, body []byte, now time.Time) error {
	var ts string
	var sigs []string
	for _, part := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(part, "=")
		switch k {
		case "t":
			ts = v
		case "v1":
			sigs = append(sigs, v)
		}
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("no timestamp in %q", header)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return errors.New("timestamp outside tolerance")
	}
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	want := m.Sum(nil)
	for _, s := range sigs {
		if b, err := hex.DecodeString(s); err == nil && hmac.Equal(b, want) {
			return nil
		}
	}
	return errors.New("no matching v1")
}

func mustURL(path string) *url.URL { return &url.URL{Path: path} }
