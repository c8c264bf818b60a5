// Package hubspotfake is an in-memory stand-in for the parts of HubSpot's
// CRM API that crm-sync uses, served over real HTTP so the client, its
// transport, timeouts and rate limiter are exercised as in production.
//
// It keeps contacts and deals, enforces unique properties the way HubSpot
// does (email and stripe_customer_id on contacts, stripe_subscription_id on
// deals: a write that would duplicate one answers 409), rejects properties
// that are not defined (400 PROPERTY_DOESNT_EXIST) and checks the bearer
// token. Tests program faults (429 with Retry-After, 500, 400, a hang, or
// an answer lost after the write was applied) and read back what was
// stored and every request received, with its arrival time.
//
// The batch endpoints take up to 100 inputs (contacts and deals
// batch/upsert and batch/update, the v4 batch association). A bad input
// (an undefined property, an invalid email, a unique value another record
// holds, or a record marked bad with RejectRecord) is reported the way
// SetBatchErrors chooses: one error answer for the whole batch with
// nothing applied (WholeBatch, the default), or a 207 multi-status that
// applies the good inputs and lists the bad ones, each error naming its
// input in context.ids (MultiStatus). SetRateLimit and SetLatency make it
// as slow as a real portal (100 requests per 10 s, 200 ms an answer).
package hubspotfake

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Object is a stored contact or deal.
type Object struct {
	ID         string            `json:"id"`
	Properties map[string]string `json:"properties"`
	CreatedAt  time.Time         `json:"createdAt"`
	UpdatedAt  time.Time         `json:"updatedAt"`
	Archived   bool              `json:"archived"`
}

// Request is one request as received.
type Request struct {
	At     time.Time
	Method string
	Path   string
	Status int
}

// Fault is a programmed misbehaviour, applied to the next Count matching
// requests (1 when Count is 0).
type Fault struct {
	// Status is the answer (429, 500, 400, ...).
	Status int
	// RetryAfter is sent with the answer when set (e.g. "1").
	RetryAfter string
	// Body replaces the default HubSpot-style error body.
	Body string
	// Hang holds the request until the client gives up or Release is
	// called; it then gets Status (500 when 0).
	Hang bool
	// AfterWrite applies the write first and then fails or hangs: the CRM
	// changed but the caller never learns it.
	AfterWrite bool
	Count      int
	// Match selects requests; nil matches every request.
	Match func(*http.Request) bool
}

// BatchErrors is how a batch with bad inputs is answered.
type BatchErrors int

const (
	// WholeBatch refuses the whole batch with the first bad input's error
	// (400, 404 or 409) and applies nothing.
	WholeBatch BatchErrors = iota
	// MultiStatus applies the good inputs and answers 207 with an error
	// per bad input, naming it in context.ids.
	MultiStatus
)

// MaxBatchInputs is the most inputs one batch call takes; more answers 400.
const MaxBatchInputs = 100

type store struct {
	objects map[string]*Object
	unique  []string
	// holders indexes the unique properties: property → value (emails
	// lower-cased) → the objects holding it, archived ones included, so a
	// lookup in a portal of many records stays cheap.
	holders map[string]map[string]map[*Object]bool
}

func newStore(unique ...string) *store {
	st := &store{objects: map[string]*Object{}, unique: unique, holders: map[string]map[string]map[*Object]bool{}}
	for _, u := range unique {
		st.holders[u] = map[string]map[*Object]bool{}
	}
	return st
}

func indexValue(property, value string) string {
	if property == "email" {
		return strings.ToLower(value)
	}
	return value
}

// reindex records that o's property changed from old to value.
func (st *store) reindex(o *Object, property, old, value string) {
	byValue := st.holders[property]
	if byValue == nil || old == value {
		return
	}
	if set := byValue[indexValue(property, old)]; set != nil {
		delete(set, o)
	}
	if value == "" {
		return
	}
	k := indexValue(property, value)
	if byValue[k] == nil {
		byValue[k] = map[*Object]bool{}
	}
	byValue[k][o] = true
}

