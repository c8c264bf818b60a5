// Package alerts sends ops alerts for billing events and measures how long
// after the Stripe event each one was accepted.
//
// Alerts are deduplicated by event id in support.alerts_sent: checked
// before sending, recorded after the channel accepted. Slack webhooks have
// no idempotency key, so one window stays open: a crash (or a database
// outage that outlasts the record retries) after Slack accepted and before
// the record commits sends that alert once more on redelivery. That
// duplicate is the accepted risk; the alternative, recording before
// sending, would lose the alert instead.
package alerts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/redact"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/services/support-notify/internal/metrics"
	"github.com/launchready/launchready/services/support-notify/internal/render"
	"github.com/launchready/launchready/services/support-notify/internal/rules"
	"github.com/launchready/launchready/services/support-notify/internal/store"
)

// Channel delivers an alert; nil means accepted.
type Channel interface {
	Send(ctx context.Context, msg render.SlackMessage) error
}

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
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

func (h *Handler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// Handle is the bus handler.
func (h *Handler) Handle(ctx context.Context, d *bus.Delivery) error {
	ev := d.Event
	if ev == nil || ev.GetEventId() == "" {
		return bus.Permanent(errors.New("alerts: delivery without an event"))
	}
	if !h.Rules.Decide(ev).Alert {
		return nil
	}
	log := h.Log.With("event_id", ev.GetEventId(), "event_type", ev.GetType(), "customer_id", ev.GetCustomerId(),
		"subscription_id", ev.GetSubscriptionId(), "delivery", d.Delivered, "action", "alert")
	if ev.GetSource() == billingv1.EventSource_EVENT_SOURCE_SNAPSHOT {
		// A backfill's snapshot of an object is history, not news.
		log.InfoContext(ctx, "snapshot: no alert", "outcome", "snapshot")
		return nil
	}
	created := ev.GetCreated().AsTime()
	age := h.now().Sub(created)
	if h.MaxAge > 0 && age > h.MaxAge && !d.Replay {
		log.WarnContext(ctx, "event too old to alert on", "outcome", "too_old", "age", age.Round(time.Second).String())
		return nil
	}
	conn, err := h.Pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("alert for %s: %w", ev.GetEventId(), err)
	}
	defer conn.Release()
	unlock, sent, err := store.LockAlert(ctx, conn, ev.GetEventId())
	if err != nil {
		return fmt.Errorf("alert for %s: %w", ev.GetEventId(), err)
	}
	defer unlock()
	if sent {
		d.MarkDuplicate()
		log.InfoContext(ctx, "alert already sent", "outcome", "duplicate")
		return nil
	}
	age = h.now().Sub(created)
	late := render.Lateness{Late: age > h.SLO, Age: age, SLO: h.SLO}
	if err := h.Channel.Send(ctx, render.Alert(ev, late)); err != nil {
		log.WarnContext(ctx, "alert not accepted", "outcome", "error", "error", redact.Error(err))
		return fmt.Errorf("alert for %s: %w", ev.GetEventId(), err)
	}
	accepted := h.now()
	latency := max(accepted.Sub(created), 0)
	// Late counts what the promise measures (acceptance), which also covers
	// an alert that left on time but waited on a slow channel.
	isLate := latency > h.SLO
	if h.Metrics != nil {
		h.Metrics.AlertsSent.Inc()
		h.Metrics.AlertLatency.Observe(latency.Seconds())
		if isLate {
			h.Metrics.AlertsLate.Inc()
		}
	}
	rec := store.SentAlert{EventID: ev.GetEventId(), EventType: ev.GetType(), CustomerID: ev.GetCustomerId(),
		EventCreated: created, SentAt: accepted, Latency: latency, Late: isLate}
	if err := h.record(ctx, conn, rec); err != nil {
		// Returning the error redelivers the event, which sends the alert
		// again: the documented duplicate, preferred to silence.
		log.ErrorContext(ctx, "alert sent but not recorded; a redelivery will send it again", "outcome", "unrecorded", "error", redact.Error(err))
		return fmt.Errorf("alert for %s: %w", ev.GetEventId(), err)
	}
	log.InfoContext(ctx, "alert sent", "outcome", "sent", "latency_seconds", latency.Seconds(), "late", isLate)
	return nil
}

// record retries the insert a few times: the alert is already out, and
// every failed record is a duplicate alert later. It writes on the
// connection that holds the lock; only when that connection broke does it
// borrow another from the pool, each attempt bounded so that an exhausted
// pool cannot stall the worker.
func (h *Handler) record(ctx context.Context, conn *pgxpool.Conn, a store.SentAlert) error {
	var err error
	wait := 200 * time.Millisecond
	for attempt := 0; attempt < 4; attempt++ {
		// The alert is out: finish recording even when shutdown has begun.
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		var db store.DB = conn
		if conn.Conn().IsClosed() {
			db = h.Pool
		}
		err = store.RecordAlert(actx, db, a)
		cancel()
		if err == nil {
			return nil
		}
		if attempt < 3 {
			t := time.NewTimer(wait)
			<-t.C
			wait *= 2
		}
	}
	return err
}

// LogChannel writes alerts to the log, for development.
type LogChannel struct{ Log *slog.Logger }

// Send logs the alert's fallback text.
func (c LogChannel) Send(ctx context.Context, msg render.SlackMessage) error {
	c.Log.InfoContext(ctx, "ops alert (log provider)", "text", msg.Text)
	return nil
}
