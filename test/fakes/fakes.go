// Package fakes serves stand-ins for the third-party APIs Launch Ready
// calls (HubSpot, Zendesk, Slack) over real HTTP on 127.0.0.1, for the
// process-level tests and the load benchmark. Each can answer slowly
// (SetLatency), fail on demand, and reports every call it received with its
// body and arrival time, so a test can prove a side effect happened once,
// or not at all.
//
// HubSpot is services/crm-sync/hubspotfake behind a latency and fault
// layer. Zendesk and Slack implement exactly what support-notify's clients
// call: POST /api/v2/tickets.json (Idempotency-Key honoured), PUT
// /api/v2/tickets/{id}.json, and an incoming-webhook POST.
package fakes

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"
)

// Call is one request as received.
type Call struct {
	At       time.Time // arrival
	Done     time.Time // answer sent
	Method   string
	Path     string
	Status   int
	Body     []byte
	Header   http.Header
	Canceled bool // the client gave up before the answer
}

// Rule makes matching requests fail with Status until it is removed.
type Rule struct {
	Match  func(method, path string, body []byte) bool
	Status int
	// RetryAfter is sent with the answer when set.
	RetryAfter string
	hits       atomic.Int64
}

// Hits counts the requests the rule answered.
func (r *Rule) Hits() int { return int(r.hits.Load()) }

// base is what every fake shares: latency, rules and the call log.
type base struct {
	latency atomic.Int64 // nanoseconds

	mu      sync.Mutex
	calls   []Call
	rules   []*Rule
	inFl    int
	maxInFl int
	changed chan struct{}
}

func newBase() base { return base{changed: make(chan struct{})} }

// SetLatency delays every answer by d (0: none). A client that gives up
// first ends the wait, as a real slow server's would.
func (b *base) SetLatency(d time.Duration) { b.latency.Store(int64(d)) }

// Latency is the current delay.
func (b *base) Latency() time.Duration { return time.Duration(b.latency.Load()) }

// AddRule installs a failure rule; the returned function removes it.
func (b *base) AddRule(r *Rule) (remove func()) {
	b.mu.Lock()
	b.rules = append(b.rules, r)
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for i, x := range b.rules {
			if x == r {
				b.rules = append(b.rules[:i], b.rules[i+1:]...)
				return
			}
		}
	}
}

// Calls returns every request received so far, in arrival order.
func (b *base) Calls() []Call {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Call(nil), b.calls...)
}

// CallCount is len(Calls()).
func (b *base) CallCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.calls)
}

// CallsMentioning counts requests whose body contains s.
func (b *base) CallsMentioning(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.calls {
		if bytes.Contains(c.Body, []byte(s)) {
			n++
		}
	}
	return n
}

// MaxConcurrent is the most requests served at once.
func (b *base) MaxConcurrent() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.maxInFl
}

// Changed returns a channel closed at the next recorded call.
func (b *base) Changed() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.changed
}

// serve wraps next with the call log, the rules and the latency.
func (b *base) serve(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		b.mu.Lock()
		b.inFl++
		b.maxInFl = max(b.maxInFl, b.inFl)
		var rule *Rule
		for _, x := range b.rules {
			if x.Match == nil || x.Match(r.Method, r.URL.Path, body) {
				rule = x
				break
			}
		}
		b.mu.Unlock()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		canceled := false
		defer func() {
			b.mu.Lock()
			b.inFl--
			b.calls = append(b.calls, Call{At: at, Done: time.Now(), Method: r.Method, Path: r.URL.Path,
				Status: rec.status, Body: body, Header: r.Header.Clone(), Canceled: canceled})
			close(b.changed)
			b.changed = make(chan struct{})
			b.mu.Unlock()
		}()
		// Half the latency before the vendor acts and half after, so a
		// client that dies mid-call may or may not have changed the vendor's
		// state, as with a real network.
		d := b.Latency()
		if !wait(r, d/2) {
			canceled = true
			rec.status = 0
			return
		}
		if d-d/2 > 0 {
			// Act now, answer later.
			buf := httptest.NewRecorder()
			b.answer(buf, r, rule, next)
			if !wait(r, d-d/2) {
				canceled = true
				rec.status = buf.Code
				return
			}
			for k, v := range buf.Header() {
				rec.Header()[k] = v
			}
			rec.WriteHeader(buf.Code)
			_, _ = rec.Write(buf.Body.Bytes())
			return
		}
		b.answer(rec, r, rule, next)
	})
}

// wait holds the request for d; false when the client went away first.
func wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

// answer serves the request: the failure rule's answer, or the fake's.
func (b *base) answer(w http.ResponseWriter, r *http.Request, rule *Rule, next http.Handler) {
	if rule == nil {
		next.ServeHTTP(w, r)
		return
	}
	rule.hits.Add(1)
	if rule.RetryAfter != "" {
		w.Header().Set("Retry-After", rule.RetryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(rule.Status)
	_, _ = io.WriteString(w, `{"status":"error","message":"injected failure","category":"TEST_FAULT"}`)
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// closeServer cuts the connections first: a request held by the latency
// ends when its connection does, so Close does not wait it out.
func closeServer(srv *httptest.Server) {
	srv.CloseClientConnections()
	srv.Close()
}
