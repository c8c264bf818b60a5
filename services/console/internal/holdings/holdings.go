// Package holdings reads what the other services hold about a customer:
// crm-sync's mirror and CRM ids, support-notify's tickets and alerts, and
// each consumer's processed_events. It reads through the console's reader
// pool (pg.ConsoleReaderRole), which may only SELECT, and it reads the
// services' tables as they are: it derives nothing they do not record.
package holdings

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Consumers, as their durables are named on BILLING_EVENTS.
const (
	BillingState  = "billing-state"
	CRMSync       = "crm-sync"
	SupportDesk   = "support-notify"
	SupportAlerts = "support-notify-alerts"
)

// CRM is what crm-sync holds for a customer.
type CRM struct {
	Known      bool
	Email      string
	Name       string
	UserID     string
	Deleted    bool
	LastEvent  string
	UpdatedAt  time.Time
	Contacts   []CRMRecord
	Deals      []CRMRecord
	LastSynced time.Time
}

// CRMRecord is one object crm-sync pushed to a CRM.
type CRMRecord struct {
	Provider     string
	CRMID        string
	Subscription string // a deal's subscription
	SyncedAt     time.Time
	LastEvent    string
}

// ReadCRM reads crm-sync's record of customer; Known is false when it has
// none.
func ReadCRM(ctx context.Context, db *pgxpool.Pool, customer string) (CRM, error) {
	var c CRM
	var updated *time.Time
	err := db.QueryRow(ctx, `SELECT email, name, user_id, deleted, last_event_id, updated_at FROM crm.customers WHERE customer_id = $1`, customer).
		Scan(&c.Email, &c.Name, &c.UserID, &c.Deleted, &c.LastEvent, &updated)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
	case err != nil:
		return CRM{}, fmt.Errorf("read crm customer %s: %w", customer, err)
	default:
		c.Known = true
		c.UpdatedAt = deref(updated)
	}
	read := func(sql string, sub bool) ([]CRMRecord, error) {
		rows, err := db.Query(ctx, sql, customer)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, func(r pgx.CollectableRow) (CRMRecord, error) {
			var rec CRMRecord
			var synced *time.Time
			var s string
			if err := r.Scan(&rec.Provider, &rec.CRMID, &s, &synced, &rec.LastEvent); err != nil {
				return rec, err
			}
			if sub {
				rec.Subscription = s
			}
			rec.SyncedAt = deref(synced)
			return rec, nil
		})
	}
	if c.Contacts, err = read(`SELECT provider, crm_id, '', synced_at, last_event_id FROM crm.contacts WHERE customer_id = $1 ORDER BY provider`, false); err != nil {
		return CRM{}, fmt.Errorf("read crm contacts of %s: %w", customer, err)
	}
	if c.Deals, err = read(`SELECT provider, crm_id, subscription_id, synced_at, last_event_id FROM crm.deals WHERE customer_id = $1 ORDER BY provider, subscription_id`, true); err != nil {
		return CRM{}, fmt.Errorf("read crm deals of %s: %w", customer, err)
	}
	for _, r := range append(append([]CRMRecord(nil), c.Contacts...), c.Deals...) {
		if r.SyncedAt.After(c.LastSynced) {
			c.LastSynced = r.SyncedAt
		}
	}
	c.Known = c.Known || len(c.Contacts) > 0 || len(c.Deals) > 0
	return c, nil
}

// Ticket is a support ticket support-notify opened for the customer.
type Ticket struct {
	TicketID  int64
	Object    string
	Priority  string
	Status    string
	OpenedBy  string
	LastEvent string
	CreatedAt time.Time
	UpdatedAt time.Time
}

