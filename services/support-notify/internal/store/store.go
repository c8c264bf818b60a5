// Package store is support-notify's Postgres schema ("support"): processed
// events, tickets by Stripe object, resolutions and sent alerts. Callers
// pass the transaction, so a ticket change and its processed_events row
// commit together.
package store

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/pkg/pg"
)

// Schema is the Postgres schema this service owns.
const Schema = "support"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the embedded migration files.
func Migrations() fs.FS { return pg.MigrationsIn(migrations, "migrations") }

// Migrate applies the embedded migrations to Schema.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pg.MigrateShared(ctx, pool, Schema, Migrations())
}

// q qualifies a table with the schema, so queries do not depend on the
// connection's search_path.
func q(table string) string { return Schema + "." + table }

// Ticket is an open or solved ticket about one object.
type Ticket struct {
	ObjectKey string
	TicketID  int64
	Status    string
	Priority  string
}

// LockObjects serialises work on the given objects across workers and
// replicas until tx ends. Keys are locked in sorted order so two events
// naming the same pair cannot deadlock.
func LockObjects(tx *pg.Tx, keys []string) {
	for _, k := range sortedUnique(keys) {
		tx.Queue("lock "+k, `SELECT pg_advisory_xact_lock(hashtextextended($1, 7))`, "support-notify:"+k)
	}
}

// Start is what a pass reads first, with the objects' locks: whether
// consumer already finished eventID, and the pending ticket intents about
// keys, oldest first. One round trip, with BEGIN and the locks.
//
// With refs, it also reads the open tickets waiting for the customer of
// those charges (awaiting), in the same round trip.
func Start(ctx context.Context, tx *pg.Tx, consumer, eventID string, keys, refs []string) (done bool, intents []Intent, awaiting []AwaitingTicket, err error) {
	br, err := tx.Send(ctx, func(b *pgx.Batch) {
		b.Queue(`SELECT EXISTS (SELECT 1 FROM `+q("processed_events")+` WHERE consumer = $1 AND event_id = $2)`, consumer, eventID)
		queuePendingIntents(b, keys)
		if len(refs) > 0 {
			queueAwaiting(b, refs)
		}
	})
	if err != nil {
		return false, nil, nil, err
	}
	defer br.Close()
	if err := br.QueryRow().Scan(&done); err != nil {
		return false, nil, nil, fmt.Errorf("look up processed %s: %w", eventID, err)
	}
	if intents, err = readPendingIntents(br); err != nil {
		return false, nil, nil, err
	}
	if len(refs) > 0 {
		if awaiting, err = readAwaiting(br); err != nil {
			return false, nil, nil, err
		}
	}
	return done, intents, awaiting, br.Close()
}

// Objects is what a pass knows of its objects once pending intents are
// adopted.
type Objects struct {
	// Open is the open ticket of the first key that has one, or nil.
	Open *Ticket
	// OpenedBy is the ticket the event itself opened (a replayed
	// intent), when Opened.
	OpenedBy int64
	Opened   bool
	// Resolution is what settled the primary object; its EventID is ""
	// while nothing has.
	Resolution Resolution
}

// Resolution records that a success event settled an object.
type Resolution struct {
	ObjectKey string
	EventID   string
	EventType string
	// StreamSeq is the event's sequence in BILLING_EVENTS (0: unknown).
	StreamSeq uint64
	// Comment is what the resolution says on the ticket it solves.
	Comment string
	// SolvedTicket is whether it has solved a ticket about the object.
	SolvedTicket bool
}

// CameAfter reports whether r settled its object by an event later in the
// stream than seq without solving a ticket yet: the event at seq was held
// up, and handled in order it would have opened or updated the ticket the
// resolution then solved. An unknown sequence on either side counts as
// not after, so such an event is simply overtaken by the resolution.
func (r Resolution) CameAfter(seq uint64) bool {
	return r.EventID != "" && !r.SolvedTicket && seq > 0 && r.StreamSeq > seq
}

