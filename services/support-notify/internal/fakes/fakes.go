// Package fakes runs stand-ins for Zendesk and Slack as real HTTP servers,
// for tests. They keep what they receive, implement the vendor semantics the
// service relies on (Zendesk's Idempotency-Key, closed tickets refusing
// updates), and can be told to fail, rate-limit or hang.
package fakes

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Trouble is the misbehaviour planned for upcoming calls.
type Trouble struct {
	mu         sync.Mutex
	failNext   []int         // statuses to answer, one per call
	retryAfter string        // Retry-After sent with a 429
	hang       time.Duration // how long every call hangs before it is served
	loseNext   int           // calls to serve but never answer
	release    chan struct{}
}

// LoseNextAnswers serves the next n calls (the vendor acts on them) but
// never answers, like a connection that dies after the vendor committed:
// the client times out without knowing the call succeeded.
func (t *Trouble) LoseNextAnswers(n int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.loseNext += n
}

func (t *Trouble) takeLose() (bool, chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.loseNext == 0 {
		return false, nil
	}
	t.loseNext--
	return true, t.release
}

// StopHanging ends the hang for later calls and cuts the calls hanging now
// off without an answer, as a vendor recovering from an outage would.
func (t *Trouble) StopHanging() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.hang = 0
	close(t.release)
	t.release = make(chan struct{})
}

func newTrouble() *Trouble { return &Trouble{release: make(chan struct{})} }

// FailNext answers the next calls with these statuses, one per call.
func (t *Trouble) FailNext(statuses ...int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.failNext = append(t.failNext, statuses...)
}

// RateLimitNext answers the next n calls 429 with Retry-After.
func (t *Trouble) RateLimitNext(n int, retryAfter string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.retryAfter = retryAfter
	for range n {
		t.failNext = append(t.failNext, http.StatusTooManyRequests)
	}
}

// Hang makes every call wait d before it is served (0 stops hanging).
func (t *Trouble) Hang(d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.hang = d
}

// intercept applies planned trouble; true means the call was answered.
func (t *Trouble) intercept(w http.ResponseWriter, r *http.Request) bool {
	t.mu.Lock()
	hang, release := t.hang, t.release
	t.mu.Unlock()
	if hang > 0 {
		timer := time.NewTimer(hang)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-r.Context().Done():
			return true
		case <-release:
			panic(http.ErrAbortHandler) // drop the connection unanswered
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.failNext) == 0 {
		return false
	}
	status := t.failNext[0]
	t.failNext = t.failNext[1:]
	if status == http.StatusTooManyRequests && t.retryAfter != "" {
		w.Header().Set("Retry-After", t.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":"planned failure %d","token":"token=fake-secret-value"}`, status)
	return true
}

// close stops every hang so the server can shut down.
func (t *Trouble) close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	select {
	case <-t.release:
	default:
		close(t.release)
	}
}

// ZendeskTicket is a ticket as the fake desk holds it.
type ZendeskTicket struct {
	ID         int64
	Subject    string
	Priority   string
	Tags       []string
	ExternalID string
	Requester  struct{ Email, Name string }
	Status     string
	Comments   []ZendeskComment
	CreatedAt  time.Time
}

// ZendeskComment is one comment; the first is the ticket's description.
type ZendeskComment struct {
	Body   string
	Public bool
	At     time.Time
}

// Zendesk is the fake desk.
type Zendesk struct {
	*Trouble
	Server *httptest.Server
	Email  string
	Token  string

	mu       sync.Mutex
	nextID   int64
	tickets  map[int64]*ZendeskTicket
	idem     map[string]idemEntry
	posts    int
	puts     int
	idemHits int
	changed  chan struct{}
}

type idemEntry struct {
	payload []byte
	status  int
	answer  []byte
}

// NewZendesk starts a fake desk that accepts email/token credentials.
func NewZendesk(t testing.TB, email, token string) *Zendesk {
	z := &Zendesk{Trouble: newTrouble(), Email: email, Token: token, nextID: 1000,
		tickets: map[int64]*ZendeskTicket{}, idem: map[string]idemEntry{}, changed: make(chan struct{})}
	z.Server = httptest.NewServer(http.HandlerFunc(z.serve))
	t.Cleanup(func() { z.close(); z.Server.Close() })
	return z
}

// URL is the base URL to use as ZENDESK_BASE_URL.
func (z *Zendesk) URL() string { return z.Server.URL }

func (z *Zendesk) serve(w http.ResponseWriter, r *http.Request) {
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(z.Email+"/token:"+z.Token))
	if r.Header.Get("Authorization") != want {
		http.Error(w, `{"error":"Couldn't authenticate you"}`, http.StatusUnauthorized)
		return
	}
	body, _ := io.ReadAll(r.Body)
	if z.intercept(w, r) {
		return
	}
	if lose, release := z.takeLose(); lose {
		z.route(httptest.NewRecorder(), r, body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
		panic(http.ErrAbortHandler)
	}
	z.route(w, r, body)
}

func (z *Zendesk) route(w http.ResponseWriter, r *http.Request, body []byte) {
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/v2/tickets.json":
		z.create(w, r, body)
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/api/v2/tickets/") && strings.HasSuffix(r.URL.Path, ".json"):
		id, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/api/v2/tickets/"), ".json"), 10, 64)
		if err != nil {
			http.Error(w, `{"error":"InvalidEndpoint"}`, http.StatusNotFound)
			return
		}
		z.update(w, id, body)
	default:
		http.Error(w, `{"error":"InvalidEndpoint"}`, http.StatusNotFound)
	}
}

