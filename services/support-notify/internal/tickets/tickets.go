// Package tickets turns billing events into support tickets: one ticket per
// Stripe object (invoice, dispute, subscription, payment), later events
// about the object as comments on its open ticket, and a "resolved" comment
// that solves it when the payment finally succeeds.
//
// Exactly once: the ticket row and the processed_events row commit in one
// transaction; the Zendesk call happens inside that transaction, under an
// advisory lock on the object, so two events about one invoice never race
// to open two tickets. Before a ticket is created, its exact request and
// Idempotency-Key are committed as an intent. A crash after Zendesk answered
// but before the commit leaves that intent pending, and whichever event
// about the object comes next (the redelivery, or a later failure or
// payment) replays it first: Zendesk answers with the ticket it already
// opened, and the object never gets a second, orphaned ticket.
package tickets

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/redact"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/services/support-notify/internal/links"
	"github.com/launchready/launchready/services/support-notify/internal/metrics"
	"github.com/launchready/launchready/services/support-notify/internal/render"
	"github.com/launchready/launchready/services/support-notify/internal/rules"
	"github.com/launchready/launchready/services/support-notify/internal/store"
	"github.com/launchready/launchready/services/support-notify/internal/zendesk"
)

// Desk is a support desk: Zendesk, or the log in development.
type Desk interface {
	CreateTicket(ctx context.Context, t zendesk.NewTicket, idempotencyKey string) (int64, error)
	// AddComment returns an error wrapping zendesk.ErrTicketGone when the
	// ticket can no longer take comments.
	AddComment(ctx context.Context, ticketID int64, body string, solve bool, idempotencyKey string) error
}

// Handler applies ticket and resolve actions.
type Handler struct {
	Consumer string // durable name, the processed_events key
	Pool     *pgxpool.Pool
	Rules    *rules.Set
	Desk     Desk
	Metrics  *metrics.Metrics
	Log      *slog.Logger
	// MaxAge skips ticket actions for events older than this (0: never),
	// so that a new durable reading a month of stream history does not
	// open a month of tickets. Resolutions always apply, and replays of
	// dead letters are always handled.
	MaxAge time.Duration
	// Links finds the customer of a dispute, which names only its charge;
	// nil leaves such events as they are.
	Links *links.Resolver
}

// IdempotencyKey is stable per (event, action), so a redelivery repeats the
// key and a different action on the same event does not collide.
func IdempotencyKey(eventID, action string) string {
	return "launchready-support-notify:" + eventID + ":" + action
}

