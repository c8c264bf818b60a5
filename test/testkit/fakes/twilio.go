package fakes

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"time"
)

// SMS is one message the fake Twilio accepted.
type SMS struct {
	At       time.Time
	SID      string
	From     string
	To       string
	Body     string
	EventIDs []string // every Stripe event id the text names
}

// Twilio is a fake of Twilio's Messages API
// (POST /2010-04-01/Accounts/{AccountSid}/Messages.json), checking HTTP
// basic auth with the account SID and auth token it was made with, and
// answering 201 with the created message as Twilio does.
type Twilio struct {
	faults
	AccountSID string
	AuthToken  string
	srv        *httptest.Server
	inbox      *inbox[SMS]
}

// NewTwilio serves a fake account with generated credentials.
func NewTwilio() *Twilio {
	t := &Twilio{faults: newFaults(), AccountSID: "AC" + randomHex(16), AuthToken: randomHex(16), inbox: newInbox[SMS]()}
	t.srv = httptest.NewServer(t.serve(http.HandlerFunc(t.route)))
	return t
}

// URL is the API base for TWILIO_API_BASE.
func (t *Twilio) URL() string { return t.srv.URL }

// Close stops the server.
func (t *Twilio) Close() { closeServer(&t.faults, t.srv) }

func (t *Twilio) route(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.Method == http.MethodGet && r.URL.Path == "/2010-04-01/Accounts/"+t.AccountSID+".json" {
		if !t.authorized(r) {
			twilioError(w, http.StatusUnauthorized, 20003, "Authenticate")
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"sid": t.AccountSID, "status": "active"})
		return
	}
	if r.Method != http.MethodPost || r.URL.Path != "/2010-04-01/Accounts/"+t.AccountSID+"/Messages.json" {
		twilioError(w, http.StatusNotFound, 20404, "The requested resource was not found")
		return
	}
	if !t.authorized(r) {
		twilioError(w, http.StatusUnauthorized, 20003, "Authenticate")
		return
	}
	if err := r.ParseForm(); err != nil {
		twilioError(w, http.StatusBadRequest, 21602, "Message body is required.")
		return
	}
	form := r.PostForm
	from := form.Get("From")
	if from == "" {
		from = form.Get("MessagingServiceSid")
	}
	switch {
	case form.Get("Body") == "":
		twilioError(w, http.StatusBadRequest, 21602, "Message body is required.")
		return
	case form.Get("To") == "":
		twilioError(w, http.StatusBadRequest, 21604, "A 'To' phone number is required.")
		return
	case from == "":
		twilioError(w, http.StatusBadRequest, 21603, "A 'From' phone number is required.")
		return
	}
	m := SMS{At: time.Now(), SID: "SM" + randomHex(16), From: from, To: form.Get("To"), Body: form.Get("Body"),
		EventIDs: eventIDRE.FindAllString(form.Get("Body"), -1)}
	t.inbox.add(m)
	w.WriteHeader(http.StatusCreated)
	_ = json.NewEncoder(w).Encode(map[string]any{"sid": m.SID, "account_sid": t.AccountSID, "to": m.To, "from": m.From,
		"body": m.Body, "status": "queued", "num_segments": "1"})
}

func (t *Twilio) authorized(r *http.Request) bool {
	u, p, ok := r.BasicAuth()
	return ok && u == t.AccountSID && p == t.AuthToken
}

func twilioError(w http.ResponseWriter, status, code int, msg string) {
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg, "status": status,
		"more_info": "https://www.twilio.com/docs/errors/" + url.PathEscape(fmt.Sprint(code))})
}

// Messages returns the accepted messages in arrival order.
func (t *Twilio) Messages() []SMS { return t.inbox.all() }

// WaitFor waits until cond holds over the accepted messages, failing tb at
// the deadline. It wakes on every accepted message.
func (t *Twilio) WaitFor(tb TB, timeout time.Duration, what string, cond func([]SMS) bool) []SMS {
	tb.Helper()
	return t.inbox.waitFor(tb, "twilio", timeout, what, cond)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