// Server is the fake. The zero value is not usable; call New or Start.
type Server struct {
	mu       sync.Mutex
	token    string
	now      func() time.Time
	next     int
	stores   map[string]*store // "contacts", "deals"
	defined  map[string]map[string]bool
	assoc    map[string]map[string]bool // deal id -> contact ids
	faults   []*Fault
	requests []Request
	limit    int
	window   time.Duration
	release  chan struct{}
	writes   int
	inFlight int
	maxIn    int
	latency  time.Duration
	style    BatchErrors
	bad      map[string]bool // object + "\x00" + property + "\x00" + value

	srv *httptest.Server
}

// New returns a fake that is not listening yet; Handler serves it.
// token is the bearer token it accepts ("" accepts any).
func New(token string) *Server {
	s := &Server{
		token:   token,
		now:     time.Now,
		next:    1000,
		release: make(chan struct{}),
		stores: map[string]*store{
			"contacts": newStore("email", "stripe_customer_id"),
			"deals":    newStore("stripe_subscription_id"),
		},
		defined: map[string]map[string]bool{"contacts": {}, "deals": {}},
		assoc:   map[string]map[string]bool{},
		bad:     map[string]bool{},
	}
	for _, p := range []string{"email", "firstname", "lastname", "phone", "company", "lifecyclestage",
		"stripe_customer_id", "billing_status", "billing_entitled", "plan", "mrr", "current_period_end",
		"last_payment_failed_at", "billing_dispute_open", "stripe_customer_deleted", "launchready_test"} {
		s.defined["contacts"][p] = true
	}
	for _, p := range []string{"dealname", "pipeline", "dealstage", "amount", "closedate",
		"stripe_subscription_id", "billing_status"} {
		s.defined["deals"][p] = true
	}
	return s
}

// Start serves a new fake on a local port until Close.
func Start(token string) *Server {
	s := New(token)
	s.srv = httptest.NewServer(s.Handler())
	return s
}

// URL is the base URL to use as HUBSPOT_BASE_URL.
func (s *Server) URL() string { return s.srv.URL }

// Close releases hanging requests and stops the server.
func (s *Server) Close() {
	s.Release()
	if s.srv != nil {
		s.srv.CloseClientConnections()
		s.srv.Close()
	}
}

// Release lets every hanging request answer.
func (s *Server) Release() {
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-s.release:
	default:
		close(s.release)
	}
}

// Inject queues a fault.
func (s *Server) Inject(f Fault) {
	if f.Count <= 0 {
		f.Count = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, &f)
	select {
	case <-s.release:
		s.release = make(chan struct{})
	default:
	}
}

// ClearFaults drops queued faults.
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = nil
}

// SetRateLimit makes the fake answer 429 (Retry-After: the seconds until
// the oldest request leaves the window) whenever more than n requests
// arrived in the trailing window, as HubSpot's rolling limits do. n 0
// turns it off.
func (s *Server) SetRateLimit(n int, window time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.limit, s.window = n, window
}

// SetLatency delays every answer by d, as a distant API does; a client
// that gives up first ends the wait.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// SetBatchErrors chooses how batches with bad inputs are answered.
func (s *Server) SetBatchErrors(style BatchErrors) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.style = style
}

// RejectRecord makes every write of object whose property equals value
// fail validation (400 INVALID_OPTION), as a record HubSpot will not take
// would: the test's bad record in a batch.
func (s *Server) RejectRecord(object, property, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bad[object+"\x00"+property+"\x00"+value] = true
}

// Undefine removes a property from the portal, so writes that set it are
// refused with 400 until Define adds it back.
func (s *Server) Undefine(object, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.defined[object], name)
}

// Define adds a property to the portal.
func (s *Server) Define(object, name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.defined[object][name] = true
}

// Contacts returns the live contacts, by id.
func (s *Server) Contacts() []Object { return s.list("contacts") }

// Deals returns the live deals, by id.
func (s *Server) Deals() []Object { return s.list("deals") }

