package webhook

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/test/testkit"
)

// serveAsync serves req on its own goroutine; the answer arrives on the
// returned channel.
func (f *fixture) serveAsync(req *http.Request) <-chan *httptest.ResponseRecorder {
	out := make(chan *httptest.ResponseRecorder, 1)
	go func() { out <- f.serve(req) }()
	return out
}

// wrongSignature is a well-shaped, current header that matches nothing.
func wrongSignature() string {
	return fmt.Sprintf("t=%d,v1=%s", time.Now().Unix(), strings.Repeat("5a", 32))
}

// TestOverTheLimitWaitsThenAnswers503: with every slot held, a request
// waits InflightWait and is then answered 503 with Retry-After, its body
// unread.
func TestOverTheLimitWaitsThenAnswers503(t *testing.T) {
	const wait = 100 * time.Millisecond
	f := newFixture(t, true, func(c *Config) { c.MaxInflight = 2; c.InflightWait = wait })
	held := []<-chan *httptest.ResponseRecorder{
		f.serveAsync(f.request(event("evt_held_1", "customer.created", "cus_1"))),
		f.serveAsync(f.request(event("evt_held_2", "customer.created", "cus_2"))),
	}
	testkit.Eventually(t, 5*time.Second, "two publishes in progress", func() bool { return f.pub.active.Load() == 2 })

	payload := event("evt_over", "customer.created", "cus_3")
	body := newWatchedBody(payload)
	req := f.request(payload)
	req.Body = io.NopCloser(body)
	start := time.Now()
	rec := f.serve(req)
	took := time.Since(start)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") != "3" {
		t.Fatalf("over the limit: %d %s, Retry-After %q; want 503 with Retry-After 3", rec.Code, rec.Body, rec.Header().Get("Retry-After"))
	}
	if !strings.Contains(errorOf(t, rec), "too many requests in flight") {
		t.Fatalf("answer %s does not say why", rec.Body)
	}
	if took < wait {
		t.Fatalf("answered after %s, before the %s wait was over", took, wait)
	}
	if body.read.Load() {
		t.Fatal("the body of a refused request was read")
	}
	if f.counted(outcomeBusy) != 1 {
		t.Fatalf("busy counted %v", f.counted(outcomeBusy))
	}

	f.unblock()
	for _, ch := range held {
		if rec := <-ch; rec.Code != http.StatusOK {
			t.Fatalf("held request: %d %s", rec.Code, rec.Body)
		}
	}
	if rec := f.serve(f.request(event("evt_after", "customer.created", "cus_4"))); rec.Code != http.StatusOK {
		t.Fatalf("once the slots are free: %d %s", rec.Code, rec.Body)
	}
}

// TestWaitingRequestTakesAFreedSlot: a request that finds every slot taken
// is served when one frees up within InflightWait.
func TestWaitingRequestTakesAFreedSlot(t *testing.T) {
	f := newFixture(t, true, func(c *Config) { c.MaxInflight = 1; c.InflightWait = 10 * time.Second })
	first := f.serveAsync(f.request(event("evt_first", "customer.created", "cus_1")))
	testkit.Eventually(t, 5*time.Second, "the first publish", func() bool { return f.pub.active.Load() == 1 })
	second := f.serveAsync(f.request(event("evt_second", "customer.created", "cus_2")))
	// The slot frees a moment into the second request's wait.
	release := time.AfterFunc(50*time.Millisecond, f.unblock)
	defer release.Stop()
	for i, ch := range []<-chan *httptest.ResponseRecorder{first, second} {
		if rec := <-ch; rec.Code != http.StatusOK {
			t.Fatalf("request %d: %d %s, want 200", i+1, rec.Code, rec.Body)
		}
	}
	if f.counted(outcomeBusy) != 0 {
		t.Fatal("a request was turned away although a slot freed within the wait")
	}
}

