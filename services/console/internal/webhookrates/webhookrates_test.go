package webhookrates

import (
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakePrometheus answers /api/v1/query with the vectors of answers, and
// records the queries it was asked.
func fakePrometheus(t *testing.T, answers map[string]string) (*httptest.Server, *[]string) {
	t.Helper()
	var mu sync.Mutex
	var asked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/query" {
			http.NotFound(w, r)
			return
		}
		q := r.URL.Query().Get("query")
		mu.Lock()
		asked = append(asked, q)
		mu.Unlock()
		result, ok := answers[q]
		if !ok {
			result = "[]"
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"status":"success","data":{"resultType":"vector","result":%s}}`, result)
	}))
	t.Cleanup(srv.Close)
	return srv, &asked
}

func TestPrometheusReadsTheRecordedSeries(t *testing.T) {
	srv, asked := fakePrometheus(t, map[string]string{
		FailureRatioSeries: `[{"metric":{"__name__":"lr:webhook_failure_ratio:rate15m"},"value":[1764780000.1,"0.0125"]}]`,
		DuplicatesSeries: `[{"metric":{"__name__":"lr:duplicates:increase1w","stage":"ingress"},"value":[1764780000.1,"7"]},` +
			`{"metric":{"__name__":"lr:duplicates:increase1w","stage":"crm-sync","consumer":"crm-sync"},"value":[1764780000.1,"2.0000004"]}]`,
	})
	p := &Prometheus{Base: srv.URL + "/"}
	f, err := p.Figures(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if f.From != "prometheus" || !f.FailureKnown || f.FailureRatio != 0.0125 {
		t.Fatalf("failure ratio: %+v", f)
	}
	if len(f.Duplicates) != 2 || f.Duplicates[0] != (Stage{"ingress", 7}) || f.Duplicates[1].Name != "crm-sync" || math.Abs(f.DuplicatesTotal-9) > 1e-3 {
		t.Fatalf("duplicates: %+v total %v", f.Duplicates, f.DuplicatesTotal)
	}
	if strings.Join(*asked, " ") != FailureRatioSeries+" "+DuplicatesSeries {
		t.Fatalf("asked %q", *asked)
	}
}

func TestPrometheusWithoutRequestsOrRules(t *testing.T) {
	// No webhook in 15 minutes: the rule divides 0 by 0.
	srv, _ := fakePrometheus(t, map[string]string{FailureRatioSeries: `[{"metric":{},"value":[1764780000,"NaN"]}]`})
	f, err := (&Prometheus{Base: srv.URL}).Figures(t.Context())
	if err != nil || f.FailureKnown || len(f.Duplicates) != 0 || f.DuplicatesTotal != 0 {
		t.Fatalf("%+v %v", f, err)
	}

	// A Prometheus that refuses the query says so.
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"status":"error","errorType":"bad_data","error":"parse error"}`))
	}))
	defer bad.Close()
	if _, err := (&Prometheus{Base: bad.URL}).Figures(t.Context()); err == nil || !strings.Contains(err.Error(), "bad_data") {
		t.Fatalf("a refused query: %v", err)
	}
}

// opsTarget is an ops listener whose counters the test moves.
type opsTarget struct {
	mu       sync.Mutex
	requests map[string]float64
	dups     float64
	consumer map[string]float64
	down     bool
	srv      *httptest.Server
}

func newOpsTarget(t *testing.T) *opsTarget {
	o := &opsTarget{requests: map[string]float64{}, consumer: map[string]float64{}}
	o.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		defer o.mu.Unlock()
		if o.down || r.URL.Path != "/metrics" {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "# HELP lr_webhook_requests_total Stripe webhook requests by outcome.\n# TYPE lr_webhook_requests_total counter")
		for o, n := range o.requests {
			fmt.Fprintf(w, "lr_webhook_requests_total{outcome=%q} %g\n", o, n)
		}
		fmt.Fprintf(w, "# HELP lr_webhook_duplicates_total Events JetStream already held.\n# TYPE lr_webhook_duplicates_total counter\nlr_webhook_duplicates_total %g\n", o.dups)
		if len(o.consumer) > 0 {
			fmt.Fprintln(w, "# TYPE lr_consumer_duplicates_total counter")
			for c, n := range o.consumer {
				fmt.Fprintf(w, "lr_consumer_duplicates_total{consumer=%q} %g\n", c, n)
			}
		}
		fmt.Fprintln(w, "# TYPE go_goroutines gauge\ngo_goroutines 12")
	}))
	t.Cleanup(o.srv.Close)
	return o
}

func (o *opsTarget) addr() string { return strings.TrimPrefix(o.srv.URL, "http://") }