// OpenOrResolveTicket opens, updates or resolves the desk ticket the rules
// tie to the delivered event; it is the tickets consumer's bus handler.
func (h *Handler) OpenOrResolveTicket(ctx context.Context, d *bus.Delivery) error {
	ev := d.Event
	if ev == nil || ev.GetEventId() == "" {
		return bus.Permanent(errors.New("tickets: delivery without an event"))
	}
	learned := links.Learned(ev)
	dec := h.Rules.Decide(ev)
	if !dec.Ticket && !dec.Resolve {
		if len(learned) > 0 {
			return h.learnAlone(ctx, ev, learned)
		}
		return nil
	}
	awaiting := ""
	if dec.Ticket && h.Links != nil && links.Needs(ev) {
		named, found, err := h.Links.Name(ctx, ev)
		if err != nil {
			return fmt.Errorf("customer of %s: %w", ev.GetEventId(), err)
		}
		h.Log.InfoContext(ctx, "customer of the charge", "event_id", ev.GetEventId(), "charge_id", ev.GetChargeId(),
			"customer_id", named.GetCustomerId(), "outcome", string(found))
		if found == links.Unknown {
			awaiting = ev.GetChargeId()
		}
		ev = named
	}
	if dec.Ticket && ev.GetSource() == billingv1.EventSource_EVENT_SOURCE_SNAPSHOT {
		// A backfill's snapshot of an object is history, not news: it
		// opens nothing. It may still resolve a ticket about its object.
		h.Log.InfoContext(ctx, "snapshot: no ticket", "event_id", ev.GetEventId(), "customer_id", ev.GetCustomerId(),
			"action", "ticket", "delivery", d.Delivered, "outcome", "snapshot")
		return nil
	}
	if age := time.Since(ev.GetCreated().AsTime()); dec.Ticket && h.MaxAge > 0 && age > h.MaxAge && !d.Replay {
		h.Log.WarnContext(ctx, "event too old to open a ticket for", "event_id", ev.GetEventId(), "customer_id", ev.GetCustomerId(),
			"action", "ticket", "delivery", d.Delivered, "outcome", "too_old", "age", age.Round(time.Second).String())
		return nil
	}
	primary, related := render.Keys(ev)
	keys := append([]string{primary}, related...)
	log := h.Log.With("event_id", ev.GetEventId(), "event_type", ev.GetType(), "customer_id", ev.GetCustomerId(),
		"subscription_id", ev.GetSubscriptionId(), "delivery", d.Delivered, "object", primary)

	var outcome string
	var ticketID int64
	var err error
	// The first pass commits only the intent when a ticket must be
	// created; the second replays it and records the ticket.
	for pass := 0; ; pass++ {
		outcome, ticketID, err = h.attempt(ctx, ev, d.StreamSeq, dec, keys, primary, learned, awaiting, log)
		if err != nil || outcome != outcomeIntent {
			break
		}
		if pass > 0 {
			err = fmt.Errorf("ticket intent for %s was recorded twice without a ticket", primary)
			break
		}
	}
	if err != nil {
		log.WarnContext(ctx, "ticket action failed", "action", actionName(dec), "outcome", "error", "error", redact.Error(err))
		return fmt.Errorf("ticket for %s: %w", ev.GetEventId(), err)
	}
	switch outcome {
	case "duplicate":
		d.MarkDuplicate()
	case "created", "commented", "resolved":
		if h.Metrics != nil {
			h.Metrics.Tickets.WithLabelValues(outcome).Inc()
		}
	}
	log.InfoContext(ctx, "ticket action done", "action", actionName(dec), "outcome", outcome, "ticket_id", ticketID)
	return nil
}

// learnAlone records the charge → customer links of an event no rule
// acts on (a charge, a payment), and adds the customer to the open tickets
// that were waiting for it.
func (h *Handler) learnAlone(ctx context.Context, ev *billingv1.BillingEvent, learned []store.ChargeCustomer) error {
	err := pg.InTx(ctx, h.Pool, func(tx *pg.Tx) error {
		store.LockObjects(tx, store.ChargeLockKeys(refsOf(learned)))
		store.QueueLearnChargeCustomers(tx, learned)
		awaiting, err := store.TicketsAwaiting(ctx, tx, refsOf(learned))
		if err != nil {
			return err
		}
		return h.addCustomer(ctx, tx, ev, awaiting)
	})
	if err != nil {
		return fmt.Errorf("charge customer from %s: %w", ev.GetEventId(), err)
	}
	return nil
}

// addCustomer names the customer ev teaches on each ticket that opened
// before it was known, in an internal comment, and ends their wait.
func (h *Handler) addCustomer(ctx context.Context, tx *pg.Tx, ev *billingv1.BillingEvent, awaiting []store.AwaitingTicket) error {
	for _, t := range awaiting {
		body := render.CustomerFound(ev, t.Charge)
		err := h.Desk.AddComment(ctx, t.TicketID, body, false, IdempotencyKey(ev.GetEventId(), "customer:"+t.ObjectKey))
		if err != nil && !errors.Is(err, zendesk.ErrTicketGone) {
			return fmt.Errorf("add the customer to ticket %d: %w", t.TicketID, err)
		}
		store.CustomerFound(tx, t.ObjectKey)
		h.Log.InfoContext(ctx, "customer added to a waiting ticket", "event_id", ev.GetEventId(), "customer_id", ev.GetCustomerId(),
			"ticket_id", t.TicketID, "charge_id", t.Charge, "action", "ticket", "outcome", "customer_added")
	}
	return nil
}

