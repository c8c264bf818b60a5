// Package naive is the baseline the load benchmark compares Launch Ready
// with: the Stripe webhook endpoint as a founder's app first writes it.
// One HTTP handler verifies the signature, writes Postgres, then calls the
// CRM and the support desk inline, and only then answers Stripe. Every
// vendor millisecond is a millisecond Stripe waits, and a slow vendor
// holds a request (and a connection) for all of it.
//
// It is written fairly: the same signature check and normalisation as
// ingress, a pooled database, keep-alive HTTP clients, an idempotent
// insert so a Stripe retry is not applied twice.
package naive

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Config is where the baseline writes and whom it calls.
type Config struct {
	DatabaseURL   string
	WebhookSecret string
	HubSpotURL    string
	HubSpotToken  string
	ZendeskURL    string
	ZendeskEmail  string
	ZendeskToken  string
	SlackURL      string
	// MaxConns sizes the pool (16 when 0).
	MaxConns int32
}

// Server is the handler.
type Server struct {
	cfg    Config
	pool   *pgxpool.Pool
	client *http.Client
}

const schema = `
CREATE TABLE IF NOT EXISTS naive_events (
    event_id    text PRIMARY KEY,
    event_type  text NOT NULL,
    customer_id text NOT NULL DEFAULT '',
    created     timestamptz,
    payload     jsonb NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS naive_customers (
    customer_id   text PRIMARY KEY,
    email         text NOT NULL DEFAULT '',
    status        text NOT NULL DEFAULT '',
    last_event_id text NOT NULL DEFAULT '',
    updated_at    timestamptz NOT NULL DEFAULT now()
);`

// New opens the database and creates the tables.
func New(ctx context.Context, cfg Config) (*Server, error) {
	pc, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("naive: database url: %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	if pc.MaxConns <= 0 {
		pc.MaxConns = 16
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("naive: open database: %w", err)
	}
	if _, err := pool.Exec(ctx, schema); err != nil {
		pool.Close()
		return nil, fmt.Errorf("naive: create tables: %w", err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 256
	return &Server{cfg: cfg, pool: pool, client: &http.Client{Transport: tr, Timeout: 30 * time.Second}}, nil
}

// Close releases the pool.
func (s *Server) Close() { s.pool.Close() }

// ServeHTTP handles POST /webhooks/stripe and GET /healthz.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" {
		w.WriteHeader(http.StatusOK)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, `{"error":"method not allowed"}`, http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, `{"error":"body too large"}`, http.StatusRequestEntityTooLarge)
		return
	}
	if err := stripeevent.Verify(body, r.Header.Get("Stripe-Signature"), []string{s.cfg.WebhookSecret}, 300*time.Second, time.Now()); err != nil {
		http.Error(w, `{"error":"bad signature"}`, http.StatusBadRequest)
		return
	}
	ev, err := stripeevent.Normalize(body)
	if err != nil {
		http.Error(w, `{"error":"malformed event"}`, http.StatusBadRequest)
		return
	}
	dup, err := s.store(r.Context(), ev, body)
	if err != nil {
		http.Error(w, `{"error":"database"}`, http.StatusInternalServerError)
		return
	}
	if !dup {
		// Inline, before answering: this is the founder's version.
		if err := s.sideEffects(r.Context(), ev); err != nil {
			http.Error(w, `{"error":"vendor"}`, http.StatusInternalServerError)
			return
		}
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"received":true}`)
}

func (s *Server) store(ctx context.Context, ev *billingv1.BillingEvent, raw []byte) (duplicate bool, err error) {
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO naive_events (event_id, event_type, customer_id, created, payload)
			VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING`,
			ev.GetEventId(), ev.GetType(), ev.GetCustomerId(), ev.GetCreated().AsTime(), raw)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			duplicate = true
			return nil
		}
		if ev.GetCustomerId() == "" {
			return nil
		}
		_, err = tx.Exec(ctx, `INSERT INTO naive_customers (customer_id, email, status, last_event_id) VALUES ($1, $2, $3, $4)
			ON CONFLICT (customer_id) DO UPDATE SET
			  email = CASE WHEN EXCLUDED.email <> '' THEN EXCLUDED.email ELSE naive_customers.email END,
			  status = CASE WHEN EXCLUDED.status <> '' THEN EXCLUDED.status ELSE naive_customers.status END,
			  last_event_id = EXCLUDED.last_event_id, updated_at = now()`,
			ev.GetCustomerId(), ev.GetEmail(), ev.GetStatus(), ev.GetEventId())
		return err
	})
	return duplicate, err
}

// alerting events open a ticket and post to Slack, as support-notify's
// defaults do.
var alerting = map[string]bool{
	"invoice.payment_failed": true, "charge.dispute.created": true,
	"customer.subscription.deleted": true, "charge.refunded": true,
}

func (s *Server) sideEffects(ctx context.Context, ev *billingv1.BillingEvent) error {
	if cus := ev.GetCustomerId(); cus != "" {
		props := map[string]string{"billing_status": ev.GetStatus()}
		body, _ := json.Marshal(map[string]any{"inputs": []any{map[string]any{
			"idProperty": "stripe_customer_id", "id": cus, "properties": props}}})
		if err := s.post(ctx, s.cfg.HubSpotURL+"/crm/v3/objects/contacts/batch/upsert", body, "Bearer "+s.cfg.HubSpotToken); err != nil {
			return err
		}
	}
	if !alerting[ev.GetType()] {
		return nil
	}
	ticket, _ := json.Marshal(map[string]any{"ticket": map[string]any{
		"subject": ev.GetType() + " " + ev.GetCustomerId(), "external_id": ev.GetEventId(),
		"comment": map[string]any{"body": "Stripe event " + ev.GetEventId(), "public": false}}})
	auth := "Basic " + base64.StdEncoding.EncodeToString([]byte(s.cfg.ZendeskEmail+"/token:"+s.cfg.ZendeskToken))
	if err := s.post(ctx, s.cfg.ZendeskURL+"/api/v2/tickets.json", ticket, auth); err != nil {
		return err
	}
	alert, _ := json.Marshal(map[string]any{"text": ev.GetType() + " " + ev.GetEventId()})
	return s.post(ctx, s.cfg.SlackURL, alert, "")
}

func (s *Server) post(ctx context.Context, url string, body []byte, auth string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode/100 != 2 {
		return errors.New(resp.Status)
	}
	return nil
}