func (s *Server) list(object string) []Object {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Object
	for _, o := range s.stores[object].objects {
		if !o.Archived {
			out = append(out, clone(o))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Find returns the live object whose property equals value.
func (s *Server) Find(object, property, value string) (Object, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.findLocked(object, property, value); o != nil {
		return clone(o), true
	}
	return Object{}, false
}

// Associated returns the contact ids a deal is associated with.
func (s *Server) Associated(dealID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for c := range s.assoc[dealID] {
		// Like HubSpot, an archived record's associations are gone.
		if o := s.stores["contacts"].objects[c]; o != nil && !o.Archived {
			out = append(out, c)
		}
	}
	sort.Strings(out)
	return out
}

// Archive deletes an object, as a user deleting it in HubSpot would.
func (s *Server) Archive(object, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o := s.stores[object].objects[id]; o != nil {
		o.Archived = true
	}
}

// Requests returns every request answered so far, in order of arrival.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	out := append([]Request(nil), s.requests...)
	s.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// MaxInFlight is the most requests the fake was serving at once.
func (s *Server) MaxInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxIn
}

// InFlight is the number of requests being served now (hanging ones
// included).
func (s *Server) InFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.inFlight
}

// Writes counts the writes applied (creates, updates, associations).
func (s *Server) Writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes
}

// MaxInWindow is the most requests that arrived within any interval of
// length window.
func (s *Server) MaxInWindow(window time.Duration) int {
	reqs := s.Requests()
	best, j := 0, 0
	for i := range reqs {
		for reqs[i].At.Sub(reqs[j].At) >= window {
			j++
		}
		if n := i - j + 1; n > best {
			best = n
		}
	}
	return best
}

func clone(o *Object) Object {
	c := *o
	c.Properties = make(map[string]string, len(o.Properties))
	for k, v := range o.Properties {
		c.Properties[k] = v
	}
	return c
}

// Handler serves the fake API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /crm/v3/objects/{object}", s.create)
	mux.HandleFunc("GET /crm/v3/objects/{object}/{id}", s.get)
	mux.HandleFunc("PATCH /crm/v3/objects/{object}/{id}", s.patch)
	mux.HandleFunc("DELETE /crm/v3/objects/{object}/{id}", s.archive)
	mux.HandleFunc("POST /crm/v3/objects/{object}/batch/upsert", s.upsert)
	mux.HandleFunc("POST /crm/v3/objects/{object}/batch/update", s.batchUpdate)
	mux.HandleFunc("PUT /crm/v4/objects/{from}/{fromID}/associations/default/{to}/{toID}", s.associate)
	mux.HandleFunc("POST /crm/v4/associations/{from}/{to}/batch/associate/default", s.batchAssociate)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		at := s.now()
		// Read the body up front: the server notices a client that gave up
		// only once the body is consumed, and a hanging request must end
		// when its client does.
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		s.mu.Lock()
		s.inFlight++
		s.maxIn = max(s.maxIn, s.inFlight)
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.inFlight--
			s.requests = append(s.requests, Request{At: at, Method: r.Method, Path: r.URL.Path, Status: rec.status})
			s.mu.Unlock()
		}()
		if s.token != "" && r.Header.Get("Authorization") != "Bearer "+s.token {
			hsError(rec, http.StatusUnauthorized, "INVALID_AUTHENTICATION", "Authentication credentials not found.")
			return
		}
		s.mu.Lock()
		latency := s.latency
		s.mu.Unlock()
		if latency > 0 {
			t := time.NewTimer(latency)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				rec.WriteHeader(499) // the client gave up
				return
			}
		}
		if retry, limited := s.overLimit(at); limited {
			rec.Header().Set("Retry-After", retry)
			hsError(rec, http.StatusTooManyRequests, "RATE_LIMITS", "You have reached your ten_secondly_rolling limit.")
			return
		}
		f := s.takeFault(r)
		if f != nil && !f.AfterWrite {
			s.fail(rec, r, f)
			return
		}
		if f != nil {
			mux.ServeHTTP(discard{header: http.Header{}}, r)
			s.fail(rec, r, f)
			return
		}
		mux.ServeHTTP(rec, r)
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

// discard swallows the answer of a write whose result the fault hides.
type discard struct{ header http.Header }

