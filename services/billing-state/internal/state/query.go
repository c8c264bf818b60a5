package state

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/types/known/timestamppb"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// Status returns a customer's stored status.
func (s *Store) Status(ctx context.Context, customerID string) (*billingv1.CustomerStatus, error) {
	var js []byte
	err := s.pool.QueryRow(ctx, `SELECT status_json FROM billing.customers WHERE id = $1`, customerID).Scan(&js)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("read status of %s: %w", customerID, err)
	}
	if len(js) == 0 {
		return nil, ErrNotFound
	}
	return unmarshalStatus(js)
}

// StatusByUserID finds the customer whose metadata.user_id (on the customer,
// a subscription or a checkout session) is userID. When several customers
// match, the entitled one, then the most recently updated, wins.
func (s *Store) StatusByUserID(ctx context.Context, userID string) (*billingv1.CustomerStatus, error) {
	return s.statusWhere(ctx, byUserIDSQL, userID)
}

// StatusByEmail finds a customer by email, case-insensitively, with the
// same preference as StatusByUserID.
func (s *Store) StatusByEmail(ctx context.Context, email string) (*billingv1.CustomerStatus, error) {
	return s.statusWhere(ctx, byEmailSQL, strings.TrimSpace(email))
}

// The lookups by user id and by email. Each "<> ”" term repeats the
// predicate of the partial index that serves it: the service's sessions
// use one generic plan per statement (pg.WithIndexPlans), and a generic
// plan may use a partial index only when the query itself implies the
// index's predicate; without them every lookup scanned whole tables.
const (
	byUserIDSQL = lookupSQL + `c.id IN (
		SELECT id FROM billing.customers WHERE user_id = $1 AND user_id <> ''
		UNION SELECT customer_id FROM billing.subscriptions WHERE user_id = $1 AND user_id <> ''
		UNION SELECT customer_id FROM billing.payments WHERE user_id = $1 AND user_id <> '')` + lookupOrder
	byEmailSQL  = lookupSQL + `lower(c.email) = lower($1) AND c.email <> ''` + lookupOrder
	lookupSQL   = `SELECT c.status_json FROM billing.customers c WHERE c.status_json IS NOT NULL AND (`
	lookupOrder = `)
		ORDER BY c.entitled DESC, c.deleted ASC, c.updated_at DESC, c.id LIMIT 1`
)

func (s *Store) statusWhere(ctx context.Context, sql string, arg string) (*billingv1.CustomerStatus, error) {
	var js []byte
	err := s.pool.QueryRow(ctx, sql, arg).Scan(&js)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("look up customer: %w", err)
	}
	return unmarshalStatus(js)
}

// TimelineEntry is one audit row.
type TimelineEntry = billingv1.CustomerEvent

