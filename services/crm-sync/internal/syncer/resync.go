package syncer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/redact"
	"github.com/launchready/launchready/pkg/resync"
	"github.com/launchready/launchready/pkg/telemetry"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/crm-sync/internal/crm"
)

// resyncEventType names a staff resync's push in the sync log, beside the
// event types of ordinary pushes.
const resyncEventType = "resync"

// Resync pushes the customer's current documents, derived from the mirror
// as an event's push derives them, to the CRM again: a staff member's
// answer to "the CRM shows something stale". It takes the path of an
// ordinary push (the customer's turn and lock, a push intent, one adapter
// call keyed as every push is, the outcome settled, a repair if another
// push overlapped it), so it never makes a second contact or deal and
// never leaves an older document over a newer one. Nothing is applied to
// the mirror and no event is recorded as processed.
//
// It is the inner handler: resync.Log.Once makes it run once per request
// id.
func (s *Syncer) Resync(ctx context.Context, req resync.Request) resync.Reply {
	var newestEvent string
	err := s.o.Pool.QueryRow(ctx, `SELECT last_event_id FROM crm.customers WHERE customer_id = $1`, req.CustomerID).Scan(&newestEvent)
	if errors.Is(err, pgx.ErrNoRows) {
		return resync.Reply{Outcome: resync.OutcomeNothingHeld,
			Detail: "crm-sync holds nothing for " + req.CustomerID + ": no event of this customer has reached it"}
	}
	if err != nil {
		return resync.Reply{Outcome: resync.OutcomeFailed, Detail: "read the customer: " + redact.Error(err)}
	}
	e := &entry{ev: &billingv1.BillingEvent{EventId: newestEvent, Type: resyncEventType, CustomerId: req.CustomerID}}
	e.ctx, e.span = s.o.Tracer.Start(ctx, "crm-sync resync", trace.WithAttributes(
		telemetry.AttrCustomerID.String(req.CustomerID), attribute.String("resync.request_id", req.RequestID)))
	defer e.span.End()
	log := s.o.Logger.With(slog.String("customer_id", req.CustomerID), slog.String("request_id", req.RequestID),
		slog.String("actor", req.Actor))
	g := &group{key: req.CustomerID, customerID: req.CustomerID, entries: []*entry{e}, resync: true}

	ctx, cancel := context.WithTimeout(e.ctx, s.o.Timeout)
	defer cancel()
	unlock, err := s.takeTurns(ctx, []*group{g})
	if err != nil {
		return s.resyncFailed(e, log, fmt.Errorf("wait for the customer's turn: %w", err))
	}
	s.run(ctx, []*group{g})
	unlock()
	if e.err != nil {
		return s.resyncFailed(e, log, e.err)
	}
	deals := 0
	if g.in.change != nil {
		deals = len(g.in.change.Deals)
	}
	e.span.SetAttributes(attribute.String("outcome", resync.OutcomeResent))
	log.InfoContext(e.ctx, "crm resync", slog.String("action", "resync"), slog.String("outcome", resync.OutcomeResent),
		slog.Int("calls", e.calls))
	return resync.Reply{Outcome: resync.OutcomeResent,
		Detail: fmt.Sprintf("pushed the contact%s to %s again (%d calls)", dealsPhrase(deals), s.o.Adapter.Name(), e.calls)}
}

func (s *Syncer) resyncFailed(e *entry, log *slog.Logger, err error) resync.Reply {
	msg := redact.Error(err)
	e.span.SetStatus(codes.Error, msg)
	log.WarnContext(e.ctx, "crm resync failed", slog.String("action", "resync"), slog.String("outcome", failureOutcome(err)),
		slog.String("error", msg))
	return resync.Reply{Outcome: resync.OutcomeFailed, Detail: "the push failed (" + failureOutcome(err) + "): " + msg}
}

func dealsPhrase(n int) string {
	switch n {
	case 0:
		return ""
	case 1:
		return " and its deal"
	}
	return fmt.Sprintf(" and its %d deals", n)
}

// forcePush marks every document of ch as changed, so that the push sends
// them all whatever the CRM was last sent.
func forcePush(ch *crm.Change) {
	ch.ContactChanged = true
	for i := range ch.Deals {
		ch.Deals[i].Changed = true
	}
}
