package vendorhttp_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/vendorhttp"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Idle keep-alive connections of a client's transport outlive tests.
		goleak.IgnoreTopFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreTopFunction("net/http.(*persistConn).writeLoop"),
	)
}

func secret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "tok" + hex.EncodeToString(b)
}

func post(t *testing.T, url, body string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// A redirect is an error naming its status, and the signed body never
// reaches the place it points to.
func TestRedirectIsRefusedAndNothingIsResent(t *testing.T) {
	var elsewhere atomic.Int32
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer target.Close()
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		var asked atomic.Int32
		origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			asked.Add(1)
			http.Redirect(w, r, target.URL+"/stolen", status)
		}))
		c := vendorhttp.New(vendorhttp.Config{Vendor: "webhook", Retry: vendorhttp.Backoff{Attempts: 3, Base: time.Millisecond}})
		resp, calls, err := c.Do(context.Background(), "POST customer", post(t, origin.URL, `{"signed":true}`))
		origin.Close()
		if resp != nil || err == nil {
			t.Fatalf("%d: answer %v, err %v; want an error", status, resp, err)
		}
		if !errors.Is(err, vendorhttp.ErrRedirect) || !bus.IsPermanent(err) || vendorhttp.Status(err) != status {
			t.Errorf("%d: err %v; want a permanent redirect error with the status", status, err)
		}
		if !strings.Contains(err.Error(), http.StatusText(status)) && !strings.Contains(err.Error(), "HTTP "+strconv.Itoa(status)) {
			t.Errorf("%d: error %q does not name the status", status, err)
		}
		if asked.Load() != 1 || len(calls) != 1 || calls[0].Outcome != vendorhttp.OutcomeRejected {
			t.Errorf("%d: origin asked %d times, calls %+v; want one refused call", status, asked.Load(), calls)
		}
	}
	if n := elsewhere.Load(); n != 0 {
		t.Fatalf("the redirect target received %d requests", n)
	}
}

func TestParseRetryAfterBothForms(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"", 0, false},
		{"7", 7 * time.Second, true},
		{" 1.5 ", 1500 * time.Millisecond, true},
		{"0", 0, true},
		{"-3", 0, false},
		{"NaN", 0, false},
		{"soon", 0, false},
		{"Fri, 02 Jan 2026 03:04:35 GMT", 30 * time.Second, true},
		{"Friday, 02-Jan-26 03:04:15 GMT", 10 * time.Second, true}, // RFC 850, still legal
		{"Fri, 02 Jan 2026 03:00:00 GMT", 0, true},
	}
	for _, c := range cases {
		got, ok := vendorhttp.ParseRetryAfter(c.in, now)
		if got != c.want || ok != c.ok {
			t.Errorf("ParseRetryAfter(%q) = %s, %v; want %s, %v", c.in, got, ok, c.want, c.ok)
		}
	}
	if d, ok := vendorhttp.ParseRetryAfter("99999999999999", now); !ok || d <= 0 {
		t.Errorf("a huge value overflowed: %s %v", d, ok)
	}
}

func TestRetryAfterPolicy(t *testing.T) {
	now := time.Now()
	h := func(v string) http.Header { return http.Header{"Retry-After": []string{v}} }
	p := vendorhttp.RetryAfterPolicy{Default: 10 * time.Second, Min: 100 * time.Millisecond, Max: time.Hour}
	for v, want := range map[string]time.Duration{"": 10 * time.Second, "3": 3 * time.Second, "0": 100 * time.Millisecond, "999999": time.Hour} {
		if got := p.Delay(h(v), now); got != want {
			t.Errorf("Delay(%q) = %s, want %s", v, got, want)
		}
	}
	p.ZeroIsAbsent = true
	if got := p.Delay(h("0"), now); got != 10*time.Second {
		t.Errorf("zero as absent: %s", got)
	}
}

// A 429 with Retry-After in either form: the client waits what it says
// before the next try, and Classify hands the wait to the bus.
func TestRateLimitedAnswerHonoursRetryAfter(t *testing.T) {
	for _, form := range []string{"1", "date"} {
		var mu sync.Mutex
		var at []time.Time
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			at = append(at, time.Now())
			if len(at) == 1 {
				v := "1"
				if form == "date" {
					v = time.Now().Add(2 * time.Second).UTC().Format(http.TimeFormat)
				}
				w.Header().Set("Retry-After", v)
				w.WriteHeader(http.StatusTooManyRequests)
			}
		}))
		c := vendorhttp.New(vendorhttp.Config{Vendor: "hubspot", Retry: vendorhttp.Backoff{Attempts: 2, Base: time.Millisecond},
			RetryAfter: vendorhttp.RetryAfterPolicy{Default: 5 * time.Second}})
		resp, calls, err := c.Do(context.Background(), "POST x", post(t, srv.URL, "{}"))
		srv.Close()
		if err != nil || resp.Status != http.StatusOK || len(calls) != 2 || calls[0].Outcome != vendorhttp.OutcomeRateLimited {
			t.Fatalf("%s: answer %+v calls %+v err %v", form, resp, calls, err)
		}
		// An HTTP date has one-second resolution: at least 1 s either way.
		if gap := at[1].Sub(at[0]); gap < 900*time.Millisecond {
			t.Errorf("%s: second try %s after the 429", form, gap)
		}
	}
	c := vendorhttp.New(vendorhttp.Config{Vendor: "hubspot", RetryAfter: vendorhttp.RetryAfterPolicy{Default: time.Second}})
	err := c.Classify("POST x", &vendorhttp.Response{Status: 429, Header: http.Header{"Retry-After": []string{"7"}}})
	if err == nil || bus.IsPermanent(err) || vendorhttp.Status(err) != 429 {
		t.Fatalf("Classify 429: %v", err)
	}
}

