package state

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/launchready/launchready/pkg/pg"
)

// OutboxRow is one status change waiting to be published.
type OutboxRow struct {
	ID         int64
	CustomerID string
	// Payload is the CustomerStatus, protobuf-encoded.
	Payload   []byte
	CreatedAt time.Time
}

// PublishOutbox claims up to limit unpublished rows (skipping rows another
// replica holds), hands them to publish in id order and marks the ones it
// reports published: publish returns how many rows from the start went
// out, and the error that stopped it. A row whose publish fails stays
// pending, and so do the rows after it. A crash after publish and before
// the mark publishes the row again with the same message id, which
// JetStream's duplicate window drops. With asynchronous commits it
// publishes only rows already on disk (Options.Durable).
func (s *Store) PublishOutbox(ctx context.Context, limit int, publish func(context.Context, []OutboxRow) (int, error)) (int, error) {
	var done int
	var failed error
	err := pg.InTx(ctx, s.pool, func(tx pgx.Tx) error {
		done, failed = 0, nil
		rows, err := tx.Query(ctx, `SELECT id, customer_id, payload, created_at FROM billing.outbox
			WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
		if err != nil {
			return fmt.Errorf("claim outbox: %w", err)
		}
		var batch []OutboxRow
		for rows.Next() {
			var r OutboxRow
			if err := rows.Scan(&r.ID, &r.CustomerID, &r.Payload, &r.CreatedAt); err != nil {
				rows.Close()
				return fmt.Errorf("claim outbox: %w", err)
			}
			batch = append(batch, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return fmt.Errorf("claim outbox: %w", err)
		}
		if len(batch) == 0 {
			return nil
		}
		if s.durable != nil {
			// Publish nothing a crash of Postgres could still take back.
			if err := s.durable(ctx); err != nil {
				return fmt.Errorf("wait for the outbox rows to be durable: %w", err)
			}
		}
		sent, pubErr := publish(ctx, batch)
		sent = max(0, min(sent, len(batch)))
		ids := make([]int64, sent)
		for i, r := range batch[:sent] {
			ids[i] = r.ID
		}
		if len(ids) > 0 {
			if _, err := tx.Exec(ctx, `UPDATE billing.outbox SET published_at = now() WHERE id = ANY($1)`, ids); err != nil {
				return fmt.Errorf("mark outbox published: %w", err)
			}
		}
		done = len(ids)
		if pubErr != nil && len(ids) == 0 {
			return pubErr
		}
		failed = pubErr
		return nil
	})
	if err != nil {
		return 0, err
	}
	return done, failed
}

// OutboxPending returns the number of unpublished rows and the age of the
// oldest.
func (s *Store) OutboxPending(ctx context.Context) (int, time.Duration, error) {
	var n int
	var oldest *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT count(*), min(created_at) FROM billing.outbox WHERE published_at IS NULL`).Scan(&n, &oldest); err != nil {
		return 0, 0, fmt.Errorf("outbox pending: %w", err)
	}
	var age time.Duration
	if oldest != nil {
		age = s.now().Sub(*oldest)
	}
	return n, age, nil
}
