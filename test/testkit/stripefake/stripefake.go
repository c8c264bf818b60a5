// Package stripefake is an in-memory Stripe API for tests, over real HTTP:
// the events list with paging and created and types filters, object lists
// (subscriptions honour status, so a list without status=all leaves
// canceled ones out, as Stripe does; webhook endpoints are listed too),
// single subscription and charge reads,
// and rate-limit 429s and 500s on demand. It records every request with
// its arrival time, so a test can check the request rate a client kept.
package stripefake

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Request is one request as received.
type Request struct {
	// At is when the request arrived.
	At     time.Time
	Method string
	Path   string
	Query  url.Values
	Status int
}

// Server is the fake API.
type Server struct {
	key string
	srv *httptest.Server

	mu       sync.Mutex
	seq      int64
	events   []item
	objects  map[string][]item // by list path: "customers", "subscriptions", ...
	requests []Request
	// rateLimitUntil: every request before it is answered 429 rate_limit.
	rateLimitUntil time.Time
	// fail500 answers the next n requests 500.
	fail500   int
	onRequest func(r *http.Request)
}

type item struct {
	id      string
	typ     string // events: the event type; objects: the status
	created int64
	seq     int64
	raw     json.RawMessage
	// customer is the object's customer id (objects only).
	customer string
}

