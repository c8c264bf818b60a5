package fakes

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"time"

	"github.com/launchready/launchready/services/support-notify/slackfake"
)

// Message is one alert Slack accepted.
type Message struct {
	At      time.Time
	Text    string
	EventID string // the first Stripe event id named in the message, if any
	// EventIDs are every event id the message names: one for an alert
	// alone, all of them for a digest.
	EventIDs []string
	Raw      []byte
}

// Slack is a fake incoming webhook at a secret path.
type Slack struct {
	base
	path string
	srv  *httptest.Server
	// Pace answers 429 with Retry-After to messages that come faster than
	// its interval, as Slack does (off until SetPace).
	Pace *slackfake.Pacer

	smu      sync.Mutex
	messages []Message
}

// NewSlack serves a webhook at secretPath (e.g. "/services/T0/B0/xyz").
func NewSlack(secretPath string) *Slack {
	s := &Slack{base: newBase(), path: secretPath, Pace: slackfake.NewPacer(0)}
	s.srv = httptest.NewServer(s.serve(http.HandlerFunc(s.route)))
	return s
}

// SetPace makes the webhook take one message per interval, as Slack takes
// about one a second.
func (s *Slack) SetPace(interval time.Duration) { s.Pace.SetInterval(interval) }

// URL is the webhook URL for SLACK_WEBHOOK_URL.
func (s *Slack) URL() string { return s.srv.URL + s.path }

// Close stops the server.
func (s *Slack) Close() { closeServer(s.srv) }

var eventIDRE = regexp.MustCompile(`evt_[A-Za-z0-9_]+`)

func (s *Slack) route(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if r.Method != http.MethodPost || r.URL.Path != s.path {
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
	s.smu.Lock()
	s.messages = append(s.messages, Message{At: time.Now(), Text: m.Text, EventID: first, EventIDs: ids, Raw: body})
	s.smu.Unlock()
	_, _ = io.WriteString(w, "ok")
}

// Messages returns the accepted messages in arrival order.
func (s *Slack) Messages() []Message {
	s.smu.Lock()
	defer s.smu.Unlock()
	return append([]Message(nil), s.messages...)
}

// ByEvent groups accepted messages by the event ids they name; a digest
// counts once for each of its events.
func (s *Slack) ByEvent() map[string][]Message {
	out := map[string][]Message{}
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