// ReadObjects reads Objects for keys (the primary first) and eventID in
// one round trip, after the queued writes.
func ReadObjects(ctx context.Context, tx *pg.Tx, keys []string, eventID string) (Objects, error) {
	var o Objects
	br, err := tx.Send(ctx, func(b *pgx.Batch) {
		b.Queue(`SELECT object_key, ticket_id, status, priority FROM `+q("tickets")+`
			WHERE object_key = ANY($1) AND status = 'open' ORDER BY array_position($1::text[], object_key) LIMIT 1`, keys)
		b.Queue(`SELECT ticket_id FROM `+q("tickets")+` WHERE opened_by_event = $1`, eventID)
		b.Queue(`SELECT event_id, event_type, stream_seq, comment, solved_ticket FROM `+q("resolutions")+` WHERE object_key = $1`, keys[0])
	})
	if err != nil {
		return o, err
	}
	defer br.Close()
	var t Ticket
	switch err := br.QueryRow().Scan(&t.ObjectKey, &t.TicketID, &t.Status, &t.Priority); {
	case err == nil:
		o.Open = &t
	case !errors.Is(err, pgx.ErrNoRows):
		return o, fmt.Errorf("look up open ticket of %s: %w", keys[0], err)
	}
	switch err := br.QueryRow().Scan(&o.OpenedBy); {
	case err == nil:
		o.Opened = true
	case !errors.Is(err, pgx.ErrNoRows):
		return o, fmt.Errorf("look up ticket opened by %s: %w", eventID, err)
	}
	r := Resolution{ObjectKey: keys[0]}
	switch err := br.QueryRow().Scan(&r.EventID, &r.EventType, &r.StreamSeq, &r.Comment, &r.SolvedTicket); {
	case err == nil:
		o.Resolution = r
	case !errors.Is(err, pgx.ErrNoRows):
		return o, fmt.Errorf("look up resolution of %s: %w", keys[0], err)
	}
	return o, br.Close()
}

// MarkProcessed records that consumer finished eventID with outcome.
func MarkProcessed(tx *pg.Tx, consumer, eventID, eventType, outcome string) {
	tx.Queue("mark processed "+eventID, `INSERT INTO `+q("processed_events")+` (consumer, event_id, event_type, outcome) VALUES ($1, $2, $3, $4)`,
		consumer, eventID, eventType, outcome)
}

// InsertTicket records a newly opened ticket.
func InsertTicket(tx *pg.Tx, t Ticket, customerID, eventID string) {
	tx.Queue("record ticket for "+t.ObjectKey, `INSERT INTO `+q("tickets")+` (object_key, ticket_id, status, priority, customer_id, opened_by_event, last_event_id)
		VALUES ($1, $2, 'open', $3, $4, $5, $5)`, t.ObjectKey, t.TicketID, t.Priority, customerID, eventID)
}

// TouchTicket records the last event that commented on an open ticket, and
// solves it when status is "solved".
func TouchTicket(tx *pg.Tx, objectKey, eventID, status string) {
	tx.Queue("update ticket for "+objectKey, `UPDATE `+q("tickets")+` SET last_event_id = $2, status = $3, updated_at = now()
		WHERE object_key = $1 AND status = 'open'`, objectKey, eventID, status)
}

// Resolve records that a success event settled r.ObjectKey; the first
// resolution of an object stays.
func Resolve(tx *pg.Tx, r Resolution) {
	tx.Queue("record resolution of "+r.ObjectKey, `INSERT INTO `+q("resolutions")+` (object_key, event_id, event_type, stream_seq, comment, solved_ticket)
		VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (object_key) DO NOTHING`, r.ObjectKey, r.EventID, r.EventType, r.StreamSeq, r.Comment, r.SolvedTicket)
}

// ResolutionSolvedTicket records that the resolution of objectKey has now
// solved a ticket that an event earlier in the stream opened after it.
func ResolutionSolvedTicket(tx *pg.Tx, objectKey string) {
	tx.Queue("record the late solve of "+objectKey, `UPDATE `+q("resolutions")+` SET solved_ticket = true WHERE object_key = $1`, objectKey)
}

// SentAlert is one accepted alert.
type SentAlert struct {
	// Channel is the channel that accepted it: "slack", "email", ...
	Channel      string
	EventID      string
	EventType    string
	CustomerID   string
	EventCreated time.Time
	SentAt       time.Time
	Latency      time.Duration
	Late         bool
	// DigestSize is the number of events the message carried (1: alone).
	DigestSize int
}

