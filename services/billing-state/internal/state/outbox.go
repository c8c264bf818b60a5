package state

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
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
	// Pipelined (see pg.Tx): BEGIN travels with the claim, the mark
	// with COMMIT, so a pass costs two round trips.
	err := s.inTx(ctx, func(t *txn) error {
		done, failed = 0, nil
		batch, err := t.claimOutbox(limit)
		if err != nil {
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
			t.tx.Queue("mark outbox published", `UPDATE billing.outbox SET published_at = now() WHERE id = ANY($1)`, ids)
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

// claimOutbox locks up to limit unpublished rows, in id order, skipping
// rows another replica holds.
func (t *txn) claimOutbox(limit int) ([]OutboxRow, error) {
	br, err := t.tx.Send(t.ctx, func(b *pgx.Batch) {
		b.Queue(`SELECT id, customer_id, payload, created_at FROM billing.outbox
			WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
	})
	if err != nil {
		return nil, err
	}
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	var batch []OutboxRow
	for rows.Next() {
		var r OutboxRow
		if err := rows.Scan(&r.ID, &r.CustomerID, &r.Payload, &r.CreatedAt); err != nil {
			rows.Close()
			return nil, err
		}
		batch = append(batch, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	return batch, br.Close()
}

// PruneOutbox deletes up to limit rows published before olderThan ago,
// oldest first, and returns how many it deleted. A published row has done
// its work (the change's history is in audit_log); an unpublished one is
// never deleted, however old.
func (s *Store) PruneOutbox(ctx context.Context, olderThan time.Duration, limit int) (int, error) {
	tag, err := s.pool.Exec(ctx, `DELETE FROM billing.outbox WHERE id IN (
		SELECT id FROM billing.outbox WHERE published_at < now() - $1::interval ORDER BY id LIMIT $2)`, olderThan, limit)
	if err != nil {
		return 0, fmt.Errorf("prune outbox: %w", err)
	}
	return int(tag.RowsAffected()), nil
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
