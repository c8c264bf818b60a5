package store

import (
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/launchready/launchready/pkg/pg"
)

// Intent is a ticket creation committed before the Zendesk call: the exact
// request and Idempotency-Key to replay if the call's outcome was lost.
type Intent struct {
	IdempotencyKey string
	ObjectKey      string
	EventID        string
	CustomerID     string
	Request        []byte // JSON
}

// RecordIntent stores an intent to create a ticket. Recording the same key
// again (after Zendesk refused it for good) makes it pending once more.
func RecordIntent(tx *pg.Tx, in Intent) {
	tx.Queue("record ticket intent for "+in.ObjectKey, `INSERT INTO `+q("ticket_intents")+` (idempotency_key, object_key, event_id, customer_id, request)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (idempotency_key) DO UPDATE SET object_key = EXCLUDED.object_key, event_id = EXCLUDED.event_id,
			customer_id = EXCLUDED.customer_id, request = EXCLUDED.request, abandoned_at = NULL
		WHERE `+q("ticket_intents")+`.ticket_id IS NULL`,
		in.IdempotencyKey, in.ObjectKey, in.EventID, in.CustomerID, string(in.Request))
}

// queuePendingIntents queues the read of the intents about any of keys
// whose ticket is not recorded yet, oldest first; readPendingIntents reads
// them back.
func queuePendingIntents(b *pgx.Batch, keys []string) {
	b.Queue(`SELECT idempotency_key, object_key, event_id, customer_id, request::text FROM `+q("ticket_intents")+`
		WHERE object_key = ANY($1) AND ticket_id IS NULL AND abandoned_at IS NULL ORDER BY created_at, idempotency_key`, keys)
}

func readPendingIntents(br pgx.BatchResults) ([]Intent, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, fmt.Errorf("look up ticket intents: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Intent, error) {
		var in Intent
		var req string
		err := r.Scan(&in.IdempotencyKey, &in.ObjectKey, &in.EventID, &in.CustomerID, &req)
		in.Request = []byte(req)
		return in, err
	})
	if err != nil {
		return nil, fmt.Errorf("look up ticket intents: %w", err)
	}
	return out, nil
}

// CompleteIntent records the ticket an intent opened.
func CompleteIntent(tx *pg.Tx, key string, ticketID int64) {
	tx.Queue("complete ticket intent "+key, `UPDATE `+q("ticket_intents")+` SET ticket_id = $2, done_at = now() WHERE idempotency_key = $1`, key, ticketID)
}

// AbandonIntent gives up an intent Zendesk refuses for good.
func AbandonIntent(tx *pg.Tx, key string) {
	tx.Queue("abandon ticket intent "+key, `UPDATE `+q("ticket_intents")+` SET abandoned_at = now() WHERE idempotency_key = $1`, key)
}
