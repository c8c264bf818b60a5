package fakes

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"time"
)

// Message is one alert Slack accepted.
type Message struct {
	At      time.Time
	Text    string
	EventID string // the Stripe event id named in the message, if any
	Raw     []byte
}

// Slack is a fake incoming webhook at a secret path.
type Slack struct {
	base
	path string
	srv  *httptest.Server

	smu      sync.Mutex
	messages []Message
}

// NewSlack serves a webhook at secretPath (e.g. "/services/T0/B0/xyz").
func NewSlack(secretPath string) *Slack {
	s := &Slack{base: newBase(), path: secretPath}
	s.srv = httptest.NewServer(s.serve(http.HandlerFunc(s.route)))
	return s
}

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
	s.smu.Lock()
	s.messages = append(s.messages, Message{At: time.Now(), Text: m.Text, EventID: eventIDRE.FindString(string(body)), Raw: body})
	s.smu.Unlock()
	_, _ = io.WriteString(w, "ok")
}

// Messages returns the accepted messages in arrival order.
func (s *Slack) Messages() []Message {
	s.smu.Lock()
	defer s.smu.Unlock()
	return append([]Message(nil), s.messages...)
}

// ByEvent groups accepted messages by the event id they name.
func (s *Slack) ByEvent() map[string][]Message {
	out := map[string][]Message{}
	for _, m := range s.Messages() {
		out[m.EventID] = append(out[m.EventID], m)
	}
	return out
}