// awaitCustomer marks the ticket about objectKey as waiting for the
// customer of charge, under the charge's lock. A link learned since the
// event was named (its transaction committed before this one took the
// lock) adds the customer at once.
func (h *Handler) awaitCustomer(ctx context.Context, tx *pg.Tx, objectKey string, ticketID int64, charge string) error {
	store.AwaitCustomer(tx, objectKey, charge)
	link, found, err := store.ChargeCustomerOf(ctx, tx, []string{charge})
	if err != nil || !found {
		return err
	}
	teacher := &billingv1.BillingEvent{EventId: link.Source, CustomerId: link.CustomerID, Email: link.Email, CustomerName: link.Name}
	return h.addCustomer(ctx, tx, teacher, []store.AwaitingTicket{{ObjectKey: objectKey, TicketID: ticketID, Charge: charge}})
}

func refsOf(learned []store.ChargeCustomer) []string {
	out := make([]string, len(learned))
	for i, l := range learned {
		out[i] = l.Ref
	}
	return out
}

// outcomeIntent means the pass only committed a ticket intent.
const outcomeIntent = "intent"

// attempt runs one transaction: pending intents about the objects first,
// then the event's own action.
//
// seq is the event's place in the stream: it tells an event that a
// resolution handled before it still came after it (see ticket).
//
// waitCharge names the charge whose customer the event's new ticket still
// lacks. The charge's lock, taken by every event that teaches a charge's
// customer too, makes marking the ticket and learning the link take turns:
// whichever commits second sees the other, so the customer is always added.
func (h *Handler) attempt(ctx context.Context, ev *billingv1.BillingEvent, seq uint64, dec rules.Decision, keys []string, primary string,
	learned []store.ChargeCustomer, waitCharge string, log *slog.Logger) (string, int64, error) {
	var outcome string
	var ticketID int64
	// Three round trips: BEGIN, the locks, the duplicate check and the
	// pending intents; the intents' records with what the objects' tickets
	// are; the event's own writes with COMMIT.
	err := pg.InTx(ctx, h.Pool, func(tx *pg.Tx) error {
		locks := append(slices.Clone(keys), store.ChargeLockKeys(refsOf(learned))...)
		if waitCharge != "" {
			locks = append(locks, store.ChargeLockKeys([]string{waitCharge})...)
		}
		store.LockObjects(tx, locks)
		store.QueueLearnChargeCustomers(tx, learned)
		done, intents, awaiting, err := store.Start(ctx, tx, h.Consumer, ev.GetEventId(), keys, refsOf(learned))
		if err != nil || done {
			outcome = "duplicate"
			return err
		}
		if err := h.adoptIntents(ctx, tx, ev, intents, log); err != nil {
			return err
		}
		if err := h.addCustomer(ctx, tx, ev, awaiting); err != nil {
			return err
		}
		obj, err := store.ReadObjects(ctx, tx, keys, ev.GetEventId())
		if err != nil {
			return err
		}
		if dec.Resolve {
			outcome, ticketID, err = h.resolve(ctx, tx, ev, seq, primary, obj.Open)
		} else {
			outcome, ticketID, err = h.ticket(ctx, tx, ev, seq, primary, obj, dec.Priority)
		}
		if err != nil || outcome == outcomeIntent {
			return err
		}
		if outcome == "created" && waitCharge != "" {
			if err := h.awaitCustomer(ctx, tx, primary, ticketID, waitCharge); err != nil {
				return err
			}
		}
		store.MarkProcessed(tx, h.Consumer, ev.GetEventId(), ev.GetType(), outcome)
		return nil
	})
	return outcome, ticketID, err
}

