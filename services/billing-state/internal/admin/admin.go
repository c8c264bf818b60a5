// Package admin makes the changes staff ask for in Stripe (refunds,
// cancellations, plan changes) and records each one: as requested before
// Stripe is called, and with Stripe's answer after, in admin_actions, with
// an audit_log row. The action id is the source of Stripe's Idempotency-Key,
// so the same action asked twice is one change in Stripe, and a second call
// that finds the action completed returns what was recorded.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"

	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/stripeapi"
)

// Kinds of action.
const (
	KindRefund     = "refund"
	KindCancel     = "cancel_subscription"
	KindChangePlan = "change_plan"
)

// States of an action.
const (
	StateRequested = "requested"
	StateSucceeded = "succeeded"
	StateFailed    = "failed"
)

// StaleAfter is how long an action may stay requested before a retry of
// it calls Stripe again (with the same idempotency key, so Stripe makes no
// second change): longer than any one Stripe call may take.
const StaleAfter = time.Minute

var (
	// ErrNoStripe: STRIPE_API_KEY is not set, so no action can be made.
	ErrNoStripe = errors.New("no Stripe key is configured (STRIPE_API_KEY)")
	// ErrInProgress: the action is being made by another call right now.
	ErrInProgress = errors.New("the action is in progress")
	// ErrReused: the action id was used before for a different request.
	ErrReused = errors.New("the action id was used for a different request")
	// ErrNoAnswer: Stripe gave no answer (no connection, a timeout, a 5xx
	// or its rate limit); the action stays requested, its outcome unknown.
	ErrNoAnswer = errors.New("stripe gave no answer")
)

// Stripe is the part of stripeapi.Client actions need.
type Stripe interface {
	Refund(ctx context.Context, r stripeapi.RefundRequest) (stripeapi.Object, error)
	CancelSubscription(ctx context.Context, actionID, subscription string, atPeriodEnd bool) (stripeapi.Object, error)
	ChangeSubscriptionPlan(ctx context.Context, p stripeapi.PlanChange) (stripeapi.Object, error)
}

// Actor is the staff member behind an action.
type Actor struct {
	Email      string `json:"email"`
	Role       string `json:"role,omitempty"`
	ApprovedBy string `json:"approved_by,omitempty"`
}

// Request is one action as asked.
type Request struct {
	ActionID   string
	Kind       string
	Actor      Actor
	CustomerID string
	Reason     string
	// Params is what is sent to Stripe, recorded as the request.
	Params any
}

// Action is an action as recorded.
type Action struct {
	ID, Kind, State, StripeObjectID, ErrorCode string
	RequestedAt                                time.Time
	CompletedAt                                time.Time
	// Replayed: recorded by an earlier call; Stripe was not called.
	Replayed bool
	// EventIDs are the webhook events the change caused, so far.
	EventIDs []string
}

// Service records and makes actions.
type Service struct {
	pool   *pgxpool.Pool
	stripe Stripe
	now    func() time.Time
}

// New returns the service; stripe may be nil, and then every action is
// refused with ErrNoStripe.
func New(pool *pgxpool.Pool, stripe Stripe) *Service {
	return &Service{pool: pool, stripe: stripe, now: time.Now}
}

// Refund refunds a payment.
func (s *Service) Refund(ctx context.Context, req Request, r stripeapi.RefundRequest) (Action, error) {
	r.ActionID, req.Kind, req.Params = req.ActionID, KindRefund, r
	return s.do(ctx, req, func(ctx context.Context) (stripeapi.Object, error) { return s.stripe.Refund(ctx, r) })
}

// CancelSubscription cancels a subscription now or at its period end.
func (s *Service) CancelSubscription(ctx context.Context, req Request, subscription string, atPeriodEnd bool) (Action, error) {
	req.Kind = KindCancel
	req.Params = map[string]any{"subscription": subscription, "at_period_end": atPeriodEnd}
	return s.do(ctx, req, func(ctx context.Context) (stripeapi.Object, error) {
		return s.stripe.CancelSubscription(ctx, req.ActionID, subscription, atPeriodEnd)
	})
}

