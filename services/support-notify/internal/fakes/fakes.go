// Package fakes runs stand-ins for Zendesk and Slack as real HTTP servers,
// for tests. They keep what they receive, implement the vendor semantics the
// service relies on (Zendesk's Idempotency-Key, closed tickets refusing
// updates), and can be told to fail, rate-limit or hang.
package fakes

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/services/support-notify/slackfake"
	"github.com/launchready/launchready/services/support-notify/zendeskfake"
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
type ZendeskTicket = zendeskfake.Ticket

// ZendeskComment is one comment; the first is the ticket's description.
type ZendeskComment = zendeskfake.Comment

// Zendesk is the fake desk (zendeskfake.Desk) behind the planned trouble.
type Zendesk struct {
	*Trouble
	*zendeskfake.Desk
	Server *httptest.Server
}

// NewZendesk starts a fake desk that accepts email/token credentials.
func NewZendesk(t testing.TB, email, token string) *Zendesk {
	z := &Zendesk{Trouble: newTrouble(), Desk: zendeskfake.New(email, token)}
	z.Server = httptest.NewServer(http.HandlerFunc(z.serve))
	t.Cleanup(func() { z.close(); z.Server.Close() })
	return z
}

// URL is the base URL to use as ZENDESK_BASE_URL.
func (z *Zendesk) URL() string { return z.Server.URL }

func (z *Zendesk) serve(w http.ResponseWriter, r *http.Request) {
	if !z.Authorized(r) {
		zendeskfake.Unauthorized(w)
		return
	}
	body, _ := io.ReadAll(r.Body)
	if z.intercept(w, r) {
		return
	}
	if lose, release := z.takeLose(); lose {
		z.Route(httptest.NewRecorder(), r, body)
		select {
		case <-r.Context().Done():
		case <-release:
		}
		panic(http.ErrAbortHandler)
	}
	z.Route(w, r, body)
}

// WaitFor waits until cond holds over the tickets, failing the test at the
// deadline. It wakes on every change instead of polling.
func (z *Zendesk) WaitFor(t testing.TB, timeout time.Duration, what string, cond func([]ZendeskTicket) bool) []ZendeskTicket {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		ch := z.Changed()
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

	// Pace answers 429 with Retry-After to messages that come faster than
	// its interval, as Slack does (off until SetPace).
	Pace *slackfake.Pacer

	mu       sync.Mutex
	messages []SlackMessage
	calls    int
	changed  chan struct{}
}

// SetPace makes the webhook take one message per interval, as Slack takes
// about one a second.
func (s *Slack) SetPace(interval time.Duration) { s.Pace.SetInterval(interval) }

// NewSlack starts a fake webhook at a random secret path.
func NewSlack(t testing.TB, secretPath string) *Slack {
	s := &Slack{Trouble: newTrouble(), Path: secretPath, changed: make(chan struct{}), Pace: slackfake.NewPacer(0)}
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
	if ok, retryAfter := s.Pace.Admit(time.Now()); !ok {
		w.Header().Set("Retry-After", retryAfter)
		http.Error(w, "rate_limited", http.StatusTooManyRequests)
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

// EventIDs returns the Stripe event ids a message names: one for an alert
// alone, every event of a digest.
func (m SlackMessage) EventIDs() []string { return eventIDRE.FindAllString(string(m.Raw), -1) }

var eventIDRE = regexp.MustCompile(`evt_[A-Za-z0-9_]+`)

// Calls counts every request, accepted or not.
func (s *Slack) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// WaitForCalls waits until the webhook has received n requests, accepted
// or not.
func (s *Slack) WaitForCalls(t testing.TB, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.Calls() < n {
		if time.Now().After(deadline) {
			t.Fatalf("slack: %d calls after 10s, want %d", s.Calls(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
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