// adoptIntents replays the pending ticket creations about keys with their
// own request and Idempotency-Key, and records the tickets Zendesk returns,
// so that the event at hand sees them as the objects' open tickets.
func (h *Handler) adoptIntents(ctx context.Context, tx *pg.Tx, ev *billingv1.BillingEvent, intents []store.Intent, log *slog.Logger) error {
	for _, in := range intents {
		var req zendesk.NewTicket
		if err := json.Unmarshal(in.Request, &req); err != nil {
			return fmt.Errorf("decode ticket intent %s: %w", in.IdempotencyKey, err)
		}
		id, err := h.Desk.CreateTicket(ctx, req, in.IdempotencyKey)
		if err != nil {
			if bus.IsPermanent(err) && in.EventID != ev.GetEventId() {
				// Its own event dead-letters with the error; a later
				// event must not be blocked by it.
				log.WarnContext(ctx, "ticket intent refused by the desk, abandoned", "action", "ticket", "outcome", "intent_abandoned",
					"intent_event_id", in.EventID, "error", redact.Error(err))
				store.AbandonIntent(tx, in.IdempotencyKey)
				continue
			}
			return err
		}
		t := store.Ticket{ObjectKey: in.ObjectKey, TicketID: id, Priority: req.Priority}
		store.InsertTicket(tx, t, in.CustomerID, in.EventID)
		store.CompleteIntent(tx, in.IdempotencyKey, id)
		if in.EventID != ev.GetEventId() {
			log.InfoContext(ctx, "ticket recovered from an interrupted creation", "action", "ticket", "outcome", "recovered",
				"ticket_id", id, "intent_event_id", in.EventID)
		}
	}
	return nil
}

func actionName(d rules.Decision) string {
	if d.Resolve {
		return "resolve"
	}
	return "ticket"
}

// ticket opens a ticket about primary, or comments on the open one.
//
// A resolution already recorded for the object means one of two things.
// Either the success came first in the stream (Stripe does not order
// events) and this failure was overtaken by it: nothing to do. Or this
// event came first but was handled later, because its worker was held up
// (a dispute waits up to SUPPORT_LINK_WAIT for its charge's customer while
// another worker takes its close): then the event does what it would have
// done in stream order, and the resolution solves the ticket after it, so
// the outcome does not depend on which worker was quicker.
func (h *Handler) ticket(ctx context.Context, tx *pg.Tx, ev *billingv1.BillingEvent, seq uint64, primary string, obj store.Objects, priority string) (string, int64, error) {
	late := obj.Resolution.CameAfter(seq)
	if obj.Opened {
		// This event's intent was replayed, here or by a later event.
		if late {
			if err := h.solveLate(ctx, tx, obj.Resolution, primary, obj.OpenedBy); err != nil {
				return "", 0, err
			}
		}
		return "created", obj.OpenedBy, nil
	}
	open := obj.Open
	if obj.Resolution.EventID != "" && !late {
		return "already_resolved", 0, nil
	}
	if open != nil {
		err := h.Desk.AddComment(ctx, open.TicketID, render.Details(ev), false, IdempotencyKey(ev.GetEventId(), "comment"))
		switch {
		case err == nil:
			store.TouchTicket(tx, open.ObjectKey, ev.GetEventId(), "open")
			if late {
				if err := h.solveLate(ctx, tx, obj.Resolution, open.ObjectKey, open.TicketID); err != nil {
					return "", 0, err
				}
			}
			return "commented", open.TicketID, nil
		case errors.Is(err, zendesk.ErrTicketGone):
			// Closed or deleted in Zendesk: forget it and open a follow-up.
			store.TouchTicket(tx, open.ObjectKey, ev.GetEventId(), "solved")
		default:
			return "", 0, err
		}
	}
	content := render.NewTicket(ev)
	req, err := json.Marshal(zendesk.NewTicket{
		Subject:        content.Subject,
		Body:           content.Body,
		Tags:           content.Tags,
		Priority:       priority,
		ExternalID:     ev.GetEventId(),
		RequesterEmail: ev.GetEmail(),
		RequesterName:  ev.GetCustomerName(),
	})
	if err != nil {
		return "", 0, fmt.Errorf("encode ticket for %s: %w", primary, err)
	}
	in := store.Intent{IdempotencyKey: IdempotencyKey(ev.GetEventId(), "ticket"), ObjectKey: primary, EventID: ev.GetEventId(),
		CustomerID: ev.GetCustomerId(), Request: req}
	store.RecordIntent(tx, in)
	return outcomeIntent, 0, nil
}