func (o *opsTarget) set(f func(o *opsTarget)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	f(o)
}

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func TestSamplerCountsWhatItSawAndSaysSince(t *testing.T) {
	ingress := newOpsTarget(t)
	consumer := newOpsTarget(t)
	ingress.set(func(o *opsTarget) { o.requests["accepted"], o.requests["bad_signature"], o.dups = 1000, 40, 30 })
	start := time.Date(2026, 12, 3, 14, 2, 0, 0, time.UTC)
	c := &clock{now: start}
	s := &Sampler{Targets: []string{ingress.addr(), consumer.addr()}, Now: c.Now}

	s.Sample(t.Context())
	f, err := s.Figures(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// What happened before the console's first read is not counted.
	if f.FailureKnown || f.Requests != 0 || f.DuplicatesTotal != 0 || !f.FailureSince.Equal(start) {
		t.Fatalf("after one read: %+v", f)
	}

	c.now = start.Add(6 * time.Minute)
	ingress.set(func(o *opsTarget) {
		o.requests["accepted"] += 95
		o.requests["duplicate"] = 2
		o.requests["publish_failed"] = 3
		o.dups += 2
	})
	consumer.set(func(o *opsTarget) { o.consumer["crm-sync"] = 4 })
	s.Sample(t.Context())
	f, _ = s.Figures(t.Context())
	if !f.FailureKnown || f.Failed != 3 || f.Requests != 100 || f.FailureRatio != 0.03 {
		t.Fatalf("6 minutes in: %+v", f)
	}
	if !f.FailureSince.Equal(start) || !f.Partial(f.FailureSince, FailureWindow, time.Minute) {
		t.Fatalf("6 minutes in, the window should say it starts at %s: %+v", start, f)
	}
	if f.DuplicatesTotal != 6 || len(f.Duplicates) != 2 || f.Duplicates[0] != (Stage{"ingress", 2}) || f.Duplicates[1] != (Stage{"crm-sync", 4}) {
		t.Fatalf("duplicates 6 minutes in: %+v", f.Duplicates)
	}

	// Ingress restarts: its counters start again from zero, and what it
	// counts after the restart is added, not subtracted. A target that
	// does not answer is left out of a round.
	c.now = start.Add(12 * time.Minute)
	consumer.set(func(o *opsTarget) { o.down = true })
	ingress.set(func(o *opsTarget) {
		o.requests = map[string]float64{"accepted": 45, "bad_signature": 5}
		o.dups = 1
	})
	s.Sample(t.Context())
	f, _ = s.Figures(t.Context())
	if f.Failed != 8 || f.Requests != 150 || f.DuplicatesTotal != 7 {
		t.Fatalf("after a restart: %+v", f)
	}

	// Past 15 minutes the window slides: the first round's growth is
	// behind it, and the window is whole.
	c.now = start.Add(21 * time.Minute)
	consumer.set(func(o *opsTarget) { o.down = false })
	ingress.set(func(o *opsTarget) { o.requests["accepted"] += 10 })
	s.Sample(t.Context())
	f, _ = s.Figures(t.Context())
	if f.Failed != 5 || f.Requests != 60 {
		t.Fatalf("21 minutes in, the last 15: %+v", f)
	}
	if want := start.Add(6 * time.Minute); !f.FailureSince.Equal(want) || f.Partial(f.FailureSince, FailureWindow, time.Minute) {
		t.Fatalf("21 minutes in, the window starts at %s: %+v", f.FailureSince, f)
	}
	// The week's duplicates still count all of them, since the first read.
	if f.DuplicatesTotal != 7 || !f.DuplicatesSince.Equal(start) || !f.Partial(f.DuplicatesSince, DuplicateWindow, time.Minute) {
		t.Fatalf("21 minutes in, the week: %+v", f)
	}

	// Fifteen quiet minutes later nothing arrived: 0 of 0 is no ratio.
	c.now = start.Add(40 * time.Minute)
	s.Sample(t.Context())
	f, _ = s.Figures(t.Context())
	if f.FailureKnown || f.Requests != 0 {
		t.Fatalf("a quiet quarter hour: %+v", f)
	}
}

func TestSamplerKeepsAWeekCoarsely(t *testing.T) {
	start := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	c := &clock{now: start}
	s := &Sampler{Targets: []string{"ingress:8084"}, Now: c.Now}
	// Eight days of a sample every 30 s, one duplicate an hour.
	var dups float64
	for i := 0; i <= 8*24*120; i++ {
		c.now = start.Add(time.Duration(i) * 30 * time.Second)
		if i%120 == 0 && i > 0 {
			dups++
		}
		s.record(c.now, map[string]map[string]float64{"ingress:8084": {"dup|ingress": dups, "req|accepted": float64(i)}})
	}
	f, _ := s.Figures(t.Context())
	if f.DuplicatesTotal < 167 || f.DuplicatesTotal > 169 || f.Requests != 30 || f.Partial(f.DuplicatesSince, DuplicateWindow, coarseEvery) {
		t.Fatalf("a week of one an hour: %v since %s", f.DuplicatesTotal, f.DuplicatesSince)
	}
	tg := s.targets["ingress:8084"]
	if len(tg.coarse) > int(DuplicateWindow/coarseEvery)+2 || len(tg.recent) > int(FailureWindow/(30*time.Second))+2 {
		t.Fatalf("kept %d coarse and %d recent samples", len(tg.coarse), len(tg.recent))
	}
}
