// Package alerts sends ops alerts for billing events and measures how long
// after the Stripe event each one was accepted.
//
// A channel takes about one message a second (a Slack incoming webhook
// answers 429 beyond that). Alerts that arrive while the channel is busy,
// or within Window of its last message, wait together and leave as one
// digest: the count by type and reason, the total amount, the top
// customers and every event id. A quiet channel still gets each alert
// alone and at once. A 429's Retry-After holds the channel, and the alerts
// waiting meanwhile fold into the next message, so a burst of 600 failures
// costs a message a second, not 600 and ten minutes.
//
// Alerts are deduplicated by event id in support.alerts_sent: checked
// before sending, recorded after the channel accepted. Slack webhooks have
// no idempotency key, so one window stays open: a crash (or a database
// outage that outlasts the record retries) after Slack accepted and before
// the record commits sends those alerts once more on redelivery. That
// duplicate is the accepted risk; the alternative, recording before
// sending, would lose the alerts instead.
package alerts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/redact"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/services/support-notify/internal/links"
	"github.com/launchready/launchready/services/support-notify/internal/metrics"
	"github.com/launchready/launchready/services/support-notify/internal/render"
	"github.com/launchready/launchready/services/support-notify/internal/rules"
)

// Channel delivers an alert; nil means accepted.
type Channel interface {
	Send(ctx context.Context, msg render.SlackMessage) error
}

// DefaultWindow is the shortest gap between two messages on a channel:
// Slack takes about one message a second per webhook.
const DefaultWindow = time.Second

// Handler applies alert actions.
type Handler struct {
	Pool    *pgxpool.Pool
	Rules   *rules.Set
	Channel Channel
	Metrics *metrics.Metrics
	Log     *slog.Logger
	// SLO is the promise: alerts accepted within SLO of the event.
	SLO time.Duration
	// MaxAge skips events older than this (0: never), so that a new
	// durable reading a month of stream history does not page anyone for
	// it. Replays of dead letters are always handled.
	MaxAge time.Duration
	// Window is the shortest gap between two messages on the channel
	// (0: DefaultWindow). Alerts arriving within it fold into one digest.
	Window time.Duration
	// SendTimeout bounds one message, lock to record (0: 30 s).
	SendTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Links finds the customer of a dispute, which names only its charge;
	// nil leaves such events as they are.
	Links *links.Resolver

	senderOnce senderOnce
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// PostAlert is PostAlerts for one delivery.
func (h *Handler) PostAlert(ctx context.Context, d *bus.Delivery) error {
	return h.PostAlerts(ctx, []*bus.Delivery{d})[0]
}

// PostAlerts is the alerts consumer's batch handler: every delivery that needs an alert
// joins the channel's queue, and the call returns once each has been sent
// (alone or in a digest), found already sent, or failed.
func (h *Handler) PostAlerts(ctx context.Context, ds []*bus.Delivery) []error {
	errs := make([]error, len(ds))
	var waiting []*ticket
	for i, d := range ds {
		ev := d.Event
		if ev == nil || ev.GetEventId() == "" {
			errs[i] = bus.Permanent(errors.New("alerts: delivery without an event"))
			continue
		}
		if !h.Rules.Decide(ev).Alert {
			continue
		}
		log := h.Log.With("event_id", ev.GetEventId(), "event_type", ev.GetType(), "customer_id", ev.GetCustomerId(),
			"subscription_id", ev.GetSubscriptionId(), "delivery", d.Delivered, "action", "alert")
		if ev.GetSource() == billingv1.EventSource_EVENT_SOURCE_SNAPSHOT {
			// A backfill's snapshot of an object is history, not news.
			log.InfoContext(d.Context(), "snapshot: no alert", "outcome", "snapshot")
			continue
		}
		if age := h.now().Sub(ev.GetCreated().AsTime()); h.MaxAge > 0 && age > h.MaxAge && !d.Replay {
			log.WarnContext(d.Context(), "event too old to alert on", "outcome", "too_old", "age", age.Round(time.Second).String())
			continue
		}
		waiting = append(waiting, &ticket{index: i, delivery: d, ev: ev, log: log})
	}
	if len(waiting) == 0 {
		return errs
	}
	// Alerts naming only a charge wait for its customer apart from the
	// rest, which leave at once.
	var ready, naming []*ticket
	for _, t := range waiting {
		if h.Links != nil && links.Needs(t.ev) {
			naming = append(naming, t)
		} else {
			ready = append(ready, t)
		}
	}
	s := h.sender()
	var wg sync.WaitGroup
	if len(naming) > 0 {
		wg.Go(func() {
			var each sync.WaitGroup
			for _, t := range naming {
				each.Go(func() {
					named, found, err := h.Links.Name(ctx, t.ev)
					if err != nil {
						// The alert still goes, naming the charge.
						t.log.WarnContext(ctx, "customer of the charge not found", "outcome", "link_error", "error", redact.Error(err))
						return
					}
					t.log.InfoContext(ctx, "customer of the charge", "customer_id", named.GetCustomerId(), "outcome", string(found))
					t.ev = named
				})
			}
			each.Wait()
			s.enqueue(naming)
			s.await(ctx, naming)
		})
	}
	if len(ready) > 0 {
		s.enqueue(ready)
		s.await(ctx, ready)
	}
	wg.Wait()
	for _, t := range waiting {
		errs[t.index] = t.err
		if t.duplicate {
			t.delivery.MarkDuplicate()
		}
	}
	return errs
}

// ticket is one delivery waiting for its alert.
type ticket struct {
	index    int
	delivery *bus.Delivery
	// ev is the delivery's event, with its customer filled in when it
	// named only a charge.
	ev  *billingv1.BillingEvent
	log *slog.Logger
	// item is the queued alert; deliveries of one event share it.
	item *item
	// Set when the ticket is settled.
	err       error
	duplicate bool
}

func (t *ticket) event() *billingv1.BillingEvent { return t.ev }

// LogChannel writes alerts to the log, for development.
type LogChannel struct{ Log *slog.Logger }

// Send logs the alert's fallback text.
func (c LogChannel) Send(ctx context.Context, msg render.SlackMessage) error {
	c.Log.InfoContext(ctx, "ops alert (log provider)", "text", msg.Text)
	return nil
}

// errWithdrawn settles a ticket whose handler gave up before its alert
// left; the bus redelivers it.
var errWithdrawn = errors.New("alert withdrawn before it was sent")

func withdrawn(ctx context.Context) error {
	return fmt.Errorf("%w: %w", errWithdrawn, context.Cause(ctx))
}