func (d discard) Header() http.Header         { return d.header }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}

func (s *Server) overLimit(at time.Time) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.limit <= 0 {
		return "", false
	}
	n := 0
	var oldest time.Time
	for i := len(s.requests) - 1; i >= 0; i-- {
		if at.Sub(s.requests[i].At) >= s.window {
			break
		}
		n++
		oldest = s.requests[i].At
	}
	if n < s.limit {
		return "", false
	}
	wait := s.window - at.Sub(oldest)
	return strconv.Itoa(int(wait.Seconds()) + 1), true
}

func (s *Server) takeFault(r *http.Request) *Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.faults {
		if f.Match != nil && !f.Match(r) {
			continue
		}
		f.Count--
		if f.Count <= 0 {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
		}
		return f
	}
	return nil
}

func (s *Server) fail(w http.ResponseWriter, r *http.Request, f *Fault) {
	if f.Hang {
		s.mu.Lock()
		rel := s.release
		s.mu.Unlock()
		select {
		case <-r.Context().Done():
			w.WriteHeader(499) // recorded as abandoned; the client is gone
			return
		case <-rel:
		}
	}
	status := f.Status
	if status == 0 {
		status = http.StatusInternalServerError
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	if f.Body != "" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write([]byte(f.Body))
		return
	}
	category := map[int]string{400: "VALIDATION_ERROR", 429: "RATE_LIMITS", 500: "INTERNAL_ERROR", 503: "SERVICE_UNAVAILABLE"}[status]
	hsError(w, status, category, http.StatusText(status))
}

