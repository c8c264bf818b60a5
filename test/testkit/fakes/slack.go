package fakes

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"time"

	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/slackfake"
)

// SlackMessage is one alert Slack accepted.
type SlackMessage struct {
	At      time.Time
	Text    string
	Blocks  []json.RawMessage
	EventID string // the first Stripe event id named in the message, if any
	// EventIDs are every event id the message names: one for an alert
	// alone, all of them for a digest.
	EventIDs []string
	Raw      []byte
}

// Slack is a fake incoming webhook at a secret path.
type Slack struct {
	faults
	// Path is the secret part of the webhook URL.
	Path string
	// Pace answers 429 with Retry-After to messages that come faster than
	// its interval, as Slack does (off until SetPace).
	Pace  *slackfake.Pacer
	srv   *httptest.Server
	inbox *inbox[SlackMessage]
}

// NewSlack serves a webhook at secretPath (e.g. "/services/T0/B0/xyz").
func NewSlack(secretPath string) *Slack {
	s := &Slack{faults: newFaults(), Path: secretPath, Pace: slackfake.NewPacer(0), inbox: newInbox[SlackMessage]()}
	s.srv = httptest.NewServer(s.serve(http.HandlerFunc(s.route)))
	return s
}

// SetPace makes the webhook take one message per interval, as Slack takes
// about one a second.
func (s *Slack) SetPace(interval time.Duration) { s.Pace.SetInterval(interval) }

// URL is the webhook URL for SLACK_WEBHOOK_URL.
func (s *Slack) URL() string { return s.srv.URL + s.Path }

// Close stops the server.
func (s *Slack) Close() { closeServer(&s.faults, s.srv) }

var eventIDRE = regexp.MustCompile(`evt_[A-Za-z0-9_]+`)

func (s *Slack) route(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.Method != http.MethodPost || r.URL.Path != s.Path {
		http.Error(w, "no_service", http.StatusNotFound)
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
	ids := eventIDRE.FindAllString(string(body), -1)
	first := ""
	if len(ids) > 0 {
		first = ids[0]
	}
	s.inbox.add(SlackMessage{At: time.Now(), Text: m.Text, Blocks: m.Blocks, EventID: first, EventIDs: ids, Raw: body})
	_, _ = io.WriteString(w, "ok")
}

// Messages returns the accepted messages in arrival order.
func (s *Slack) Messages() []SlackMessage { return s.inbox.all() }

// ByEvent groups accepted messages by the event ids they name; a digest
// counts once for each of its events.
func (s *Slack) ByEvent() map[string][]SlackMessage {
	out := map[string][]SlackMessage{}
	for _, m := range s.Messages() {
		if len(m.EventIDs) == 0 {
			out[""] = append(out[""], m)
		}
		for _, id := range m.EventIDs {
			out[id] = append(out[id], m)
		}
	}
	return out
}

// WaitForCalls waits until the webhook has received n requests, accepted
// or not.
func (s *Slack) WaitForCalls(t TB, n int) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, fmt.Sprintf("%d slack calls", n), func() bool { return s.CallCount() >= n })
}

// WaitFor waits until cond holds over the accepted messages, failing t at
// the deadline. It wakes on every accepted message instead of polling.
func (s *Slack) WaitFor(t TB, timeout time.Duration, what string, cond func([]SlackMessage) bool) []SlackMessage {
	t.Helper()
	return s.inbox.waitFor(t, "slack", timeout, what, cond)
}