// OpenTickets lists the customer's open tickets, newest first.
func OpenTickets(ctx context.Context, db *pgxpool.Pool, customer string) ([]Ticket, error) {
	rows, err := db.Query(ctx, `SELECT ticket_id, object_key, priority, status, opened_by_event, last_event_id, created_at, updated_at
		FROM support.tickets WHERE customer_id = $1 AND status = 'open' ORDER BY created_at DESC, id DESC`, customer)
	if err != nil {
		return nil, fmt.Errorf("read tickets of %s: %w", customer, err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Ticket, error) {
		var t Ticket
		err := r.Scan(&t.TicketID, &t.Object, &t.Priority, &t.Status, &t.OpenedBy, &t.LastEvent, &t.CreatedAt, &t.UpdatedAt)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("read tickets of %s: %w", customer, err)
	}
	return ts, nil
}

// Outcome is what one consumer did with one event, as it recorded it.
type Outcome struct {
	Consumer string
	Outcome  string
	At       time.Time
}

// Event is one event of a customer's timeline with every consumer's
// recorded outcome.
type Event struct {
	ID       string
	Type     string
	First    time.Time // the first time a consumer recorded it
	Outcomes []Outcome
}

// Timeline lists the events the consumers recorded for customer, newest
// first, at most limit, each with every consumer's outcome: the events
// billing-state and crm-sync recorded under the customer, the alerts and
// tickets support-notify raised for it, and any event named in also (such
// as the customer's dead letters).
func Timeline(ctx context.Context, db *pgxpool.Pool, customer string, also []string, limit int) ([]Event, error) {
	if limit <= 0 {
		limit = 200
	}
	rows, err := db.Query(ctx, `
		WITH ids AS (
			(SELECT event_id FROM billing.processed_events WHERE customer_id = $1 ORDER BY processed_at DESC LIMIT $3)
			UNION (SELECT event_id FROM crm.processed_events WHERE customer_id = $1 ORDER BY processed_at DESC LIMIT $3)
			UNION (SELECT event_id FROM support.alerts_sent WHERE customer_id = $1 ORDER BY sent_at DESC LIMIT $3)
			UNION (SELECT opened_by_event FROM support.tickets WHERE customer_id = $1)
			UNION (SELECT last_event_id FROM support.tickets WHERE customer_id = $1)
			UNION SELECT unnest($2::text[])
		)
		SELECT 'billing-state', event_id, event_type, outcome, processed_at FROM billing.processed_events WHERE event_id IN (SELECT event_id FROM ids)
		UNION ALL SELECT 'crm-sync', event_id, event_type, outcome, processed_at FROM crm.processed_events WHERE event_id IN (SELECT event_id FROM ids)
		UNION ALL SELECT consumer, event_id, event_type, outcome, processed_at FROM support.processed_events WHERE event_id IN (SELECT event_id FROM ids)`,
		customer, also, limit)
	if err != nil {
		return nil, fmt.Errorf("read the timeline of %s: %w", customer, err)
	}
	byID := map[string]*Event{}
	var rec struct {
		consumer, id, typ, outcome string
		at                         time.Time
	}
	_, err = pgx.ForEachRow(rows, []any{&rec.consumer, &rec.id, &rec.typ, &rec.outcome, &rec.at}, func() error {
		e := byID[rec.id]
		if e == nil {
			e = &Event{ID: rec.id, Type: rec.typ, First: rec.at}
			byID[rec.id] = e
		}
		if rec.at.Before(e.First) {
			e.First = rec.at
		}
		e.Outcomes = append(e.Outcomes, Outcome{Consumer: rec.consumer, Outcome: rec.outcome, At: rec.at})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the timeline of %s: %w", customer, err)
	}
	out := make([]Event, 0, len(byID))
	for _, e := range byID {
		sort.Slice(e.Outcomes, func(i, j int) bool {
			return consumerOrder(e.Outcomes[i].Consumer) < consumerOrder(e.Outcomes[j].Consumer)
		})
		out = append(out, *e)
	}
	sort.Slice(out, func(i, j int) bool {
		if !out[i].First.Equal(out[j].First) {
			return out[i].First.After(out[j].First)
		}
		return out[i].ID > out[j].ID
	})
	if len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// EventOutcomes is every consumer's recorded outcome of one event, and its
// type and customer as the consumers recorded them.
func EventOutcomes(ctx context.Context, db *pgxpool.Pool, eventID string) (Event, string, error) {
	rows, err := db.Query(ctx, `
		SELECT 'billing-state', event_type, customer_id, outcome, processed_at FROM billing.processed_events WHERE event_id = $1
		UNION ALL SELECT 'crm-sync', event_type, customer_id, outcome, processed_at FROM crm.processed_events WHERE event_id = $1
		UNION ALL SELECT consumer, event_type, '', outcome, processed_at FROM support.processed_events WHERE event_id = $1`, eventID)
	if err != nil {
		return Event{}, "", fmt.Errorf("read the outcomes of %s: %w", eventID, err)
	}
	e := Event{ID: eventID}
	var customer string
	var o Outcome
	var typ, cus string
	_, err = pgx.ForEachRow(rows, []any{&o.Consumer, &typ, &cus, &o.Outcome, &o.At}, func() error {
		if e.Type == "" {
			e.Type = typ
		}
		if customer == "" {
			customer = cus
		}
		if e.First.IsZero() || o.At.Before(e.First) {
			e.First = o.At
		}
		e.Outcomes = append(e.Outcomes, o)
		return nil
	})
	if err != nil {
		return Event{}, "", fmt.Errorf("read the outcomes of %s: %w", eventID, err)
	}
	sort.Slice(e.Outcomes, func(i, j int) bool {
		return consumerOrder(e.Outcomes[i].Consumer) < consumerOrder(e.Outcomes[j].Consumer)
	})
	return e, customer, nil
}

// CustomerOfSubscription finds the customer of a subscription in
// billing-state's tables, then crm-sync's; "" when neither knows it.
func CustomerOfSubscription(ctx context.Context, db *pgxpool.Pool, sub string) (string, error) {
	var cus string
	err := db.QueryRow(ctx, `SELECT customer_id FROM billing.subscriptions WHERE id = $1
		UNION ALL SELECT customer_id FROM crm.subscriptions WHERE subscription_id = $1 LIMIT 1`, sub).Scan(&cus)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("find the customer of %s: %w", sub, err)
	}
	return cus, nil
}

func consumerOrder(c string) int {
	switch c {
	case BillingState:
		return 0
	case CRMSync:
		return 1
	case SupportDesk:
		return 2
	case SupportAlerts:
		return 3
	}
	return 4
}

func deref(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return *t
}
