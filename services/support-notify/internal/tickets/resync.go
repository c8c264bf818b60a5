package tickets

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/redact"
	"github.com/launchready/launchready/pkg/resync"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/services/support-notify/internal/store"
	"github.com/launchready/launchready/services/support-notify/internal/zendesk"
)

// Resync re-sends what the tickets consumer holds for a customer, on a
// staff member's request: ticket creations still pending are replayed
// (with their own request and Idempotency-Key, as the next event about
// their object would replay them), and each open ticket gets a note with
// its state, keyed by the request, so a desk that lost an update shows the
// current one. It runs under the objects' locks, as an event's action
// does, and records no event as processed.
//
// It is the inner handler: resync.Log.Once makes it run once per request
// id.
func (h *Handler) Resync(ctx context.Context, req resync.Request) resync.Reply {
	keys, err := store.CustomerObjects(ctx, h.Pool, req.CustomerID)
	if err != nil {
		return h.resyncFailed(ctx, req, err)
	}
	if len(keys) == 0 {
		return resync.Reply{Outcome: resync.OutcomeNothingHeld,
			Detail: "support-notify holds no open or pending ticket for " + req.CustomerID}
	}
	// The request, in the shape the intent replay logs against: its id
	// is no event's, so every replayed intent is logged as recovered.
	asked := &billingv1.BillingEvent{EventId: "resync:" + req.RequestID, CustomerId: req.CustomerID}
	log := h.Log.With("customer_id", req.CustomerID, "request_id", req.RequestID, "action", "resync")
	var replayed, noted, gone int
	err = pg.InTx(ctx, h.Pool, func(tx *pg.Tx) error {
		replayed, noted, gone = 0, 0, 0
		store.LockObjects(tx, keys)
		_, intents, _, err := store.Start(ctx, tx, h.Consumer, asked.GetEventId(), keys, nil)
		if err != nil {
			return err
		}
		if err := h.adoptIntents(ctx, tx, asked, intents, log); err != nil {
			return fmt.Errorf("replay pending tickets: %w", err)
		}
		replayed = len(intents)
		fresh := map[string]bool{}
		for _, in := range intents {
			fresh[in.ObjectKey] = true
		}
		open, err := store.OpenTicketsAbout(ctx, tx, keys)
		if err != nil {
			return err
		}
		for _, t := range open {
			if fresh[t.ObjectKey] {
				// Just created from its pending request: nothing older
				// to re-post.
				continue
			}
			err := h.Desk.AddComment(ctx, t.TicketID, ticketState(t), false, IdempotencyKey(asked.GetEventId(), "state:"+t.ObjectKey))
			switch {
			case err == nil:
				noted++
			case errors.Is(err, zendesk.ErrTicketGone):
				// Closed or deleted in the desk: it is no longer open here
				// either. Its last event stays what it was.
				store.TouchTicket(tx, t.ObjectKey, t.LastEventID, "solved")
				gone++
			default:
				return fmt.Errorf("re-post ticket %d: %w", t.TicketID, err)
			}
		}
		return nil
	})
	if err != nil {
		return h.resyncFailed(ctx, req, err)
	}
	log.InfoContext(ctx, "tickets re-sent", "outcome", resync.OutcomeResent, "replayed", replayed, "noted", noted, "gone", gone)
	return resync.Reply{Outcome: resync.OutcomeResent, Detail: resyncDetail(replayed, noted, gone)}
}

func (h *Handler) resyncFailed(ctx context.Context, req resync.Request, err error) resync.Reply {
	msg := redact.Error(err)
	h.Log.WarnContext(ctx, "ticket resync failed", "customer_id", req.CustomerID, "request_id", req.RequestID, "action", "resync",
		"outcome", resync.OutcomeFailed, "error", msg)
	return resync.Reply{Outcome: resync.OutcomeFailed, Detail: "the desk call failed: " + msg}
}

// ticketState is the note a resync adds to an open ticket: an internal
// note, like every comment this service writes.
func ticketState(t store.OpenTicket) string {
	return fmt.Sprintf("State re-sent from Launch Ready: this ticket about %s is open (priority %s) since %s; the latest event about it is %s, at %s.",
		t.ObjectKey, t.Priority, t.OpenedAt.UTC().Format(time.RFC3339), t.LastEventID, t.UpdatedAt.UTC().Format(time.RFC3339))
}

func resyncDetail(replayed, noted, gone int) string {
	var parts []string
	if replayed > 0 {
		parts = append(parts, plural(replayed, "pending ticket", "pending tickets")+" replayed")
	}
	if noted > 0 {
		parts = append(parts, plural(noted, "open ticket", "open tickets")+" re-posted")
	}
	if gone > 0 {
		parts = append(parts, plural(gone, "ticket", "tickets")+" found closed in the desk and marked solved")
	}
	return strings.Join(parts, "; ")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