// Timeline returns up to limit audit rows of a customer, newest first,
// older than beforeID (0: from the newest). next is the id to pass as
// beforeID for the following page, 0 on the last page.
func (s *Store) Timeline(ctx context.Context, customerID string, beforeID int64, limit int) (events []*billingv1.CustomerEvent, next int64, err error) {
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM billing.customers WHERE id = $1)`, customerID).Scan(&exists); err != nil {
		return nil, 0, fmt.Errorf("timeline of %s: %w", customerID, err)
	}
	if !exists {
		return nil, 0, ErrNotFound
	}
	rows, err := s.pool.Query(ctx, `SELECT id, event_id, event_type, actor, action, before, after, event_created, recorded_at
		FROM billing.audit_log WHERE customer_id = $1 AND ($2 = 0 OR id < $2) ORDER BY id DESC LIMIT $3`,
		customerID, beforeID, limit+1)
	if err != nil {
		return nil, 0, fmt.Errorf("timeline of %s: %w", customerID, err)
	}
	defer rows.Close()
	for rows.Next() {
		e := &billingv1.CustomerEvent{}
		var before, after []byte
		var created *time.Time
		var recorded time.Time
		if err := rows.Scan(&e.Id, &e.EventId, &e.EventType, &e.Actor, &e.Action, &before, &after, &created, &recorded); err != nil {
			return nil, 0, fmt.Errorf("timeline of %s: %w", customerID, err)
		}
		if len(before) > 0 {
			if e.Before, err = unmarshalStatus(before); err != nil {
				return nil, 0, err
			}
		}
		if len(after) > 0 {
			if e.After, err = unmarshalStatus(after); err != nil {
				return nil, 0, err
			}
		}
		if created != nil {
			e.EventCreated = timestamppb.New(*created)
		}
		e.RecordedAt = timestamppb.New(recorded)
		events = append(events, e)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("timeline of %s: %w", customerID, err)
	}
	if len(events) > limit {
		events = events[:limit]
		next = events[limit-1].GetId()
	}
	return events, next, nil
}

// Reconcile re-derives a customer's status from the stored facts (under
// the current policy), clears the reconciliation mark and the customer's
// dead-letter marks, and records who did it in the audit trail.
func (s *Store) Reconcile(ctx context.Context, customerID, actor string) (*billingv1.CustomerStatus, error) {
	var out *billingv1.CustomerStatus
	var changed bool
	err := s.inTx(ctx, func(t *txn) error {
		br, err := t.tx.Send(t.ctx, func(b *pgx.Batch) {
			b.Queue(`SELECT `+customerColumns+` FROM billing.customers WHERE id = $1 FOR UPDATE`, customerID)
		})
		if err != nil {
			return err
		}
		c, err := scanCustomer(br.QueryRow())
		_ = br.Close()
		if errors.Is(err, pgx.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("lock customer %s: %w", customerID, err)
		}
		t.cus = c
		if err := t.loadSubscriptions(); err != nil {
			return err
		}
		before := c.status
		t.cus.needsReconciliation = false
		after, err := t.derive()
		if err != nil {
			return err
		}
		changed = !sameStatus(before, after)
		after.LastEventId = before.GetLastEventId()
		after.UpdatedAt = before.GetUpdatedAt()
		if changed {
			after.UpdatedAt = statusTimestamp(s.now())
		}
		// Staff reconcile once they have seen to the customer's dead
		// letters (replayed or purged): the display stops saying
		// "status unknown" for them.
		t.tx.Queue("clear dead letters", `DELETE FROM billing.dead_letters WHERE customer_id = $1`, customerID)
		if err := t.audit(nil, actor, ActionReconcile, before, after); err != nil {
			return err
		}
		if err := t.writeCustomer(after); err != nil {
			return err
		}
		if changed {
			if err := t.writeOutbox(after); err != nil {
				return err
			}
		}
		out = after
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.InfoContext(ctx, "customer reconciled", "customer_id", customerID, "action", ActionReconcile, "actor", actor, "changed", changed)
	if changed {
		s.kick()
	}
	return out, nil
}

// loadSubscriptions reads the locked customer's subscriptions.
func (t *txn) loadSubscriptions() error {
	br, err := t.tx.Send(t.ctx, func(b *pgx.Batch) {
		b.Queue(`SELECT `+subscriptionColumns+` FROM billing.subscriptions WHERE customer_id = $1`, t.cus.id)
	})
	if err != nil {
		return err
	}
	defer br.Close()
	rows, err := br.Query()
	if err != nil {
		return fmt.Errorf("load subscriptions of %s: %w", t.cus.id, err)
	}
	if t.subs, err = scanSubscriptions(rows); err != nil {
		return fmt.Errorf("load subscriptions of %s: %w", t.cus.id, err)
	}
	return br.Close()
}

// Unresolved counts parked events still waiting for their charge's customer.
func (s *Store) Unresolved(ctx context.Context) (int, error) {
	var n int
	if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM billing.unresolved_events WHERE resolved_at IS NULL`).Scan(&n); err != nil {
		return 0, fmt.Errorf("count unresolved events: %w", err)
	}
	return n, nil
}

// StoredSubscription is a subscription as billing-state has it.
type StoredSubscription struct {
	CustomerID string
	// Status is Stripe's status of the last snapshot applied.
	Status  string
	Deleted bool
}

// Subscriptions returns every stored subscription by id, for the drift
// check to compare with Stripe's.
func (s *Store) Subscriptions(ctx context.Context) (map[string]StoredSubscription, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, customer_id, status, deleted FROM billing.subscriptions`)
	if err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", err)
	}
	defer rows.Close()
	out := map[string]StoredSubscription{}
	for rows.Next() {
		var id string
		var sub StoredSubscription
		if err := rows.Scan(&id, &sub.CustomerID, &sub.Status, &sub.Deleted); err != nil {
			return nil, fmt.Errorf("list subscriptions: %w", err)
		}
		out[id] = sub
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list subscriptions: %w", err)
	}
	return out, nil
}

// SmokeCustomers returns the ids of the customers a smoke test made
// (customers.smoke_run set): counts, reports and drift checks leave them out.
func (s *Store) SmokeCustomers(ctx context.Context) (map[string]bool, error) {
	rows, err := s.pool.Query(ctx, `SELECT id FROM billing.customers WHERE smoke_run <> ''`)
	if err != nil {
		return nil, fmt.Errorf("list smoke customers: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list smoke customers: %w", err)
	}
	out := make(map[string]bool, len(ids))
	for _, id := range ids {
		out[id] = true
	}
	return out, nil
}

// DriftCheck is one drift check's result, as billing.drift_checks keeps
// it.
type DriftCheck struct {
	StartedAt, FinishedAt time.Time
	// Outcome is clean, drift or error.
	Outcome       string
	Customers     int
	Subscriptions int
	Error         string
}

// RecordDriftCheck keeps a finished drift check in billing.drift_checks.
func (s *Store) RecordDriftCheck(ctx context.Context, c DriftCheck) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO billing.drift_checks (started_at, finished_at, outcome, customers, subscriptions, error)
		VALUES ($1, $2, $3, $4, $5, $6)`, c.StartedAt, c.FinishedAt, c.Outcome, c.Customers, c.Subscriptions, c.Error); err != nil {
		return fmt.Errorf("record drift check: %w", err)
	}
	return nil
}
