package fakes

import (
	"bytes"
	"fmt"
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

// faults is what every vendor fake shares: the call log, and the ways to
// misbehave a test can ask for (latency, standing failure rules, planned
// failures of the next calls, hangs, answers lost after the vendor acted).
type faults struct {
	latency atomic.Int64 // nanoseconds

	mu      sync.Mutex
	calls   []Call
	rules   []*Rule
	inFl    int
	maxInFl int
	changed chan struct{}

	failNext   []int         // statuses to answer, one per call
	retryAfter string        // Retry-After sent with a planned 429
	hang       time.Duration // how long every call hangs before it is served
	loseNext   int           // calls to serve but never answer
	release    chan struct{} // closed to cut hanging and lost calls off
}

func newFaults() faults {
	return faults{changed: make(chan struct{}), release: make(chan struct{})}
}

// SetLatency delays every answer by d (0: none). A client that gives up
// first ends the wait, as a real slow server's would.
func (f *faults) SetLatency(d time.Duration) { f.latency.Store(int64(d)) }

// Latency is the current delay.
func (f *faults) Latency() time.Duration { return time.Duration(f.latency.Load()) }

// AddRule installs a failure rule; the returned function removes it.
func (f *faults) AddRule(r *Rule) (remove func()) {
	f.mu.Lock()
	f.rules = append(f.rules, r)
	f.mu.Unlock()
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		for i, x := range f.rules {
			if x == r {
				f.rules = append(f.rules[:i], f.rules[i+1:]...)
				return
			}
		}
	}
}

// FailNext answers the next calls with these statuses, one per call.
func (f *faults) FailNext(statuses ...int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failNext = append(f.failNext, statuses...)
}

// RateLimitNext answers the next n calls 429 with Retry-After.
func (f *faults) RateLimitNext(n int, retryAfter string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.retryAfter = retryAfter
	for range n {
		f.failNext = append(f.failNext, http.StatusTooManyRequests)
	}
}

// Hang makes every call wait d before it is served (0 stops hanging).
func (f *faults) Hang(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hang = d
}

// StopHanging ends the hang for later calls and cuts the calls hanging now
// off without an answer, as a vendor recovering from an outage would.
func (f *faults) StopHanging() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hang = 0
	close(f.release)
	f.release = make(chan struct{})
}

// LoseNextAnswers serves the next n calls (the vendor acts on them) but
// never answers, like a connection that dies after the vendor committed:
// the client times out without knowing the call succeeded.
func (f *faults) LoseNextAnswers(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loseNext += n
}

// Calls returns every request received so far, in arrival order.
func (f *faults) Calls() []Call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Call(nil), f.calls...)
}

// CallCount is len(Calls()).
func (f *faults) CallCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls)
}

// CallsMentioning counts requests whose body contains s.
func (f *faults) CallsMentioning(s string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if bytes.Contains(c.Body, []byte(s)) {
			n++
		}
	}
	return n
}

// MaxConcurrent is the most requests served at once.
func (f *faults) MaxConcurrent() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.maxInFl
}

// Changed returns a channel closed at the next recorded call.
func (f *faults) Changed() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed
}

// stop cuts off every hanging or lost call so the server can shut down.
func (f *faults) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.release:
	default:
		close(f.release)
	}
}

// serve wraps the vendor's handler with the call log and the faults.
func (f *faults) serve(vendor http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		at := time.Now()
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		f.mu.Lock()
		f.inFl++
		f.maxInFl = max(f.maxInFl, f.inFl)
		var rule *Rule
		for _, x := range f.rules {
			if x.Match == nil || x.Match(r.Method, r.URL.Path, body) {
				rule = x
				break
			}
		}
		hang, release := f.hang, f.release
		f.mu.Unlock()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		canceled := false
		defer func() {
			f.mu.Lock()
			f.inFl--
			f.calls = append(f.calls, Call{At: at, Done: time.Now(), Method: r.Method, Path: r.URL.Path,
				Status: rec.status, Body: body, Header: r.Header.Clone(), Canceled: canceled})
			close(f.changed)
			f.changed = make(chan struct{})
			f.mu.Unlock()
		}()
		if hang > 0 {
			timer := time.NewTimer(hang)
			defer timer.Stop()
			select {
			case <-timer.C:
			case <-r.Context().Done():
				canceled, rec.status = true, 0
				return
			case <-release:
				rec.status = 0
				panic(http.ErrAbortHandler) // drop the connection unanswered
			}
		}
		if f.planned(rec) {
			return
		}
		if lose, release := f.takeLose(); lose {
			vendor.ServeHTTP(httptest.NewRecorder(), r)
			select {
			case <-r.Context().Done():
			case <-release:
			}
			canceled, rec.status = true, 0
			panic(http.ErrAbortHandler)
		}
		// Half the latency before the vendor acts and half after, so a
		// client that dies mid-call may or may not have changed the vendor's
		// state, as with a real network.
		d := f.Latency()
		if !wait(r, d/2) {
			canceled, rec.status = true, 0
			return
		}
		if d-d/2 > 0 {
			// Act now, answer later.
			buf := httptest.NewRecorder()
			answer(buf, r, rule, vendor)
			if !wait(r, d-d/2) {
				canceled, rec.status = true, buf.Code
				return
			}
			for k, v := range buf.Header() {
				rec.Header()[k] = v
			}
			rec.WriteHeader(buf.Code)
			_, _ = rec.Write(buf.Body.Bytes())
			return
		}
		answer(rec, r, rule, vendor)
	})
}

// planned answers the call with the next planned failure, if any.
func (f *faults) planned(w http.ResponseWriter) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.failNext) == 0 {
		return false
	}
	status := f.failNext[0]
	f.failNext = f.failNext[1:]
	if status == http.StatusTooManyRequests && f.retryAfter != "" {
		w.Header().Set("Retry-After", f.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	// A credential-like value in the body: callers must not repeat vendor
	// bodies into errors unredacted.
	fmt.Fprintf(w, `{"error":"planned failure %d","token":"token=fake-secret-value"}`, status)
	return true
}

func (f *faults) takeLose() (bool, chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.loseNext == 0 {
		return false, nil
	}
	f.loseNext--
	return true, f.release
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

// answer serves the request: the failure rule's answer, or the vendor's.
func answer(w http.ResponseWriter, r *http.Request, rule *Rule, vendor http.Handler) {
	if rule == nil {
		vendor.ServeHTTP(w, r)
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

// closeServer cuts hanging calls and the connections first: a request held
// by a fault ends when its connection does, so Close does not wait it out.
func closeServer(f *faults, srv *httptest.Server) {
	f.stop()
	srv.CloseClientConnections()
	srv.Close()
}