// DB is what the alert queries need: a pool or one acquired connection.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// alertLockKey is the advisory lock key of one event's alert on one
// channel ($2).
const alertLockKey = `hashtextextended('support-notify:alert:' || $2::text || ':' || k, 7)`

// LockAlerts takes a session-level advisory lock on channel's alert of
// each of eventIDs on conn, so that two deliveries of one event (a re-sent event,
// a replay, another replica) cannot both pass the dedupe check and both
// send, and reports in the same round trip which alerts were already
// accepted. The locks are taken in key order, so two senders locking
// overlapping sets cannot deadlock. The check is a statement of its own
// after the locks, so its snapshot sees a record the previous holder
// committed. The returned function releases the locks; a broken
// connection releases them too.
func LockAlerts(ctx context.Context, conn *pgxpool.Conn, channel string, eventIDs []string) (unlock func(), sent map[string]bool, err error) {
	ids := sortedUnique(eventIDs)
	b := &pgx.Batch{}
	b.Queue(`SELECT pg_advisory_lock(h) FROM (SELECT `+alertLockKey+` AS h FROM unnest($1::text[]) AS k ORDER BY 1) AS keys`, ids, channel)
	b.Queue(`SELECT event_id FROM `+q("alerts_sent")+` WHERE channel = $2 AND event_id = ANY($1)`, ids, channel)
	br := conn.SendBatch(ctx, b)
	if _, err := br.Exec(); err != nil {
		_ = br.Close()
		return nil, nil, fmt.Errorf("lock %d alerts: %w", len(ids), err)
	}
	unlock = func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_, _ = conn.Exec(uctx, `SELECT pg_advisory_unlock(`+alertLockKey+`) FROM unnest($1::text[]) AS k`, ids, channel)
	}
	sent = map[string]bool{}
	rows, err := br.Query()
	if err == nil {
		var done []string
		done, err = pgx.CollectRows(rows, pgx.RowTo[string])
		for _, id := range done {
			sent[id] = true
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		unlock()
		return nil, nil, fmt.Errorf("look up sent alerts: %w", err)
	}
	return unlock, sent, nil
}

// AlertSent reports whether channel already accepted the alert for eventID.
func AlertSent(ctx context.Context, db DB, channel, eventID string) (bool, error) {
	var ok bool
	err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+q("alerts_sent")+` WHERE channel = $1 AND event_id = $2)`, channel, eventID).Scan(&ok)
	if err != nil {
		return false, fmt.Errorf("look up sent alert %s: %w", eventID, err)
	}
	return ok, nil
}

// RecordAlerts records accepted alerts in one statement; a second record
// of the same event is a no-op.
func RecordAlerts(ctx context.Context, db DB, as []SentAlert) error {
	n := len(as)
	channels, ids, types, customers := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	created, sentAt := make([]time.Time, n), make([]time.Time, n)
	latency, late, size := make([]float64, n), make([]bool, n), make([]int32, n)
	for i, a := range as {
		channels[i], ids[i], types[i], customers[i] = a.Channel, a.EventID, a.EventType, a.CustomerID
		created[i], sentAt[i], latency[i], late[i] = a.EventCreated, a.SentAt, a.Latency.Seconds(), a.Late
		size[i] = int32(max(a.DigestSize, 1)) // #nosec G115 -- a digest holds at most render.MaxDigest (500) events
	}
	_, err := db.Exec(ctx, `INSERT INTO `+q("alerts_sent")+` (event_id, event_type, customer_id, event_created, sent_at, latency_seconds, late, digest_size, channel)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[], $6::float8[], $7::bool[], $8::int4[], $9::text[])
		ON CONFLICT (channel, event_id) DO NOTHING`,
		ids, types, customers, created, sentAt, latency, late, size, channels)
	if err != nil {
		return fmt.Errorf("record %d sent alerts: %w", n, err)
	}
	return nil
}

func sortedUnique(keys []string) []string {
	out := slices.Clone(keys)
	slices.Sort(out)
	return slices.Compact(out)
}
