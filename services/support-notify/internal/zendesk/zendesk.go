// Package zendesk opens and updates tickets through the Zendesk Tickets API
// (https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/),
// authenticated with an API token ("email/token:apitoken" basic auth).
package zendesk

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/vendorhttp"
)

// Config locates and authenticates the account.
type Config struct {
	// BaseURL is https://<subdomain>.zendesk.com unless overridden.
	BaseURL  string
	Email    string
	APIToken config.Secret
}

// NewTicket is what a ticket is created with.
type NewTicket struct {
	Subject        string
	Body           string
	Tags           []string
	Priority       string // low, normal, high, urgent
	ExternalID     string // the Stripe event id
	RequesterEmail string
	RequesterName  string
}

// ErrTicketGone means the ticket cannot take comments any more: deleted, or
// closed (Zendesk refuses updates to closed tickets). The caller opens a
// follow-up instead.
var ErrTicketGone = errors.New("ticket deleted or closed")

// Client calls the Tickets API.
type Client struct {
	base   string
	auth   string
	client *vendorhttp.Client
}

// New returns a client that calls through client.
func New(cfg Config, client *vendorhttp.Client) *Client {
	cred := cfg.Email + "/token:" + cfg.APIToken.Reveal()
	return &Client{
		base:   strings.TrimRight(cfg.BaseURL, "/"),
		auth:   "Basic " + base64.StdEncoding.EncodeToString([]byte(cred)),
		client: client,
	}
}

type comment struct {
	Body string `json:"body"`
	// Tickets and comments are internal notes: the requester is the
	// customer, and a public comment would email them our ops wording.
	Public bool `json:"public"`
}

type requester struct {
	Email string `json:"email"`
	Name  string `json:"name,omitempty"`
}

type ticketBody struct {
	Subject    string     `json:"subject,omitempty"`
	Comment    *comment   `json:"comment,omitempty"`
	Requester  *requester `json:"requester,omitempty"`
	Priority   string     `json:"priority,omitempty"`
	Tags       []string   `json:"tags,omitempty"`
	ExternalID string     `json:"external_id,omitempty"`
	Status     string     `json:"status,omitempty"`
}

type envelope struct {
	Ticket ticketBody `json:"ticket"`
}

// CreateTicket opens a ticket and returns its id. idempotencyKey makes a
// repeat of the same call (after a crash between the call and our commit)
// return the first ticket instead of opening a second one; Zendesk keeps
// keys for two hours and requires the repeat to carry the same payload.
func (c *Client) CreateTicket(ctx context.Context, t NewTicket, idempotencyKey string) (int64, error) {
	body := ticketBody{
		Subject:    t.Subject,
		Comment:    &comment{Body: t.Body},
		Priority:   t.Priority,
		Tags:       t.Tags,
		ExternalID: t.ExternalID,
	}
	if t.RequesterEmail != "" {
		name := t.RequesterName
		if name == "" {
			name = t.RequesterEmail
		}
		body.Requester = &requester{Email: t.RequesterEmail, Name: name}
	}
	resp, err := c.send(ctx, http.MethodPost, "/api/v2/tickets.json", body, idempotencyKey, "create ticket")
	if err != nil {
		return 0, err
	}
	var out struct {
		Ticket struct {
			ID int64 `json:"id"`
		} `json:"ticket"`
	}
	if err := json.Unmarshal(resp, &out); err != nil || out.Ticket.ID == 0 {
		// A 2xx without a ticket id is a vendor hiccup; the retry replays
		// the idempotency key and gets the answer again.
		return 0, fmt.Errorf("zendesk create ticket: answer has no ticket id")
	}
	return out.Ticket.ID, nil
}

// AddComment adds an internal note to ticket id, and solves it when solve
// is set. It returns ErrTicketGone when the ticket was deleted or closed.
func (c *Client) AddComment(ctx context.Context, id int64, text string, solve bool, idempotencyKey string) error {
	body := ticketBody{Comment: &comment{Body: text}}
	if solve {
		body.Status = "solved"
	}
	_, err := c.send(ctx, http.MethodPut, "/api/v2/tickets/"+strconv.FormatInt(id, 10)+".json", body, idempotencyKey, "update ticket "+strconv.FormatInt(id, 10))
	if err == nil {
		return nil
	}
	var se *vendorhttp.StatusError
	if errors.As(err, &se) && (se.Status == http.StatusNotFound ||
		(se.Status == http.StatusUnprocessableEntity && strings.Contains(strings.ToLower(se.Body), "closed"))) {
		return fmt.Errorf("zendesk update ticket %d: %w", id, ErrTicketGone)
	}
	return err
}

func (c *Client) send(ctx context.Context, method, path string, body ticketBody, idempotencyKey, op string) ([]byte, error) {
	b, err := json.Marshal(envelope{Ticket: body})
	if err != nil {
		return nil, fmt.Errorf("zendesk %s: encode: %w", op, err)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("zendesk %s: build request: %w", op, err)
	}
	req.Header.Set("Authorization", c.auth)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if idempotencyKey != "" {
		req.Header.Set("Idempotency-Key", idempotencyKey)
	}
	return c.client.Send(ctx, op, req)
}