func hsError(w http.ResponseWriter, status int, category, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{
		"status": "error", "message": msg, "category": category,
		"correlationId": fmt.Sprintf("fake-%d", time.Now().UnixNano()),
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

type apiError struct {
	status   int
	category string
	msg      string
}

func (e *apiError) write(w http.ResponseWriter) { hsError(w, e.status, e.category, e.msg) }

func (s *Server) storeFor(w http.ResponseWriter, name string) *store {
	st := s.stores[name]
	if st == nil {
		hsError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "Unable to infer object type from: "+name)
	}
	return st
}

func (s *Server) findLocked(object, property, value string) *Object {
	st := s.stores[object]
	if st == nil || value == "" {
		return nil
	}
	if byValue := st.holders[property]; byValue != nil {
		for o := range byValue[indexValue(property, value)] {
			if !o.Archived {
				return o
			}
		}
		return nil
	}
	for _, o := range st.objects {
		if !o.Archived && equalProp(property, o.Properties[property], value) {
			return o
		}
	}
	return nil
}

func equalProp(name, a, b string) bool {
	if name == "email" {
		return strings.EqualFold(a, b)
	}
	return a == b
}

// validateLocked checks property names and values and that no other live
// object holds the same value of a unique property.
func (s *Server) validateLocked(object string, self *Object, props map[string]string) *apiError {
	var missing []string
	for k := range props {
		if !s.defined[object][k] {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		details := make([]string, len(missing))
		for i, m := range missing {
			details[i] = fmt.Sprintf(`{"isValid":false,"message":"Property \"%s\" does not exist","error":"PROPERTY_DOESNT_EXIST","name":"%s"}`, m, m)
		}
		return &apiError{http.StatusBadRequest, "VALIDATION_ERROR", "Property values were not valid: [" + strings.Join(details, ",") + "]"}
	}
	if e, ok := props["email"]; ok && e != "" && (!strings.Contains(e, "@") || strings.ContainsAny(e, " \t")) {
		return &apiError{http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf(`Property values were not valid: [{"isValid":false,"message":"Email address %s is invalid","error":"INVALID_EMAIL","name":"email"}]`, e)}
	}
	for k, v := range props {
		if s.bad[object+"\x00"+k+"\x00"+v] {
			return &apiError{http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf(`Property values were not valid: [{"isValid":false,"message":"%s was not one of the allowed options","error":"INVALID_OPTION","name":"%s"}]`, v, k)}
		}
	}
	for _, u := range s.stores[object].unique {
		v := props[u]
		if v == "" {
			continue
		}
		if other := s.findLocked(object, u, v); other != nil && other != self {
			return &apiError{http.StatusConflict, "CONFLICT", fmt.Sprintf("%s already exists. Existing ID: %s", singular(object), other.ID)}
		}
	}
	return nil
}

func singular(object string) string {
	return strings.ToUpper(object[:1]) + strings.TrimSuffix(object[1:], "s")
}

func (s *Server) createLocked(object string, props map[string]string) *Object {
	s.next++
	now := s.now()
	o := &Object{ID: strconv.Itoa(s.next), Properties: map[string]string{}, CreatedAt: now, UpdatedAt: now}
	st := s.stores[object]
	for k, v := range props {
		o.Properties[k] = v
		st.reindex(o, k, "", v)
	}
	st.objects[o.ID] = o
	s.writes++
	return o
}

func (s *Server) updateLocked(object string, o *Object, props map[string]string) {
	st := s.stores[object]
	for k, v := range props {
		st.reindex(o, k, o.Properties[k], v)
		o.Properties[k] = v
	}
	o.UpdatedAt = s.now()
	s.writes++
}

func (s *Server) create(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Properties map[string]string `json:"properties"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		hsError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Invalid input JSON")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	object := r.PathValue("object")
	if s.storeFor(w, object) == nil {
		return
	}
	if e := s.validateLocked(object, nil, in.Properties); e != nil {
		e.write(w)
		return
	}
	writeJSON(w, http.StatusCreated, clone(s.createLocked(object, in.Properties)))
}

func (s *Server) lookup(r *http.Request) *Object {
	object, id := r.PathValue("object"), r.PathValue("id")
	if p := r.URL.Query().Get("idProperty"); p != "" {
		return s.findLocked(object, p, id)
	}
	if o := s.stores[object].objects[id]; o != nil && !o.Archived {
		return o
	}
	return nil
}

func (s *Server) get(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.storeFor(w, r.PathValue("object")) == nil {
		return
	}
	o := s.lookup(r)
	if o == nil {
		hsError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "resource not found")
		return
	}
	writeJSON(w, http.StatusOK, clone(o))
}

func (s *Server) patch(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Properties map[string]string `json:"properties"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil {
		hsError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Invalid input JSON")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	object := r.PathValue("object")
	if s.storeFor(w, object) == nil {
		return
	}
	o := s.lookup(r)
	if o == nil {
		hsError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "resource not found")
		return
	}
	if e := s.validateLocked(object, o, in.Properties); e != nil {
		e.write(w)
		return
	}
	s.updateLocked(object, o, in.Properties)
	writeJSON(w, http.StatusOK, clone(o))
}

func (s *Server) archive(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.storeFor(w, r.PathValue("object")) == nil {
		return
	}
	if o := s.lookup(r); o != nil {
		o.Archived = true
		s.writes++
	}
	w.WriteHeader(http.StatusNoContent)
}

type upsertResult struct {
	Object
	New bool `json:"new"`
}

// batchError is one bad input of a 207 multi-status answer.
type batchError struct {
	Status   string              `json:"status"`
	Category string              `json:"category"`
	Message  string              `json:"message"`
	Context  map[string][]string `json:"context"`
}

// batch is one batch call being answered: the style in force, the results
// of the inputs applied and the errors of the others.
type batch struct {
	style   BatchErrors
	results []any
	errors  []batchError
}

// refuse records a bad input. It reports whether the call goes on (only
// under MultiStatus); under WholeBatch it has answered the call with e.
func (b *batch) refuse(w http.ResponseWriter, id string, e *apiError) bool {
	if b.style == WholeBatch {
		e.write(w)
		return false
	}
	b.errors = append(b.errors, batchError{Status: "error", Category: e.category, Message: e.msg, Context: map[string][]string{"ids": {id}}})
	return true
}

// run checks the n inputs of a call and applies the good ones. check
// returns an input's id and either how to apply it or why it is refused.
// Under WholeBatch every input is checked before any is applied, so a
// refused batch changes nothing; under MultiStatus each is checked and
// applied in turn. It reports whether the call goes on to its answer.
func (b *batch) run(w http.ResponseWriter, n int, check func(i int) (id string, apply func() any, e *apiError)) bool {
	var later []func() any
	for i := range n {
		id, apply, e := check(i)
		switch {
		case e != nil:
			if !b.refuse(w, id, e) {
				return false
			}
		case b.style == MultiStatus:
			b.results = append(b.results, apply())
		default:
			later = append(later, apply)
		}
	}
	for _, apply := range later {
		b.results = append(b.results, apply())
	}
	return true
}

func (b *batch) answer(w http.ResponseWriter, now time.Time) {
	status := http.StatusOK
	if len(b.errors) > 0 {
		status = http.StatusMultiStatus
	}
	out := map[string]any{"status": "COMPLETE", "results": b.results, "startedAt": now, "completedAt": now}
	if b.results == nil {
		out["results"] = []any{}
	}
	if len(b.errors) > 0 {
		out["errors"] = b.errors
		out["numErrors"] = len(b.errors)
	}
	writeJSON(w, status, out)
}

// decodeBatch reads a batch body and checks its size and that no id
// appears twice, as HubSpot does before looking at any input.
func decodeBatch[T any](w http.ResponseWriter, r *http.Request, id func(T) string) ([]T, bool) {
	var in struct {
		Inputs []T `json:"inputs"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || len(in.Inputs) == 0 {
		hsError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Invalid input JSON")
		return nil, false
	}
	if len(in.Inputs) > MaxBatchInputs {
		hsError(w, http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("Batch input cannot exceed %d inputs", MaxBatchInputs))
		return nil, false
	}
	seen := map[string]bool{}
	for _, inp := range in.Inputs {
		k := strings.ToLower(id(inp))
		if seen[k] {
			hsError(w, http.StatusBadRequest, "VALIDATION_ERROR", "Duplicate IDs found in batch input: "+id(inp))
			return nil, false
		}
		seen[k] = true
	}
	return in.Inputs, true
}

type upsertInput struct {
	IDProperty string            `json:"idProperty"`
	ID         string            `json:"id"`
	Properties map[string]string `json:"properties"`
}

// serveBatch answers a batch call on the object named in the path: it
// decodes the inputs, and under the lock refuses the whole call when
// whole says so (whatever the style), then runs check over the inputs.
func serveBatch[T any](s *Server, w http.ResponseWriter, r *http.Request, id func(T) string,
	whole func(object string, st *store, inputs []T) *apiError,
	check func(object string, st *store, in T) (string, func() any, *apiError)) {
	inputs, ok := decodeBatch(w, r, id)
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	object := r.PathValue("object")
	st := s.storeFor(w, object)
	if st == nil {
		return
	}
	if whole != nil {
		if e := whole(object, st, inputs); e != nil {
			e.write(w)
			return
		}
	}
	b := &batch{style: s.style}
	if b.run(w, len(inputs), func(i int) (string, func() any, *apiError) { return check(object, st, inputs[i]) }) {
		b.answer(w, s.now())
	}
}

func (s *Server) upsert(w http.ResponseWriter, r *http.Request) {
	serveBatch(s, w, r, func(in upsertInput) string { return in.ID },
		func(object string, st *store, inputs []upsertInput) *apiError {
			for _, inp := range inputs {
				unique := false
				for _, u := range st.unique {
					unique = unique || u == inp.IDProperty
				}
				if !unique || inp.ID == "" {
					return &apiError{http.StatusBadRequest, "VALIDATION_ERROR", fmt.Sprintf("idProperty %q is not a unique property of %s", inp.IDProperty, object)}
				}
			}
			return nil
		},
		func(object string, _ *store, inp upsertInput) (string, func() any, *apiError) {
			props := map[string]string{}
			for k, v := range inp.Properties {
				props[k] = v
			}
			props[inp.IDProperty] = inp.ID
			target := s.findLocked(object, inp.IDProperty, inp.ID)
			if e := s.validateLocked(object, target, props); e != nil {
				return inp.ID, nil, e
			}
			return inp.ID, func() any { return s.applyUpsertLocked(object, target, props) }, nil
		})
}

func (s *Server) applyUpsertLocked(object string, target *Object, props map[string]string) upsertResult {
	if target == nil {
		return upsertResult{clone(s.createLocked(object, props)), true}
	}
	s.updateLocked(object, target, props)
	return upsertResult{clone(target), false}
}

type updateInput struct {
	ID         string            `json:"id"`
	Properties map[string]string `json:"properties"`
}

// batchUpdate updates records by id; an id that names no live record is
// a bad input (OBJECT_NOT_FOUND).
func (s *Server) batchUpdate(w http.ResponseWriter, r *http.Request) {
	serveBatch(s, w, r, func(in updateInput) string { return in.ID }, nil,
		func(object string, st *store, inp updateInput) (string, func() any, *apiError) {
			o := st.objects[inp.ID]
			if o == nil || o.Archived {
				return inp.ID, nil, &apiError{http.StatusNotFound, "OBJECT_NOT_FOUND", "Object not found. objectId are usually numeric."}
			}
			if e := s.validateLocked(object, o, inp.Properties); e != nil {
				return inp.ID, nil, e
			}
			return inp.ID, func() any {
				s.updateLocked(object, o, inp.Properties)
				return clone(o)
			}, nil
		})
}

type ref struct {
	ID string `json:"id"`
}

type associateInput struct {
	From ref `json:"from"`
	To   ref `json:"to"`
}

// batchAssociate is v4's batch default association: each input links
// from.id to to.id with the default, unlabeled type. A missing record is a
// bad input.
func (s *Server) batchAssociate(w http.ResponseWriter, r *http.Request) {
	inputs, ok := decodeBatch(w, r, func(in associateInput) string { return in.From.ID + ">" + in.To.ID })
	if !ok {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	from, to := r.PathValue("from"), r.PathValue("to")
	fs, ts := s.stores[from], s.stores[to]
	if fs == nil || ts == nil {
		hsError(w, http.StatusBadRequest, "VALIDATION_ERROR", "unknown object type")
		return
	}
	b := &batch{style: s.style}
	ok = b.run(w, len(inputs), func(i int) (string, func() any, *apiError) {
		inp := inputs[i]
		fo, too := fs.objects[inp.From.ID], ts.objects[inp.To.ID]
		if fo == nil || fo.Archived || too == nil || too.Archived {
			return inp.From.ID, nil, &apiError{http.StatusNotFound, "OBJECT_NOT_FOUND", "resource not found"}
		}
		return inp.From.ID, func() any { return s.associateLocked(from, inp.From.ID, inp.To.ID) }, nil
	})
	if ok {
		b.answer(w, s.now())
	}
}

// associateLocked links a deal and a contact (in either direction) and
// returns the association as HubSpot reports it.
func (s *Server) associateLocked(from, fromID, toID string) map[string]any {
	dealID, contactID := fromID, toID
	if from == "contacts" {
		dealID, contactID = toID, fromID
	}
	if s.assoc[dealID] == nil {
		s.assoc[dealID] = map[string]bool{}
	}
	if !s.assoc[dealID][contactID] {
		s.assoc[dealID][contactID] = true
		s.writes++
	}
	return map[string]any{
		"from":            map[string]string{"id": fromID},
		"to":              map[string]string{"id": toID},
		"associationSpec": map[string]any{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 3},
	}
}

func (s *Server) associate(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	from, to := r.PathValue("from"), r.PathValue("to")
	fromID, toID := r.PathValue("fromID"), r.PathValue("toID")
	fs, ts := s.stores[from], s.stores[to]
	if fs == nil || ts == nil {
		hsError(w, http.StatusBadRequest, "VALIDATION_ERROR", "unknown object type")
		return
	}
	fo, to2 := fs.objects[fromID], ts.objects[toID]
	if fo == nil || fo.Archived || to2 == nil || to2.Archived {
		hsError(w, http.StatusNotFound, "OBJECT_NOT_FOUND", "resource not found")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"status":  "COMPLETE",
		"results": []map[string]any{s.associateLocked(from, fromID, toID)},
	})
}