// A hanging vendor costs one Timeout per try, and the error says timeout.
func TestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer srv.Close()
	defer close(release)
	var outcomes []string
	c := vendorhttp.New(vendorhttp.Config{Vendor: "zendesk", Timeout: 150 * time.Millisecond,
		OnCall: func(c vendorhttp.Call) { outcomes = append(outcomes, c.Outcome) }})
	start := time.Now()
	_, calls, err := c.Do(context.Background(), "create ticket", post(t, srv.URL, "{}"))
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a 150ms timeout took %s", took)
	}
	if err == nil || bus.IsPermanent(err) || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("err %v; want a retryable timeout", err)
	}
	if len(calls) != 1 || calls[0].Outcome != vendorhttp.OutcomeTimeout || len(outcomes) != 1 {
		t.Fatalf("calls %+v, observed %v", calls, outcomes)
	}
}

// A URL that carries a token (in the user info, the path and the query)
// fails: the error names the failure, never the token.
func TestErrorFromFailingURLHidesTheToken(t *testing.T) {
	tok := secret(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now: connection refused
	c := vendorhttp.New(vendorhttp.Config{Vendor: "slack", Secrets: []string{tok}, Retry: vendorhttp.Backoff{Attempts: 2, Base: time.Millisecond}})
	for _, u := range []string{
		"http://user:" + tok + "@" + addr + "/services/" + tok + "?token=" + tok,
		"http://" + addr + "/hook/" + tok,
		"gopher://" + addr + "/" + tok, // refused before any dial
	} {
		_, calls, err := c.Do(context.Background(), "post alert", post(t, u, "{}"))
		if err == nil {
			t.Fatalf("%s: no error", u)
		}
		for _, text := range []string{err.Error(), calls[len(calls)-1].Detail} {
			if strings.Contains(text, tok) {
				t.Errorf("the token leaked: %q", text)
			}
		}
	}
	// A vendor that echoes the token in its answer.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"message":"invalid token ` + tok + `","sent":` + string(body) + `}`))
	}))
	defer srv.Close()
	_, err = c.Send(context.Background(), "post alert", post(t, srv.URL, `{"auth":"Bearer `+tok+`"}`))
	if !bus.IsPermanent(err) || strings.Contains(err.Error(), tok) || !strings.Contains(err.Error(), "invalid token") {
		t.Fatalf("400: %v; want a permanent error with the reason and no token", err)
	}
}

// Transient answers are retried in place with backoff, the body sent
// again each time; a rejection is not.
func TestRetriesTransientAnswers(t *testing.T) {
	var n atomic.Int32
	var bodies sync.Map
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		i := n.Add(1)
		bodies.Store(i, string(b))
		switch i {
		case 1:
			w.WriteHeader(http.StatusBadGateway)
		case 2:
			w.WriteHeader(http.StatusConflict)
		}
	}))
	defer srv.Close()
	c := vendorhttp.New(vendorhttp.Config{Vendor: "zendesk", TransientStatuses: []int{http.StatusConflict},
		Retry: vendorhttp.Backoff{Attempts: 3, Base: time.Millisecond, Max: 5 * time.Millisecond}})
	body, err := c.Send(context.Background(), "create ticket", post(t, srv.URL, "payload"))
	if err != nil || body == nil || n.Load() != 3 {
		t.Fatalf("err %v after %d tries; want success on the third", err, n.Load())
	}
	for i := int32(1); i <= 3; i++ {
		if b, _ := bodies.Load(i); b != "payload" {
			t.Errorf("try %d sent %q", i, b)
		}
	}
	n.Store(10) // every further answer is 200; check a 400 is final
	bad := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { n.Add(1); w.WriteHeader(http.StatusBadRequest) }))
	defer bad.Close()
	if _, err := c.Send(context.Background(), "create ticket", post(t, bad.URL, "x")); !bus.IsPermanent(err) || n.Load() != 11 {
		t.Fatalf("400: %v after %d tries; want one permanent failure", err, n.Load()-10)
	}
}

func TestBackoffDelayIsJitteredAndBounded(t *testing.T) {
	b := vendorhttp.Backoff{Base: 100 * time.Millisecond, Max: 2 * time.Second}
	for attempt := 1; attempt <= 40; attempt++ {
		step := min(b.Max, b.Base<<min(attempt-1, 20))
		seen := map[time.Duration]bool{}
		for range 50 {
			d := b.Delay(attempt)
			if d < step/2 || d > step {
				t.Fatalf("Delay(%d) = %s, want within [%s, %s]", attempt, d, step/2, step)
			}
			seen[d] = true
		}
		if len(seen) < 2 {
			t.Fatalf("Delay(%d) is not jittered", attempt)
		}
	}
}
