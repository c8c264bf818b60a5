package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/launchready/launchready/pkg/pg"
)

// CustomerObjects returns the objects a customer has an open ticket about
// or a ticket still pending creation for: what a resync re-sends, and the
// objects whose locks it takes.
func CustomerObjects(ctx context.Context, db DB, customerID string) ([]string, error) {
	var keys []string
	err := db.QueryRow(ctx, `SELECT coalesce(array_agg(DISTINCT k), '{}') FROM (
			SELECT object_key AS k FROM `+q("tickets")+` WHERE customer_id = $1 AND status = 'open'
			UNION SELECT object_key FROM `+q("ticket_intents")+` WHERE customer_id = $1 AND ticket_id IS NULL AND abandoned_at IS NULL) AS o`,
		customerID).Scan(&keys)
	if err != nil {
		return nil, fmt.Errorf("look up the objects of %s: %w", customerID, err)
	}
	return keys, nil
}

// OpenTicket is an open ticket with what a resync says about it.
type OpenTicket struct {
	Ticket
	LastEventID string
	OpenedAt    time.Time
	UpdatedAt   time.Time
}

// OpenTicketsAbout reads the open tickets about keys, after the queued
// writes (a ticket a replayed intent just recorded is among them).
func OpenTicketsAbout(ctx context.Context, tx *pg.Tx, keys []string) ([]OpenTicket, error) {
	rows, err := tx.Query(ctx, `SELECT object_key, ticket_id, status, priority, last_event_id, created_at, updated_at
		FROM `+q("tickets")+` WHERE object_key = ANY($1) AND status = 'open' ORDER BY object_key`, keys)
	if err != nil {
		return nil, fmt.Errorf("look up open tickets: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (OpenTicket, error) {
		var t OpenTicket
		err := r.Scan(&t.ObjectKey, &t.TicketID, &t.Status, &t.Priority, &t.LastEventID, &t.OpenedAt, &t.UpdatedAt)
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("look up open tickets: %w", err)
	}
	return out, nil
}