type wireTicket struct {
	Ticket struct {
		Subject string `json:"subject"`
		Comment *struct {
			Body   string `json:"body"`
			Public *bool  `json:"public"`
		} `json:"comment"`
		Requester *struct {
			Email string `json:"email"`
			Name  string `json:"name"`
		} `json:"requester"`
		Priority   string   `json:"priority"`
		Tags       []string `json:"tags"`
		ExternalID string   `json:"external_id"`
		Status     string   `json:"status"`
	} `json:"ticket"`
}

// create follows Zendesk's Idempotency-Key rules: a repeated key with the
// same payload gets the first answer back (x-idempotency-lookup: hit), a
// repeated key with another payload is refused.
func (z *Zendesk) create(w http.ResponseWriter, r *http.Request, body []byte) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.posts++
	key := r.Header.Get("Idempotency-Key")
	if key != "" {
		if e, ok := z.idem[key]; ok {
			if !bytes.Equal(e.payload, body) {
				writeJSON(w, http.StatusBadRequest, map[string]any{"error": "IdempotentRequestError",
					"description": "Request parameters differ from the original request with this Idempotency-Key"})
				return
			}
			z.idemHits++
			w.Header().Set("x-idempotency-lookup", "hit")
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(e.status)
			_, _ = w.Write(e.answer)
			return
		}
	}
	var in wireTicket
	if err := json.Unmarshal(body, &in); err != nil || in.Ticket.Comment == nil || in.Ticket.Comment.Body == "" {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": "RecordInvalid", "description": "comment body required"})
		return
	}
	z.nextID++
	t := &ZendeskTicket{ID: z.nextID, Subject: in.Ticket.Subject, Priority: in.Ticket.Priority, Tags: in.Ticket.Tags,
		ExternalID: in.Ticket.ExternalID, Status: "new", CreatedAt: time.Now()}
	if in.Ticket.Requester != nil {
		t.Requester.Email, t.Requester.Name = in.Ticket.Requester.Email, in.Ticket.Requester.Name
	}
	public := in.Ticket.Comment.Public == nil || *in.Ticket.Comment.Public
	t.Comments = append(t.Comments, ZendeskComment{Body: in.Ticket.Comment.Body, Public: public, At: time.Now()})
	z.tickets[t.ID] = t
	answer, _ := json.Marshal(map[string]any{"ticket": map[string]any{"id": t.ID, "status": t.Status, "external_id": t.ExternalID}})
	if key != "" {
		z.idem[key] = idemEntry{payload: body, status: http.StatusCreated, answer: answer}
	}
	z.notify()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(answer)
}

