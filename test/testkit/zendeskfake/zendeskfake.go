// Package zendeskfake is a Zendesk Tickets API held in memory, for tests:
// API-token authentication, ticket create (with Zendesk's Idempotency-Key
// rules) and update (comments, status; a closed ticket refuses updates).
// It injects no failures itself: the service's tests and the system tests
// each wrap it in their own fault injection.
package zendeskfake

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Ticket is a ticket as the desk holds it.
type Ticket struct {
	ID         int64
	Subject    string
	Priority   string
	Tags       []string
	ExternalID string
	Requester  struct{ Email, Name string }
	Status     string
	// Comments start with the ticket's description.
	Comments  []Comment
	CreatedAt time.Time
}

// Comment is one comment on a ticket.
type Comment struct {
	Body   string
	Public bool
	At     time.Time
}

// Desk is the fake Tickets API; serve it with ServeHTTP, or check
// Authorized and call Route to put something in between.
type Desk struct {
	Email string
	Token string

	mu       sync.Mutex
	nextID   int64
	tickets  map[int64]*Ticket
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

// New returns a desk that accepts "email/token:token" basic auth.
func New(email, token string) *Desk {
	return &Desk{Email: email, Token: token, nextID: 1000,
		tickets: map[int64]*Ticket{}, idem: map[string]idemEntry{}, changed: make(chan struct{})}
}

// ServeHTTP checks the credentials and answers the request.
func (d *Desk) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !d.Authorized(r) {
		Unauthorized(w)
		return
	}
	body, _ := io.ReadAll(r.Body)
	d.Route(w, r, body)
}

// Authorized reports whether r carries the desk's credentials.
func (d *Desk) Authorized(r *http.Request) bool {
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(d.Email+"/token:"+d.Token))
	return r.Header.Get("Authorization") == want
}

// Unauthorized is Zendesk's answer to bad credentials.
func Unauthorized(w http.ResponseWriter) {
	writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "Couldn't authenticate you"})
}

// Route answers an authorised request whose body has been read.
func (d *Desk) Route(w http.ResponseWriter, r *http.Request, body []byte) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api/v2/users/me.json":
		// The cheapest authenticated read: who the credentials are.
		writeJSON(w, http.StatusOK, map[string]any{"user": map[string]any{"id": 1, "email": d.Email, "role": "admin"}})
	case r.Method == http.MethodPost && r.URL.Path == "/api/v2/tickets.json":
		d.create(w, r, body)
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/api/v2/tickets/") && strings.HasSuffix(r.URL.Path, ".json"):
		id, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/api/v2/tickets/"), ".json"), 10, 64)
		if err != nil {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": "InvalidEndpoint"})
			return
		}
		d.update(w, id, body)
	default:
		writeJSON(w, http.StatusNotFound, map[string]any{"error": "InvalidEndpoint"})
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
func (d *Desk) create(w http.ResponseWriter, r *http.Request, body []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.posts++
	key := r.Header.Get("Idempotency-Key")
	if e, ok := d.idem[key]; ok && key != "" {
		if !bytes.Equal(e.payload, body) {
			writeJSON(w, http.StatusBadRequest, map[string]any{"error": "IdempotentRequestError",
				"description": "Request parameters differ from the original request with this Idempotency-Key"})
			return
		}
		d.idemHits++
		w.Header().Set("x-idempotency-lookup", "hit")
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(e.status)
		_, _ = w.Write(e.answer)
		return
	}
	var in wireTicket
	if err := json.Unmarshal(body, &in); err != nil || in.Ticket.Comment == nil || in.Ticket.Comment.Body == "" {
		writeJSON(w, http.StatusUnprocessableEntity, map[string]any{"error": "RecordInvalid", "description": "comment body required"})
		return
	}
	d.nextID++
	t := &Ticket{ID: d.nextID, Subject: in.Ticket.Subject, Priority: in.Ticket.Priority, Tags: in.Ticket.Tags,
		ExternalID: in.Ticket.ExternalID, Status: "new", CreatedAt: time.Now()}
	if in.Ticket.Requester != nil {
		t.Requester.Email, t.Requester.Name = in.Ticket.Requester.Email, in.Ticket.Requester.Name
	}
	public := in.Ticket.Comment.Public == nil || *in.Ticket.Comment.Public
	t.Comments = append(t.Comments, Comment{Body: in.Ticket.Comment.Body, Public: public, At: time.Now()})
	d.tickets[t.ID] = t
	answer, _ := json.Marshal(map[string]any{"ticket": map[string]any{"id": t.ID, "status": t.Status, "external_id": t.ExternalID}})
	if key != "" {
		d.idem[key] = idemEntry{payload: body, status: http.StatusCreated, answer: answer}
	}
	d.notify()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(answer)
}

func (d *Desk) update(w http.ResponseWriter, id int64, body []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.puts++
	t, ok := d.tickets[id]
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
		t.Comments = append(t.Comments, Comment{Body: c.Body, Public: public, At: time.Now()})
	}
	if in.Ticket.Status != "" {
		t.Status = in.Ticket.Status
	}
	d.notify()
	writeJSON(w, http.StatusOK, map[string]any{"ticket": map[string]any{"id": t.ID, "status": t.Status}})
}

// notify wakes waiters; called with d.mu held.
func (d *Desk) notify() {
	close(d.changed)
	d.changed = make(chan struct{})
}

// Changed is closed at the desk's next change.
func (d *Desk) Changed() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.changed
}

// Close marks a ticket closed, as Zendesk does some days after solved.
func (d *Desk) Close(id int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if t, ok := d.tickets[id]; ok {
		t.Status = "closed"
	}
}

// Tickets returns copies of every ticket, in id order.
func (d *Desk) Tickets() []Ticket {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]Ticket, 0, len(d.tickets))
	for id := int64(1001); id <= d.nextID; id++ {
		if t, ok := d.tickets[id]; ok {
			c := *t
			c.Comments = append([]Comment(nil), t.Comments...)
			c.Tags = append([]string(nil), t.Tags...)
			out = append(out, c)
		}
	}
	return out
}

// Counts returns the POST and PUT calls that reached the desk and how many
// POSTs were answered from the idempotency store.
func (d *Desk) Counts() (posts, puts, idemHits int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.posts, d.puts, d.idemHits
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