// ChangePlan moves a subscription to another price.
func (s *Service) ChangePlan(ctx context.Context, req Request, p stripeapi.PlanChange) (Action, error) {
	p.ActionID, req.Kind, req.Params = req.ActionID, KindChangePlan, p
	return s.do(ctx, req, func(ctx context.Context) (stripeapi.Object, error) { return s.stripe.ChangeSubscriptionPlan(ctx, p) })
}

var tracer = otel.Tracer("github.com/launchready/launchready/services/billing-state/internal/admin")

// do records the action, calls Stripe once, and records the answer. An
// error that is not Stripe's answer (no connection, a timeout) leaves the
// action requested: its outcome is unknown, and a retry with the same
// action id asks Stripe again with the same idempotency key.
func (s *Service) do(ctx context.Context, req Request, call func(context.Context) (stripeapi.Object, error)) (Action, error) {
	ctx, span := tracer.Start(ctx, "admin "+req.Kind)
	defer span.End()
	span.SetAttributes(attribute.String("launchready.action_id", req.ActionID), attribute.String("launchready.action", req.Kind),
		attribute.String("customer_id", req.CustomerID))
	if s.stripe == nil {
		return Action{}, ErrNoStripe
	}
	params, err := json.Marshal(req.Params)
	if err != nil {
		return Action{}, fmt.Errorf("action %s: %w", req.ActionID, err)
	}
	a, fresh, traceparent, err := s.claim(ctx, req, params, traceParentOf(ctx))
	if err != nil || !fresh {
		if a.Replayed {
			span.SetAttributes(attribute.Bool("launchready.replayed", true))
		}
		return a, err
	}
	obj, callErr := call(stripeapi.WithActionTrace(ctx, traceparent))
	var apiErr *stripeapi.APIError
	switch {
	case callErr == nil:
		a.State, a.StripeObjectID = StateSucceeded, obj.ID
	case errors.As(callErr, &apiErr) && apiErr.Status >= 400 && apiErr.Status < 500 && apiErr.Status != 429:
		a.State, a.ErrorCode = StateFailed, apiErr.Code
		if a.ErrorCode == "" {
			a.ErrorCode = apiErr.Type
		}
	default:
		span.RecordError(callErr)
		span.SetStatus(codes.Error, "stripe gave no answer")
		return a, fmt.Errorf("action %s: %w: %w", req.ActionID, ErrNoAnswer, callErr)
	}
	if err := s.complete(ctx, req, &a, obj); err != nil {
		return a, err
	}
	if a.State == StateFailed {
		span.SetStatus(codes.Error, "stripe refused: "+a.ErrorCode)
	}
	return a, nil
}

// traceParentOf is the W3C traceparent of ctx's span, or "".
func traceParentOf(ctx context.Context) string {
	c := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, c)
	return c["traceparent"]
}

