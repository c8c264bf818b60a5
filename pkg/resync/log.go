package resync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/launchready/launchready/pkg/redact"
)

// DB is what Log needs: a pool or a connection.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// Log is a consumer's record of resyncs, the table resync_log in its
// schema: each request id is claimed before anything is sent and settled
// with its outcome, so a repeated request id is answered from the record
// and sends nothing again. A failed request may be tried again with the
// same id; so may one left in progress for longer than StaleAfter (its
// process died before it settled). The consumer's migration creates the
// table in its own schema:
//
//	CREATE TABLE resync_log (
//	    request_id   text PRIMARY KEY,
//	    customer_id  text NOT NULL,
//	    actor        text NOT NULL,
//	    reason       text NOT NULL,
//	    outcome      text NOT NULL,
//	    detail       text NOT NULL DEFAULT '',
//	    requested_at timestamptz NOT NULL DEFAULT now(),
//	    done_at      timestamptz
//	);
type Log struct {
	DB     DB
	Schema string
	// StaleAfter is how long a claim lasts without an outcome; it must
	// outlast the handler's timeout.
	StaleAfter time.Duration
}

func (l Log) table() string { return pgx.Identifier{l.Schema, "resync_log"}.Sanitize() }

// Claim records req as in progress and returns nil, or returns the reply
// recorded for an earlier request with its id, marked Repeated.
func (l Log) Claim(ctx context.Context, req Request) (*Reply, error) {
	var claimed bool
	err := l.DB.QueryRow(ctx, `
		INSERT INTO `+l.table()+` AS r (request_id, customer_id, actor, reason, outcome)
		VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (request_id) DO UPDATE SET outcome = EXCLUDED.outcome, actor = EXCLUDED.actor, reason = EXCLUDED.reason,
			detail = '', requested_at = now(), done_at = NULL
		WHERE r.customer_id = EXCLUDED.customer_id
			AND (r.outcome = $6 OR (r.outcome = $5 AND r.requested_at < now() - make_interval(secs => $7)))
		RETURNING true`,
		req.RequestID, req.CustomerID, req.Actor, req.Reason, OutcomeInProgress, OutcomeFailed, l.StaleAfter.Seconds()).Scan(&claimed)
	if err == nil {
		return nil, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("claim resync %s: %w", req.RequestID, err)
	}
	rep := Reply{RequestID: req.RequestID, Repeated: true}
	var customer string
	var done *time.Time
	var requested time.Time
	if err := l.DB.QueryRow(ctx, `SELECT customer_id, outcome, detail, requested_at, done_at FROM `+l.table()+` WHERE request_id = $1`,
		req.RequestID).Scan(&customer, &rep.Outcome, &rep.Detail, &requested, &done); err != nil {
		return nil, fmt.Errorf("read resync %s: %w", req.RequestID, err)
	}
	if customer != req.CustomerID {
		return &Reply{RequestID: req.RequestID, Outcome: OutcomeRefused, At: time.Now().UTC(),
			Detail: "this request id was used for another customer"}, nil
	}
	rep.At = requested.UTC()
	if done != nil {
		rep.At = done.UTC()
	}
	return &rep, nil
}

// Settle records rep as req's outcome.
func (l Log) Settle(ctx context.Context, req Request, rep Reply) error {
	_, err := l.DB.Exec(ctx, `UPDATE `+l.table()+` SET outcome = $2, detail = $3, done_at = now() WHERE request_id = $1`,
		req.RequestID, rep.Outcome, rep.Detail)
	if err != nil {
		return fmt.Errorf("settle resync %s: %w", req.RequestID, err)
	}
	return nil
}

// Once wraps h so that each request id runs it at most once to an
// outcome other than failed: claimed first, settled after, and answered
// from the log when repeated.
func (l Log) Once(h Handler) Handler {
	return func(ctx context.Context, req Request) Reply {
		prior, err := l.Claim(ctx, req)
		if err != nil {
			return Reply{Outcome: OutcomeFailed, Detail: "the request could not be recorded: " + redact.Error(err)}
		}
		if prior != nil {
			return *prior
		}
		rep := h(ctx, req)
		// The outcome is written even when the request's time ran out:
		// whatever was sent has been sent.
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if err := l.Settle(sctx, req, rep); err != nil {
			rep.Detail += " (its outcome could not be recorded: asking again with the same id may send it again)"
		}
		return rep
	}
}
