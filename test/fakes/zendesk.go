package fakes

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Ticket is a ticket as the fake desk holds it.
type Ticket struct {
	ID         int64
	Subject    string
	Priority   string
	Tags       []string
	ExternalID string
	Requester  string
	Status     string
	Comments   []string
	CreatedAt  time.Time
}

// Zendesk is a fake Zendesk Tickets API with API-token authentication.
type Zendesk struct {
	base
	Email string
	Token string
	srv   *httptest.Server

	zmu      sync.Mutex
	nextID   int64
	tickets  map[int64]*Ticket
	idem     map[string]idemEntry
	posts    int
	puts     int
	idemHits int
}

type idemEntry struct {
	payload []byte
	status  int
	answer  []byte
}

// NewZendesk serves a desk that accepts "email/token:token" basic auth.
func NewZendesk(email, token string) *Zendesk {
	z := &Zendesk{base: newBase(), Email: email, Token: token, nextID: 1000,
		tickets: map[int64]*Ticket{}, idem: map[string]idemEntry{}}
	z.srv = httptest.NewServer(z.serve(http.HandlerFunc(z.route)))
	return z
}

// URL is the base URL for ZENDESK_BASE_URL.
func (z *Zendesk) URL() string { return z.srv.URL }

// Close stops the server.
func (z *Zendesk) Close() { closeServer(z.srv) }

func (z *Zendesk) route(w http.ResponseWriter, r *http.Request) {
	want := "Basic " + base64.StdEncoding.EncodeToString([]byte(z.Email+"/token:"+z.Token))
	if r.Header.Get("Authorization") != want {
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "Couldn't authenticate you"})
		return
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(r.Body)
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/api/v2/tickets.json":
		z.create(w, r, body.Bytes())
	case r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/api/v2/tickets/") && strings.HasSuffix(r.URL.Path, ".json"):
		id, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/api/v2/tickets/"), ".json"), 10, 64)
		if err != nil {
			writeJSON(w, http.StatusNotFound, map[string]any{"error": "InvalidEndpoint"})
			return
		}
		z.update(w, id, body.Bytes())
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
// same payload gets the first answer back, with another payload a 400.
func (z *Zendesk) create(w http.ResponseWriter, r *http.Request, body []byte) {
	z.zmu.Lock()
	defer z.zmu.Unlock()
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
	t := &Ticket{ID: z.nextID, Subject: in.Ticket.Subject, Priority: in.Ticket.Priority, Tags: in.Ticket.Tags,
		ExternalID: in.Ticket.ExternalID, Status: "new", CreatedAt: time.Now(), Comments: []string{in.Ticket.Comment.Body}}
	if in.Ticket.Requester != nil {
		t.Requester = in.Ticket.Requester.Email
	}
	z.tickets[t.ID] = t
	answer, _ := json.Marshal(map[string]any{"ticket": map[string]any{"id": t.ID, "status": t.Status, "external_id": t.ExternalID}})
	if key != "" {
		z.idem[key] = idemEntry{payload: body, status: http.StatusCreated, answer: answer}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = w.Write(answer)
}

func (z *Zendesk) update(w http.ResponseWriter, id int64, body []byte) {
	z.zmu.Lock()
	defer z.zmu.Unlock()
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
		t.Comments = append(t.Comments, c.Body)
	}
	if in.Ticket.Status != "" {
		t.Status = in.Ticket.Status
	}
	writeJSON(w, http.StatusOK, map[string]any{"ticket": map[string]any{"id": t.ID, "status": t.Status}})
}

// Tickets returns copies of every ticket, in id order.
func (z *Zendesk) Tickets() []Ticket {
	z.zmu.Lock()
	defer z.zmu.Unlock()
	out := make([]Ticket, 0, len(z.tickets))
	for id := int64(1001); id <= z.nextID; id++ {
		if t, ok := z.tickets[id]; ok {
			c := *t
			c.Comments = append([]string(nil), t.Comments...)
			c.Tags = append([]string(nil), t.Tags...)
			out = append(out, c)
		}
	}
	return out
}

// Counts returns the POST and PUT calls that reached the desk and how many
// POSTs were answered from the idempotency store.
func (z *Zendesk) Counts() (posts, puts, idemHits int) {
	z.zmu.Lock()
	defer z.zmu.Unlock()
	return z.posts, z.puts, z.idemHits
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
