package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// States of an action.
const (
	ActionPendingApproval = "pending_approval"
	ActionRejected        = "rejected"
	ActionSubmitted       = "submitted"
	ActionSucceeded       = "succeeded"
	ActionFailed          = "failed"
)

// Action is one staff action as the console saw it.
type Action struct {
	ID            string
	Kind          string
	CustomerID    string
	Target        string
	Params        json.RawMessage
	Amount        int64
	Reason        string
	RequestedBy   string
	RequestedRole string
	State         string
	ApprovedBy    string
	DecidedReason string
	StripeObject  string
	ErrorCode     string
	CreatedAt     time.Time
	UpdatedAt     time.Time
}

const actionColumns = `id, kind, customer_id, target, params, amount, reason, requested_by, requested_role, state,
	approved_by, decided_reason, stripe_object_id, error_code, created_at, updated_at`

func scanAction(row pgx.Row) (Action, error) {
	var a Action
	err := row.Scan(&a.ID, &a.Kind, &a.CustomerID, &a.Target, &a.Params, &a.Amount, &a.Reason, &a.RequestedBy, &a.RequestedRole,
		&a.State, &a.ApprovedBy, &a.DecidedReason, &a.StripeObject, &a.ErrorCode, &a.CreatedAt, &a.UpdatedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Action{}, ErrNotFound
	}
	return a, err
}

// InsertAction records a new action; when its id is taken it returns the
// action recorded before and false (a form submitted twice).
func InsertAction(ctx context.Context, db DB, a Action) (Action, bool, error) {
	got, err := scanAction(db.QueryRow(ctx, `INSERT INTO console.actions (id, kind, customer_id, target, params, amount, reason,
		requested_by, requested_role, state) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
		ON CONFLICT (id) DO NOTHING RETURNING `+actionColumns,
		a.ID, a.Kind, a.CustomerID, a.Target, []byte(a.Params), a.Amount, a.Reason, a.RequestedBy, a.RequestedRole, a.State))
	if errors.Is(err, ErrNotFound) {
		old, err := ActionByID(ctx, db, a.ID, false)
		return old, false, err
	}
	if err != nil {
		return Action{}, false, fmt.Errorf("insert action %s: %w", a.ID, err)
	}
	return got, true, nil
}

// ActionByID returns an action, locked for the transaction's end when
// lock is set.
func ActionByID(ctx context.Context, db DB, id string, lock bool) (Action, error) {
	q := `SELECT ` + actionColumns + ` FROM console.actions WHERE id = $1`
	if lock {
		q += ` FOR UPDATE`
	}
	a, err := scanAction(db.QueryRow(ctx, q, id))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return Action{}, fmt.Errorf("action %s: %w", id, err)
	}
	return a, err
}

// DecideAction moves a pending action to state (submitted when approved,
// rejected) with who decided and why.
func DecideAction(ctx context.Context, db DB, id, state, by, reason string) error {
	tag, err := db.Exec(ctx, `UPDATE console.actions SET state = $2, approved_by = $3, decided_reason = $4, updated_at = now()
		WHERE id = $1 AND state = 'pending_approval'`, id, state, by, reason)
	if err != nil {
		return fmt.Errorf("decide action %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return ErrNotFound
	}
	return nil
}

// FinishAction records billing-state's answer to a submitted action.
func FinishAction(ctx context.Context, db DB, id, state, stripeObject, errorCode string) error {
	_, err := db.Exec(ctx, `UPDATE console.actions SET state = $2, stripe_object_id = $3, error_code = $4, updated_at = now()
		WHERE id = $1`, id, state, stripeObject, errorCode)
	if err != nil {
		return fmt.Errorf("finish action %s: %w", id, err)
	}
	return nil
}

// ListActions returns the newest actions in state (every state when
// empty).
func ListActions(ctx context.Context, db DB, state string, limit int) ([]Action, error) {
	if limit <= 0 || limit > 500 {
		limit = 100
	}
	rows, err := db.Query(ctx, `SELECT `+actionColumns+` FROM console.actions WHERE ($1 = '' OR state = $1)
		ORDER BY created_at DESC, id LIMIT $2`, state, limit)
	if err != nil {
		return nil, fmt.Errorf("list actions: %w", err)
	}
	defer rows.Close()
	var out []Action
	for rows.Next() {
		a, err := scanAction(rows)
		if err != nil {
			return nil, fmt.Errorf("list actions: %w", err)
		}
		out = append(out, a)
	}
	return out, rows.Err()
}