// resolve comments on and solves the open ticket about the object; with no
// open ticket it only remembers the object is settled, with the comment an
// event earlier in the stream but handled after it will need (see ticket).
func (h *Handler) resolve(ctx context.Context, tx *pg.Tx, ev *billingv1.BillingEvent, seq uint64, primary string, open *store.Ticket) (string, int64, error) {
	r := store.Resolution{ObjectKey: primary, EventID: ev.GetEventId(), EventType: ev.GetType(), StreamSeq: seq, Comment: render.Resolved(ev)}
	if open == nil {
		store.Resolve(tx, r)
		return "nothing_open", 0, nil
	}
	if err := h.solve(ctx, tx, r, open.ObjectKey, open.TicketID); err != nil {
		return "", 0, err
	}
	r.SolvedTicket = true
	store.Resolve(tx, r)
	return "resolved", open.TicketID, nil
}

// solveLate solves, with r's comment, the ticket that an event earlier in
// the stream than r opened or updated after r was handled.
func (h *Handler) solveLate(ctx context.Context, tx *pg.Tx, r store.Resolution, objectKey string, ticketID int64) error {
	if err := h.solve(ctx, tx, r, objectKey, ticketID); err != nil {
		return err
	}
	store.ResolutionSolvedTicket(tx, r.ObjectKey)
	h.Log.InfoContext(ctx, "ticket solved by a resolution handled before it", "ticket_id", ticketID, "resolved_by", r.EventID,
		"action", "resolve", "outcome", "resolved_late")
	return nil
}

// solve leaves r's comment on the ticket and marks it solved. The
// Idempotency-Key is the resolving event's, whichever event makes the call.
func (h *Handler) solve(ctx context.Context, tx *pg.Tx, r store.Resolution, objectKey string, ticketID int64) error {
	err := h.Desk.AddComment(ctx, ticketID, r.Comment, true, IdempotencyKey(r.EventID, "resolve"))
	if err != nil && !errors.Is(err, zendesk.ErrTicketGone) {
		return err
	}
	store.TouchTicket(tx, objectKey, r.EventID, "solved")
	return nil
}

// LogDesk writes tickets to the log instead of a desk, for development.
// Ticket ids derive from the idempotency key, so a replay gets the same id
// just as Zendesk would answer.
type LogDesk struct{ Log *slog.Logger }

// CreateTicket logs the ticket.
func (d LogDesk) CreateTicket(ctx context.Context, t zendesk.NewTicket, key string) (int64, error) {
	h := fnv.New64a()
	_, _ = h.Write([]byte(key))
	id := int64(h.Sum64() >> 12) // positive, within JSON's exact integers
	d.Log.InfoContext(ctx, "support ticket (log provider)", "ticket_id", id, "subject", t.Subject, "priority", t.Priority,
		"tags", t.Tags, "external_id", t.ExternalID, "body", t.Body)
	return id, nil
}

// AddComment logs the comment.
func (d LogDesk) AddComment(ctx context.Context, id int64, body string, solve bool, key string) error {
	d.Log.InfoContext(ctx, "support ticket comment (log provider)", "ticket_id", id, "solve", solve, "body", body)
	return nil
}
