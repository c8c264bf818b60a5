// Package alerts sends ops alerts for billing events on every configured
// channel (Slack, ops e-mail, customer e-mail, SMS: one Outlet each) and
// measures how long after the Stripe event each channel accepted each one.
// Every channel runs the same sender, described here for Slack.
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
// Alerts are deduplicated by channel and event id in support.alerts_sent: checked
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
	Pool  *pgxpool.Pool
	Rules *rules.Set
	// Channel is the Slack channel (or its log stand-in), the "slack"
	// outlet; nil for none.
	Channel Channel
	// Outlets are the other channels: e-mail, SMS. Each has its own queue,
	// pace and sent records, and folds bursts into digests the same way.
	Outlets []Outlet
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

	sendersMu sync.Mutex
	senders   map[string]*sender
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

// PostAlerts is the alerts consumer's batch handler: every delivery that
// needs an alert joins the queue of each channel that carries it, and the
// call returns once each has been sent (alone or in a digest), found
// already sent, or failed, on every channel. A delivery fails when any of
// its channels failed; the redelivery sends only on the channels that have
// not recorded it.
func (h *Handler) PostAlerts(ctx context.Context, ds []*bus.Delivery) []error {
	errs := make([]error, len(ds))
	var waiting []*pending
	for i, d := range ds {
		ev := d.Event
		if ev == nil || ev.GetEventId() == "" {
			errs[i] = bus.Permanent(errors.New("alerts: delivery without an event"))
			continue
		}
		decision := h.Rules.Decide(ev)
		if !decision.Alert && !decision.EmailCustomer {
			continue
		}
		if decision.Alert && render.Smoke(ev) {
			// A smoke test proves every ops channel, the SMS included,
			// whatever the rules' urgency.
			decision.Urgent = true
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
		waiting = append(waiting, &pending{index: i, delivery: d, ev: ev, log: log, decision: decision})
	}
	if len(waiting) == 0 {
		return errs
	}
	// Alerts naming only a charge wait for its customer apart from the
	// rest, which leave at once.
	var ready, naming []*pending
	for _, p := range waiting {
		if h.Links != nil && links.Needs(p.ev) {
			naming = append(naming, p)
		} else {
			ready = append(ready, p)
		}
	}
	var wg sync.WaitGroup
	if len(naming) > 0 {
		wg.Go(func() {
			var each sync.WaitGroup
			for _, p := range naming {
				each.Go(func() {
					named, found, err := h.Links.Name(ctx, p.ev)
					if err != nil {
						// The alert still goes, naming the charge.
						p.log.WarnContext(ctx, "customer of the charge not found", "outcome", "link_error", "error", redact.Error(err))
						return
					}
					p.log.InfoContext(ctx, "customer of the charge", "customer_id", named.GetCustomerId(), "outcome", string(found))
					p.ev = named
				})
			}
			each.Wait()
			h.dispatch(ctx, naming)
		})
	}
	if len(ready) > 0 {
		h.dispatch(ctx, ready)
	}
	wg.Wait()
	for _, p := range waiting {
		errs[p.index] = p.result()
		if p.duplicate() {
			p.delivery.MarkDuplicate()
		}
	}
	return errs
}

// dispatch queues each delivery's alert on every channel that carries it
// and waits for all of them.
func (h *Handler) dispatch(ctx context.Context, ps []*pending) {
	var wg sync.WaitGroup
	for _, out := range h.outlets() {
		var ts []*ticket
		for _, p := range ps {
			if !out.Carries(p.decision, p.ev) {
				continue
			}
			t := &ticket{index: p.index, delivery: p.delivery, ev: p.ev, channel: out.Name, log: p.log.With("channel", out.Name)}
			p.tickets = append(p.tickets, t)
			ts = append(ts, t)
		}
		if len(ts) == 0 {
			continue
		}
		s := h.sender(out)
		wg.Go(func() {
			s.enqueue(ts)
			s.await(ctx, ts)
		})
	}
	wg.Wait()
}

// pending is one delivery that needs alerts, with its ticket on each
// channel that carries it.
type pending struct {
	index    int
	delivery *bus.Delivery
	ev       *billingv1.BillingEvent
	log      *slog.Logger
	decision rules.Decision
	tickets  []*ticket
}

// result is the delivery's outcome over its channels. When some channel
// may still succeed on a retry, a permanent failure of another must not
// dead-letter the event at once, so its mark is left off (past MaxDeliver
// the event is dead-lettered all the same).
func (p *pending) result() error {
	var failed []*ticket
	allPermanent := true
	for _, t := range p.tickets {
		if t.err != nil {
			failed = append(failed, t)
			allPermanent = allPermanent && bus.IsPermanent(t.err)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	es := make([]error, len(failed))
	for i, t := range failed {
		if allPermanent || !bus.IsPermanent(t.err) {
			es[i] = fmt.Errorf("%s: %w", t.channel, t.err)
		} else {
			es[i] = fmt.Errorf("%s: %s", t.channel, t.err)
		}
	}
	if len(es) == 1 {
		return es[0]
	}
	return errors.Join(es...)
}

// duplicate: every channel had already sent the event's alert.
func (p *pending) duplicate() bool {
	for _, t := range p.tickets {
		if t.err != nil || !t.duplicate {
			return false
		}
	}
	return len(p.tickets) > 0
}

// ticket is one delivery waiting for its alert on one channel.
type ticket struct {
	index    int
	delivery *bus.Delivery
	// ev is the delivery's event, with its customer filled in when it
	// named only a charge.
	ev      *billingv1.BillingEvent
	channel string
	log     *slog.Logger
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
