package vendorhttp_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/vendorhttp"
)

func TestBucketNeverExceedsLimitInAWindow(t *testing.T) {
	for _, limit := range []int{3, 10, 20, 100, 190, 1000} {
		window := 10 * time.Second
		burst, per := vendorhttp.BucketFor(limit, window)
		if most := float64(burst) + float64(per)*window.Seconds(); most > float64(limit)-1+1e-9 {
			t.Errorf("limit %d: a window can hold %.2f requests", limit, most)
		}
		if burst < 1 || per <= 0 {
			t.Errorf("limit %d: burst %d rate %v", limit, burst, per)
		}
	}
}

// A 429 pauses every caller of the limiter; one that would wait longer
// than MaxWait is handed back to the bus without calling.
func TestPauseLongerThanMaxWaitDefers(t *testing.T) {
	var mu sync.Mutex
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		calls++
		mu.Unlock()
		w.Header().Set("Retry-After", "30")
		w.WriteHeader(http.StatusTooManyRequests)
	}))
	defer srv.Close()
	lim := vendorhttp.NewLimiter(100, time.Second)
	c := vendorhttp.New(vendorhttp.Config{Vendor: "hubspot", Limiter: lim, MaxWait: 50 * time.Millisecond,
		Retry:      vendorhttp.Backoff{Attempts: 3},
		RetryAfter: vendorhttp.RetryAfterPolicy{Default: time.Second}})
	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	resp, _, err := c.Do(context.Background(), "GET x", req)
	if err != nil || resp.Status != http.StatusTooManyRequests {
		t.Fatalf("first call: %v %v; want the 429 itself (30 s is past MaxWait)", resp, err)
	}
	_, got, err := c.Do(context.Background(), "GET x", req)
	if !errors.Is(err, vendorhttp.ErrDeferred) || bus.IsPermanent(err) || got[0].Outcome != vendorhttp.OutcomeDeferred || got[0].Sent {
		t.Fatalf("during the pause: %v %+v", err, got)
	}
	if calls != 1 {
		t.Fatalf("%d calls reached the vendor; want 1", calls)
	}
}