// claim records the action as requested, or finds it recorded. fresh says
// Stripe is to be called: a new action, or one requested so long ago that
// its call must have ended without an answer being recorded. traceparent
// is the one the action was first made with (tp for a new action).
func (s *Service) claim(ctx context.Context, req Request, params []byte, tp string) (a Action, fresh bool, traceparent string, err error) {
	err = pg.InTx(ctx, s.pool, func(tx *pg.Tx) error {
		tag, err := tx.Exec(ctx, `
			INSERT INTO billing.admin_actions (action_id, kind, customer_id, actor_email, actor_role, approved_by, reason, request, requested_at, traceparent)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
			ON CONFLICT (action_id) DO NOTHING`,
			req.ActionID, req.Kind, req.CustomerID, req.Actor.Email, req.Actor.Role, req.Actor.ApprovedBy, req.Reason, params, s.now(), tp)
		if err != nil {
			return err
		}
		var kind, customer string
		var request []byte
		var completed *time.Time
		err = tx.QueryRow(ctx, `
			SELECT kind, customer_id, request, state, stripe_object_id, error_code, requested_at, completed_at, event_ids, traceparent
			FROM billing.admin_actions WHERE action_id = $1 FOR UPDATE`, req.ActionID).
			Scan(&kind, &customer, &request, &a.State, &a.StripeObjectID, &a.ErrorCode, &a.RequestedAt, &completed, &a.EventIDs, &traceparent)
		if err != nil {
			return err
		}
		a.ID, a.Kind = req.ActionID, kind
		if completed != nil {
			a.CompletedAt = *completed
		}
		if tag.RowsAffected() == 1 {
			fresh = true
			return nil
		}
		if kind != req.Kind || customer != req.CustomerID || !sameJSON(request, params) {
			return ErrReused
		}
		switch {
		case a.State != StateRequested:
			a.Replayed = true
		case s.now().Sub(a.RequestedAt) < StaleAfter:
			return ErrInProgress
		default:
			// Restart the clock: this call owns the action now.
			fresh = true
			_, err := tx.Exec(ctx, `UPDATE billing.admin_actions SET requested_at = $2 WHERE action_id = $1`, req.ActionID, s.now())
			return err
		}
		return nil
	})
	if err != nil {
		return Action{}, false, "", fmt.Errorf("action %s: %w", req.ActionID, err)
	}
	return a, fresh, traceparent, nil
}

// complete records Stripe's answer and the audit row, together.
func (s *Service) complete(ctx context.Context, req Request, a *Action, obj stripeapi.Object) error {
	a.CompletedAt = s.now()
	var response []byte
	if a.State == StateSucceeded {
		response = obj.Raw
	} else {
		// Stripe's error message can echo request details: its code only.
		response, _ = json.Marshal(map[string]string{"error_code": a.ErrorCode})
	}
	actor, _ := json.Marshal(req.Actor)
	before, _ := json.Marshal(map[string]any{"state": StateRequested, "request": json.RawMessage(mustJSON(req.Params)), "reason": req.Reason, "actor": json.RawMessage(actor)})
	after, _ := json.Marshal(map[string]any{"state": a.State, "stripe_object_id": a.StripeObjectID, "error_code": a.ErrorCode})
	err := pg.InTx(ctx, s.pool, func(tx *pg.Tx) error {
		tx.Queue("complete action "+a.ID, `
			UPDATE billing.admin_actions SET state = $2, stripe_object_id = $3, stripe_response = $4, error_code = $5, completed_at = $6
			WHERE action_id = $1 AND state = 'requested'`,
			a.ID, a.State, a.StripeObjectID, response, a.ErrorCode, a.CompletedAt)
		tx.Queue("audit action "+a.ID, `
			INSERT INTO billing.audit_log (customer_id, actor, action, before, after)
			VALUES ($1, $2, $3, $4, $5)`,
			req.CustomerID, "staff:"+req.Actor.Email, "admin."+req.Kind+"."+a.State, before, after)
		return tx.Flush(ctx)
	})
	if err != nil {
		return fmt.Errorf("action %s: record stripe's answer: %w", a.ID, err)
	}
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte("null")
	}
	return b
}

// sameJSON compares two JSON documents by value (jsonb reorders keys).
func sameJSON(a, b []byte) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

// Get returns a recorded action (pgx.ErrNoRows when there is none).
func (s *Service) Get(ctx context.Context, actionID string) (Action, error) {
	var a Action
	var completed *time.Time
	err := s.pool.QueryRow(ctx, `
		SELECT action_id, kind, state, stripe_object_id, error_code, requested_at, completed_at, event_ids
		FROM billing.admin_actions WHERE action_id = $1`, actionID).
		Scan(&a.ID, &a.Kind, &a.State, &a.StripeObjectID, &a.ErrorCode, &a.RequestedAt, &completed, &a.EventIDs)
	if completed != nil {
		a.CompletedAt = *completed
	}
	return a, err
}