// New serves a fake API that accepts the secret key key.
func New(key string) *Server {
	s := &Server{key: key, objects: map[string][]item{}}
	s.srv = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL is the base URL for STRIPE_API_BASE.
func (s *Server) URL() string { return s.srv.URL }

// Close stops the server.
func (s *Server) Close() { s.srv.Close() }

// AddEvent stores an event (a webhook body). It fails on JSON that is not an
// event with an id, a type and a created time.
func (s *Server) AddEvent(raw []byte) error {
	var head struct {
		ID      string `json:"id"`
		Type    string `json:"type"`
		Created int64  `json:"created"`
	}
	if err := json.Unmarshal(raw, &head); err != nil || head.ID == "" || head.Type == "" || head.Created == 0 {
		return fmt.Errorf("stripefake: not an event: %v", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	s.events = append(s.events, item{id: head.ID, typ: head.Type, created: head.Created, seq: s.seq, raw: slices.Clone(raw)})
	return nil
}

// Events counts the stored events.
func (s *Server) Events() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

// kindPaths maps an object's "object" field to its list path.
var kindPaths = map[string]string{
	"customer":         "customers",
	"subscription":     "subscriptions",
	"invoice":          "invoices",
	"checkout.session": "checkout/sessions",
	"charge":           "charges",
	"refund":           "refunds",
	"dispute":          "disputes",
	"webhook_endpoint": "webhook_endpoints",
}

// PutObject stores an object, or replaces the stored one with its id: a
// change made in Stripe's dashboard, without an event.
func (s *Server) PutObject(raw []byte) error {
	var head struct {
		ID       string          `json:"id"`
		Object   string          `json:"object"`
		Created  int64           `json:"created"`
		Status   string          `json:"status"`
		Customer json.RawMessage `json:"customer"`
	}
	if err := json.Unmarshal(raw, &head); err != nil || head.ID == "" {
		return fmt.Errorf("stripefake: not an object: %v", err)
	}
	path, ok := kindPaths[head.Object]
	if !ok {
		return fmt.Errorf("stripefake: objects of type %q are not listed", head.Object)
	}
	var cus string
	if len(head.Customer) > 0 && head.Customer[0] == '"' {
		_ = json.Unmarshal(head.Customer, &cus)
	} else if len(head.Customer) > 0 && head.Customer[0] == '{' {
		var c struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(head.Customer, &c)
		cus = c.ID
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.objects[path]
	for i, it := range list {
		if it.id == head.ID {
			list[i].raw, list[i].typ, list[i].customer = slices.Clone(raw), head.Status, cus
			return nil
		}
	}
	s.seq++
	s.objects[path] = append(list, item{id: head.ID, typ: head.Status, created: head.Created, seq: s.seq, raw: slices.Clone(raw), customer: cus})
	return nil
}

// RateLimitFor answers every request 429 (code rate_limit) for d from now.
func (s *Server) RateLimitFor(d time.Duration) {
	s.mu.Lock()
	s.rateLimitUntil = time.Now().Add(d)
	s.mu.Unlock()
}

// Fail500 answers the next n requests 500.
func (s *Server) Fail500(n int) {
	s.mu.Lock()
	s.fail500 = n
	s.mu.Unlock()
}

// OnRequest runs fn on each request before it is answered.
func (s *Server) OnRequest(fn func(r *http.Request)) {
	s.mu.Lock()
	s.onRequest = fn
	s.mu.Unlock()
}

// Requests returns the requests received so far, in the order they were
// answered.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// MaxPerWindow is the most requests that arrived within any window of
// length w.
func (s *Server) MaxPerWindow(w time.Duration) int {
	reqs := s.Requests()
	// Answered order is not quite arrival order when requests overlap.
	slices.SortFunc(reqs, func(a, b Request) int { return a.At.Compare(b.At) })
	most, j := 0, 0
	for i := range reqs {
		for reqs[i].At.Sub(reqs[j].At) >= w {
			j++
		}
		most = max(most, i-j+1)
	}
	return most
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	// The arrival, not the answer: a rate is what a client sent.
	at := time.Now()
	s.mu.Lock()
	hook := s.onRequest
	s.mu.Unlock()
	if hook != nil {
		hook(r)
	}
	status := s.answer(w, r)
	s.mu.Lock()
	s.requests = append(s.requests, Request{At: at, Method: r.Method, Path: r.URL.Path, Query: r.URL.Query(), Status: status})
	s.mu.Unlock()
}

func writeError(w http.ResponseWriter, status int, typ, code, msg string) int {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Request-Id", "req_fake")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"type": typ, "code": code, "message": msg}})
	return status
}

func (s *Server) answer(w http.ResponseWriter, r *http.Request) int {
	if r.Header.Get("Authorization") != "Bearer "+s.key {
		return writeError(w, http.StatusUnauthorized, "invalid_request_error", "", "Invalid API Key provided")
	}
	s.mu.Lock()
	limited := time.Now().Before(s.rateLimitUntil)
	fail := s.fail500 > 0
	if fail {
		s.fail500--
	}
	s.mu.Unlock()
	if limited {
		// What Stripe says when the account's rate is exceeded; stripe-go
		// does not retry it.
		return writeError(w, http.StatusTooManyRequests, "invalid_request_error", "rate_limit", "Too many requests hit the API too quickly.")
	}
	if fail {
		return writeError(w, http.StatusInternalServerError, "api_error", "", "An unknown error occurred")
	}
	if r.Method != http.MethodGet {
		return writeError(w, http.StatusMethodNotAllowed, "invalid_request_error", "", "only GET here")
	}
	q := r.URL.Query()
	path := strings.TrimPrefix(r.URL.Path, "/v1/")
	if path == "events" {
		return s.listEvents(w, q)
	}
	for _, p := range []string{"subscriptions/", "charges/"} {
		if id, ok := strings.CutPrefix(path, p); ok && id != "" {
			return s.getObject(w, strings.TrimSuffix(p, "/"), id)
		}
	}
	if _, ok := listPaths[path]; ok {
		return s.listObjects(w, path, q)
	}
	return writeError(w, http.StatusNotFound, "invalid_request_error", "resource_missing", "Unrecognized request URL")
}

var listPaths = map[string]bool{"customers": true, "subscriptions": true, "invoices": true, "checkout/sessions": true, "charges": true, "refunds": true, "disputes": true, "webhook_endpoints": true}

// createdFilter reads created[gte|gt|lte|lt] and created=N.
func createdFilter(q url.Values) func(int64) bool {
	bound := func(k string) (int64, bool) {
		v := q.Get(k)
		if v == "" {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		return n, err == nil
	}
	return func(c int64) bool {
		if n, ok := bound("created"); ok && c != n {
			return false
		}
		if n, ok := bound("created[gte]"); ok && c < n {
			return false
		}
		if n, ok := bound("created[gt]"); ok && c <= n {
			return false
		}
		if n, ok := bound("created[lte]"); ok && c > n {
			return false
		}
		if n, ok := bound("created[lt]"); ok && c >= n {
			return false
		}
		return true
	}
}

// page answers one page of items (already filtered), newest first.
func page(w http.ResponseWriter, url string, items []item, q url.Values) int {
	slices.SortFunc(items, func(a, b item) int {
		if a.created != b.created {
			return int(b.created - a.created)
		}
		return int(b.seq - a.seq)
	})
	if after := q.Get("starting_after"); after != "" {
		i := slices.IndexFunc(items, func(it item) bool { return it.id == after })
		if i < 0 {
			return writeError(w, http.StatusBadRequest, "invalid_request_error", "resource_missing", "No such object: starting_after")
		}
		items = items[i+1:]
	}
	limit := 10
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return writeError(w, http.StatusBadRequest, "invalid_request_error", "parameter_invalid_integer", "limit must be 1 to 100")
		}
		limit = n
	}
	more := len(items) > limit
	if more {
		items = items[:limit]
	}
	data := make([]json.RawMessage, len(items))
	for i, it := range items {
		data[i] = it.raw
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"object": "list", "url": url, "has_more": more, "data": data})
	return http.StatusOK
}

func (s *Server) listEvents(w http.ResponseWriter, q url.Values) int {
	var types []string
	for k, vs := range q {
		if k == "types" || strings.HasPrefix(k, "types[") {
			types = append(types, vs...)
		}
	}
	in := createdFilter(q)
	s.mu.Lock()
	var items []item
	for _, ev := range s.events {
		if in(ev.created) && (len(types) == 0 || slices.Contains(types, ev.typ)) {
			items = append(items, ev)
		}
	}
	s.mu.Unlock()
	return page(w, "/v1/events", items, q)
}

func (s *Server) listObjects(w http.ResponseWriter, path string, q url.Values) int {
	in := createdFilter(q)
	status, cus := q.Get("status"), q.Get("customer")
	s.mu.Lock()
	var items []item
	for _, it := range s.objects[path] {
		if !in(it.created) || (cus != "" && it.customer != cus) {
			continue
		}
		if path == "subscriptions" {
			// Stripe's default leaves canceled subscriptions out.
			switch {
			case status == "":
				if it.typ == "canceled" {
					continue
				}
			case status != "all" && status != it.typ:
				continue
			}
		}
		items = append(items, it)
	}
	s.mu.Unlock()
	return page(w, "/v1/"+path, items, q)
}

func (s *Server) getObject(w http.ResponseWriter, path, id string) int {
	s.mu.Lock()
	var raw json.RawMessage
	for _, it := range s.objects[path] {
		if it.id == id {
			raw = it.raw
		}
	}
	s.mu.Unlock()
	if raw == nil {
		return writeError(w, http.StatusNotFound, "invalid_request_error", "resource_missing", "No such object")
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(raw)
	return http.StatusOK
}