// TestShortBodiesKeepTheirShare: large or unknown-length uploads can hold
// only part of MaxInflight; a short event still gets in while they fill
// theirs.
func TestShortBodiesKeepTheirShare(t *testing.T) {
	f := newFixture(t, false, func(c *Config) {
		c.MaxInflight = 8 // two for anything, six kept for short bodies
		c.ShortBody = 1024
		c.InflightWait = 50 * time.Millisecond
	})
	gate := make(chan struct{})
	openGate := sync.OnceFunc(func() { close(gate) })
	defer openGate()
	large := bytes.Repeat([]byte(" "), 2048)
	var held []<-chan *httptest.ResponseRecorder
	for range 2 {
		body := newWatchedBody(large)
		body.gate = gate
		req := httptest.NewRequest(http.MethodPost, Path, body)
		req.ContentLength = int64(len(large))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Stripe-Signature", wrongSignature())
		held = append(held, f.serveAsync(req))
		<-body.started // it holds a slot and is reading
	}

	// A third large upload, declared or chunked, finds the large share full.
	for _, length := range []int64{int64(len(large)), -1} {
		body := newWatchedBody(large)
		req := httptest.NewRequest(http.MethodPost, Path, body)
		req.ContentLength = length
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Stripe-Signature", wrongSignature())
		if rec := f.serve(req); rec.Code != http.StatusServiceUnavailable || body.read.Load() {
			t.Fatalf("third large upload (length %d): %d %s, read %v; want 503 unread", length, rec.Code, rec.Body, body.read.Load())
		}
	}

	// A real event is short: it takes a kept slot at once.
	start := time.Now()
	rec := f.serve(f.request(event("evt_short", "invoice.paid", "cus_short")))
	if rec.Code != http.StatusOK || f.pub.published() != 1 {
		t.Fatalf("short event during the flood: %d %s", rec.Code, rec.Body)
	}
	if took := time.Since(start); took >= 50*time.Millisecond {
		t.Fatalf("short event took %s: it waited for a slot", took)
	}

	openGate()
	for _, ch := range held {
		if rec := <-ch; rec.Code != http.StatusBadRequest || !strings.Contains(errorOf(t, rec), "does not match") {
			t.Fatalf("large upload with a wrong signature: %d %s, want 400", rec.Code, rec.Body)
		}
	}
}

// TestAdmissionKeepsThreeQuartersForShortBodies checks the arithmetic of
// the shares.
func TestAdmissionKeepsThreeQuartersForShortBodies(t *testing.T) {
	for _, tc := range []struct{ max, long int }{{1, 1}, {2, 1}, {4, 1}, {7, 1}, {8, 2}, {32, 8}, {35, 8}} {
		a := newAdmission(tc.max, time.Millisecond)
		if cap(a.all) != tc.max || cap(a.long) != tc.long {
			t.Errorf("max %d: all %d long %d, want long %d", tc.max, cap(a.all), cap(a.long), tc.long)
		}
		longs := 0
		for a.acquire(t.Context(), false) {
			longs++
		}
		shorts := 0
		for a.acquire(t.Context(), true) {
			shorts++
		}
		if longs != tc.long || longs+shorts != tc.max {
			t.Errorf("max %d: admitted %d long and %d short", tc.max, longs, shorts)
		}
		for range longs {
			a.release(false)
		}
		for range shorts {
			a.release(true)
		}
		if len(a.all) != 0 || len(a.long) != 0 {
			t.Errorf("max %d: slots left taken after release", tc.max)
		}
	}
}

// TestSlowBodyTimesOutAndFreesItsSlot: a body trickling in a byte at a time
// is cut off at ReadTimeout, answered 408, and its slot serves the next
// request.
func TestSlowBodyTimesOutAndFreesItsSlot(t *testing.T) {
	const readTimeout = 300 * time.Millisecond
	f := newFixture(t, false, func(c *Config) {
		c.MaxInflight = 1
		c.InflightWait = 10 * time.Second
		c.ReadTimeout = readTimeout
	})
	srv := httptest.NewServer(f.h)
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(30 * time.Second))
	fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nStripe-Signature: %s\r\nContent-Length: 4096\r\n\r\n{", Path, addr, wrongSignature())
	start := time.Now()
	stop := make(chan struct{})
	trickled := make(chan struct{})
	go func() {
		defer close(trickled)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				if _, err := conn.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	took := time.Since(start)
	close(stop)
	<-trickled
	if err != nil {
		t.Fatalf("no answer to the slow body: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("slow body: %d, want 408", resp.StatusCode)
	}
	if took < readTimeout || took > 5*time.Second {
		t.Fatalf("slow body answered after %s; the read timeout is %s", took, readTimeout)
	}
	if f.counted(outcomeTimeout) != 1 {
		t.Fatalf("timeout counted %v", f.counted(outcomeTimeout))
	}

	// The single slot is free again.
	payload := event("evt_after_slow", "customer.created", "cus_slow")
	req, _ := http.NewRequest(http.MethodPost, srv.URL+Path, bytes.NewReader(payload))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Stripe-Signature", stripeevent.Sign(payload, f.key, time.Now()))
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	client.CloseIdleConnections()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after the slow body: %d, want 200", resp.StatusCode)
	}
}