func (z *Zendesk) update(w http.ResponseWriter, id int64, body []byte) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.puts++
	t, ok := z.tickets[id]
	if !ok {
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "RecordNotFound", "description": "Not found"})
		return
	}
	if t.Status == "closed" {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": "RecordInvalid",
			"details": map[string]any{"status": []map[string]string{{"description": "Status: closed prevents ticket update"}}}})
		return
	}
	var in wireTicket
	if err := json.Unmarshal(body, &in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "InvalidJSON"})
		return
	}
	if c := in.Ticket.Comment; c != nil {
		public := c.Public == nil || *c.Public
		t.Comments = append(t.Comments, ZendeskComment{Body: c.Body, Public: public, At: time.Now()})
	}
	if in.Ticket.Status != "" {
		t.Status = in.Ticket.Status
	}
	z.notify()
	writeJSON(w, http.StatusOK, map[string]any{"ticket": map[string]any{"id": t.ID, "status": t.Status}})
}

// notify wakes waiters; called with z.mu held.
func (z *Zendesk) notify() {
	close(z.changed)
	z.changed = make(chan struct{})
}

// Close marks a ticket closed, as Zendesk does some days after solved.
func (z *Zendesk) Close(id int64) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if t, ok := z.tickets[id]; ok {
		t.Status = "closed"
	}
}

// Tickets returns copies of every ticket, in id order.
func (z *Zendesk) Tickets() []ZendeskTicket {
	z.mu.Lock()
	defer z.mu.Unlock()
	out := make([]ZendeskTicket, 0, len(z.tickets))
	for id := int64(1001); id <= z.nextID; id++ {
		if t, ok := z.tickets[id]; ok {
			c := *t
			c.Comments = append([]ZendeskComment(nil), t.Comments...)
			out = append(out, c)
		}
	}
	return out
}

// Counts returns POST and PUT calls that reached the desk logic and how
// many POSTs were answered from the idempotency store.
func (z *Zendesk) Counts() (posts, puts, idemHits int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.posts, z.puts, z.idemHits
}

// WaitFor waits until cond holds over the tickets, failing the test at the
// deadline. It wakes on every change instead of polling.
func (z *Zendesk) WaitFor(t testing.TB, timeout time.Duration, what string, cond func([]ZendeskTicket) bool) []ZendeskTicket {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		z.mu.Lock()
		ch := z.changed
		z.mu.Unlock()
		if ts := z.Tickets(); cond(ts) {
			return ts
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("zendesk: timed out after %s waiting for %s; tickets: %+v", timeout, what, z.Tickets())
			return nil
		}
	}
}

// SlackMessage is one accepted webhook post.
type SlackMessage struct {
	At     time.Time
	Text   string
	Blocks []json.RawMessage
	Raw    []byte
}

// Slack is the fake incoming webhook.
type Slack struct {
	*Trouble
	Server *httptest.Server
	// Path is the secret part of the webhook URL.
	Path string

	mu       sync.Mutex
	messages []SlackMessage
	calls    int
	changed  chan struct{}
}

// NewSlack starts a fake webhook at a random secret path.
func NewSlack(t testing.TB, secretPath string) *Slack {
	s := &Slack{Trouble: newTrouble(), Path: secretPath, changed: make(chan struct{})}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(func() { s.close(); s.Server.Close() })
	return s
}

// URL is the webhook URL (SLACK_WEBHOOK_URL).
func (s *Slack) URL() string { return s.Server.URL + s.Path }

func (s *Slack) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s.mu.Lock()
	s.calls++
	s.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != s.Path {
		http.Error(w, "no_service", http.StatusNotFound)
		return
	}
	if s.intercept(w, r) {
		return
	}
	var m struct {
		Text   string            `json:"text"`
		Blocks []json.RawMessage `json:"blocks"`
	}
	if err := json.Unmarshal(body, &m); err != nil || (m.Text == "" && len(m.Blocks) == 0) {
		http.Error(w, "invalid_payload", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	s.messages = append(s.messages, SlackMessage{At: time.Now(), Text: m.Text, Blocks: m.Blocks, Raw: body})
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	_, _ = io.WriteString(w, "ok")
}

// Messages returns the accepted messages in arrival order.
func (s *Slack) Messages() []SlackMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]SlackMessage(nil), s.messages...)
}

// Calls counts every request, accepted or not.
func (s *Slack) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// WaitFor waits until cond holds over the accepted messages.
func (s *Slack) WaitFor(t testing.TB, timeout time.Duration, what string, cond func([]SlackMessage) bool) []SlackMessage {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if ms := s.Messages(); cond(ms) {
			return ms
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("slack: timed out after %s waiting for %s; got %d messages", timeout, what, len(s.Messages()))
			return nil
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
