package store

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/launchready/launchready/pkg/pg"
)

// ChargeCustomer is what support-notify knows of the payer of a charge or
// payment intent.
type ChargeCustomer struct {
	Ref        string // ch_... or pi_...
	CustomerID string // "" for a guest payment
	Email      string // the customer's, or the billing e-mail of a guest
	Name       string
	Source     string // the event id that taught it, or "stripe_api"
}

// learnSQL upserts links: a later one fills in what an earlier one lacked
// and never blanks a known value.
const learnSQL = `INSERT INTO ` + Schema + `.charge_customers AS c (ref, customer_id, email, name, source)
	SELECT DISTINCT ON (ref) * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS l(ref, customer_id, email, name, source)
	ON CONFLICT (ref) DO UPDATE SET
		customer_id = COALESCE(NULLIF(EXCLUDED.customer_id, ''), c.customer_id),
		email = COALESCE(NULLIF(EXCLUDED.email, ''), c.email),
		name = COALESCE(NULLIF(EXCLUDED.name, ''), c.name),
		updated_at = now()`

func learnArgs(links []ChargeCustomer) []any {
	n := len(links)
	refs, ids, emails, names, sources := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	for i, l := range links {
		refs[i], ids[i], emails[i], names[i], sources[i] = l.Ref, l.CustomerID, l.Email, l.Name, l.Source
	}
	return []any{refs, ids, emails, names, sources}
}

// LearnChargeCustomers records links at once.
func LearnChargeCustomers(ctx context.Context, db DB, links []ChargeCustomer) error {
	if len(links) == 0 {
		return nil
	}
	if _, err := db.Exec(ctx, learnSQL, learnArgs(links)...); err != nil {
		return fmt.Errorf("learn %d charge customers: %w", len(links), err)
	}
	return nil
}

// QueueLearnChargeCustomers records links with tx's next round trip.
func QueueLearnChargeCustomers(tx *pg.Tx, links []ChargeCustomer) {
	if len(links) > 0 {
		tx.Queue("learn charge customers", learnSQL, learnArgs(links)...)
	}
}

// ChargeCustomerOf returns the link of the first of refs that has one.
func ChargeCustomerOf(ctx context.Context, db DB, refs []string) (ChargeCustomer, bool, error) {
	var c ChargeCustomer
	err := db.QueryRow(ctx, `SELECT ref, customer_id, email, name, source FROM `+q("charge_customers")+`
		WHERE ref = ANY($1) ORDER BY array_position($1::text[], ref) LIMIT 1`, refs).Scan(&c.Ref, &c.CustomerID, &c.Email, &c.Name, &c.Source)
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return c, false, nil
	case err != nil:
		return c, false, fmt.Errorf("look up the customer of %v: %w", refs, err)
	}
	return c, true, nil
}

// AwaitingTicket is an open ticket whose customer was unknown when it
// opened.
type AwaitingTicket struct {
	ObjectKey string
	TicketID  int64
	Charge    string
}

// queueAwaiting queues the read of the open tickets waiting for the
// customer of any of refs; readAwaiting reads them back.
func queueAwaiting(b *pgx.Batch, refs []string) {
	b.Queue(`SELECT object_key, ticket_id, awaiting_charge FROM `+q("tickets")+`
		WHERE status = 'open' AND awaiting_charge = ANY($1) ORDER BY object_key`, refs)
}

func readAwaiting(br pgx.BatchResults) ([]AwaitingTicket, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("tickets awaiting a customer: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (AwaitingTicket, error) {
		var t AwaitingTicket
		return t, r.Scan(&t.ObjectKey, &t.TicketID, &t.Charge)
	})
	if err != nil {
		return nil, fmt.Errorf("tickets awaiting a customer: %w", err)
	}
	return out, nil
}

// TicketsAwaiting reads, with tx's queued statements, the open tickets
// waiting for the customer of any of refs.
func TicketsAwaiting(ctx context.Context, tx *pg.Tx, refs []string) ([]AwaitingTicket, error) {
	br, err := tx.Send(ctx, func(b *pgx.Batch) { queueAwaiting(b, refs) })
	if err != nil {
		return nil, err
	}
	defer br.Close()
	out, err := readAwaiting(br)
	if err != nil {
		return nil, err
	}
	return out, br.Close()
}

// ChargeLockKeys are the lock keys (LockObjects) of charges: an event that
// learns a charge's customer and one that marks a ticket as waiting for it
// take the same lock, so neither misses the other.
func ChargeLockKeys(refs []string) []string {
	out := make([]string, len(refs))
	for i, r := range refs {
		out[i] = "charge:" + r
	}
	return out
}

// AwaitCustomer marks the ticket about objectKey as waiting for the
// customer of charge.
func AwaitCustomer(tx *pg.Tx, objectKey, charge string) {
	tx.Queue("mark "+objectKey+" awaiting its customer", `UPDATE `+q("tickets")+` SET awaiting_charge = $2 WHERE object_key = $1 AND status = 'open'`, objectKey, charge)
}

// CustomerFound clears the wait of the ticket about objectKey.
func CustomerFound(tx *pg.Tx, objectKey string) {
	tx.Queue("clear the customer wait of "+objectKey, `UPDATE `+q("tickets")+` SET awaiting_charge = '', updated_at = now() WHERE object_key = $1 AND status = 'open'`, objectKey)
}
