package alerts

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/redact"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/services/support-notify/internal/render"
	"github.com/launchready/launchready/services/support-notify/internal/store"
)

// item is one event's alert in the channel's queue.
type item struct {
	ev *billingv1.BillingEvent
	// waiters counts the tickets (deliveries) waiting for it; an item
	// nobody waits for any more leaves the queue. Guarded by sender.mu.
	waiters int
	// taken is set when a message carrying it is on its way.
	taken bool
	done  chan struct{}
	// Set before done is closed.
	err error
	// alreadySent: support.alerts_sent had it before this send.
	alreadySent bool
}

// sender serialises one channel: one message at a time, at most one per
// Window, each carrying everything that waited for it.
//
// It has no goroutine of its own. Whichever handler holds the turn (a
// one-slot channel) sends for everyone: it waits out the window, takes the
// whole queue, sends it as one alert or one digest, records it and settles
// every ticket in it. Handlers without the turn wait on their items, and
// take the turn when the holder leaves with their items still queued. A
// handler whose context ends withdraws its unsent items, so the bus's
// redelivery is the only retry.
type sender struct {
	h    *Handler
	out  Outlet
	turn chan struct{}

	mu      sync.Mutex
	pending []*item
	// byID holds every queued or in-flight item, so that two deliveries
	// of one event share one alert.
	byID map[string]*item
	// nextAt is when the channel may take the next message: the window
	// after the last answer, or a 429's Retry-After.
	nextAt time.Time
}

// sender returns the outlet's sender, made on first use.
func (h *Handler) sender(out Outlet) *sender {
	h.sendersMu.Lock()
	defer h.sendersMu.Unlock()
	if h.senders == nil {
		h.senders = map[string]*sender{}
	}
	s := h.senders[out.Name]
	if s == nil {
		s = &sender{h: h, out: out, turn: make(chan struct{}, 1), byID: map[string]*item{}}
		h.senders[out.Name] = s
	}
	return s
}

// window is the channel's shortest gap between two messages.
func (s *sender) window() time.Duration {
	switch {
	case s.out.Window > 0:
		return s.out.Window
	case s.h.Window > 0:
		return s.h.Window
	}
	return DefaultWindow
}

func (h *Handler) sendTimeout() time.Duration {
	if h.SendTimeout > 0 {
		return h.SendTimeout
	}
	return 30 * time.Second
}

// enqueue queues an item per ticket, or joins the ticket to the item of
// the same event already queued or on its way.
func (s *sender) enqueue(ts []*ticket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range ts {
		id := t.event().GetEventId()
		it := s.byID[id]
		if it == nil {
			it = &item{ev: t.event(), done: make(chan struct{})}
			s.byID[id] = it
			s.pending = append(s.pending, it)
		}
		it.waiters++
		t.item = it
	}
}

// await returns once every ticket's item is settled or ctx ends; it sends
// for everyone whenever it holds the turn.
func (s *sender) await(ctx context.Context, ts []*ticket) {
	for {
		next := firstUnsettled(ts)
		if next == nil {
			break
		}
		if ctx.Err() != nil {
			s.withdraw(ts)
			break
		}
		select {
		case <-next.item.done:
		case s.turn <- struct{}{}:
			s.drive(ctx, ts)
			<-s.turn
		case <-ctx.Done():
		}
	}
	for _, t := range ts {
		select {
		case <-t.item.done:
			t.err = t.item.err
			// Of several deliveries of one event, one sent it; the others
			// are duplicates, as is an event found already sent.
			t.duplicate = t.err == nil && (t.item.alreadySent || t != firstTicketOf(ts, t.item))
		default:
			t.err = withdrawn(ctx)
		}
	}
	s.release(ts)
}

func firstUnsettled(ts []*ticket) *ticket {
	for _, t := range ts {
		select {
		case <-t.item.done:
		default:
			return t
		}
	}
	return nil
}

func firstTicketOf(ts []*ticket, it *item) *ticket {
	for _, t := range ts {
		if t.item == it {
			return t
		}
	}
	return nil
}

// withdraw takes the tickets' unsent items out of the queue unless another
// handler still waits for them.
func (s *sender) withdraw(ts []*ticket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range ts {
		it := t.item
		if it.taken || it.waiters > 1 {
			continue
		}
		select {
		case <-it.done:
			continue
		default:
		}
		it.waiters = 0
		s.pending = slices.DeleteFunc(s.pending, func(x *item) bool { return x == it })
		delete(s.byID, it.ev.GetEventId())
	}
}

// release drops the tickets' claims on their items.
func (s *sender) release(ts []*ticket) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, t := range ts {
		if t.item.waiters > 0 {
			t.item.waiters--
		}
	}
}

// drive sends until the handler's own items are settled, or its context
// ends. It runs with the turn held.
func (s *sender) drive(ctx context.Context, own []*ticket) {
	for firstUnsettled(own) != nil && ctx.Err() == nil {
		s.mu.Lock()
		wait := time.Until(s.nextAt)
		s.mu.Unlock()
		if wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return
			}
		}
		batch := s.take()
		if len(batch) == 0 {
			return
		}
		s.deliver(ctx, batch)
	}
}

// take removes up to render.MaxDigest items from the head of the queue;
// with groups, only those of the head's group.
func (s *sender) take() []*item {
	s.mu.Lock()
	defer s.mu.Unlock()
	var batch []*item
	if s.out.Group == nil || len(s.pending) == 0 {
		n := min(len(s.pending), render.MaxDigest)
		batch = slices.Clone(s.pending[:n])
		s.pending = slices.Delete(s.pending, 0, n)
	} else {
		g := s.out.Group(s.pending[0].ev)
		var rest []*item
		for _, it := range s.pending {
			if len(batch) < render.MaxDigest && s.out.Group(it.ev) == g {
				batch = append(batch, it)
			} else {
				rest = append(rest, it)
			}
		}
		s.pending = rest
	}
	for _, it := range batch {
		it.taken = true
	}
	return batch
}

// settle completes items with err.
func (s *sender) settle(items []*item, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range items {
		it.err = err
		delete(s.byID, it.ev.GetEventId())
		close(it.done)
	}
}

// holdBack puts items back at the head of the queue, unsent, and keeps the
// channel closed for wait.
func (s *sender) holdBack(items []*item, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, it := range items {
		it.taken = false
	}
	s.pending = append(slices.Clone(items), s.pending...)
	s.nextAt = time.Now().Add(wait)
}

func (s *sender) pace(wait time.Duration) {
	s.mu.Lock()
	s.nextAt = time.Now().Add(wait)
	s.mu.Unlock()
}

// deliver sends one message for batch: it locks the events' alerts, leaves
// out those already sent, sends the rest alone or as a digest, and records
// them. The work is bounded by SendTimeout and outlives the driving
// handler's context, because it is done for every handler in the batch.
func (s *sender) deliver(ctx context.Context, batch []*item) {
	h := s.h
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), h.sendTimeout())
	defer cancel()
	conn, err := h.Pool.Acquire(ctx)
	if err != nil {
		s.settle(batch, err)
		return
	}
	defer conn.Release()
	ids := make([]string, len(batch))
	for i, it := range batch {
		ids[i] = it.ev.GetEventId()
	}
	unlock, sent, err := store.LockAlerts(ctx, conn, s.out.Name, ids)
	if err != nil {
		s.settle(batch, err)
		return
	}
	defer unlock()
	var fresh, dups []*item
	for _, it := range batch {
		if sent[it.ev.GetEventId()] {
			it.alreadySent = true
			dups = append(dups, it)
		} else {
			fresh = append(fresh, it)
		}
	}
	for _, it := range dups {
		h.Log.InfoContext(ctx, "alert already sent", "event_id", it.ev.GetEventId(), "channel", s.out.Name, "action", "alert", "outcome", "duplicate")
	}
	s.settle(dups, nil)
	if len(fresh) == 0 {
		return
	}

	evs := make([]*billingv1.BillingEvent, len(fresh))
	oldest := fresh[0].ev.GetCreated().AsTime()
	for i, it := range fresh {
		evs[i] = it.ev
		if c := it.ev.GetCreated().AsTime(); c.Before(oldest) {
			oldest = c
		}
	}
	age := h.now().Sub(oldest)
	late := render.Lateness{Late: age > h.SLO, Age: age, SLO: h.SLO}
	kind := "alone"
	if len(evs) > 1 {
		kind = "digest"
	}
	err = s.out.Deliver(ctx, evs, late)
	if err != nil {
		if d, ok := bus.RetryAfterDelay(err); ok {
			// The channel asked for a pause: honour it in place, and let
			// what arrives meanwhile join these in the next message.
			h.Log.WarnContext(ctx, "alert channel asked to wait; holding alerts", "channel", s.out.Name, "outcome", "rate_limited",
				"alerts", len(fresh), "retry_after", d.String())
			s.holdBack(fresh, max(d, s.window()))
			return
		}
		s.pace(s.window())
		for _, it := range fresh {
			h.Log.WarnContext(ctx, "alert not accepted", "event_id", it.ev.GetEventId(), "channel", s.out.Name, "action", "alert", "outcome", "error",
				"digest_size", len(fresh), "error", redact.Error(err))
		}
		s.settle(fresh, err)
		return
	}
	s.pace(s.window())
	accepted := h.now()
	recs := make([]store.SentAlert, len(fresh))
	for i, it := range fresh {
		created := it.ev.GetCreated().AsTime()
		latency := max(accepted.Sub(created), 0)
		recs[i] = store.SentAlert{Channel: s.out.Name, EventID: it.ev.GetEventId(), EventType: it.ev.GetType(), CustomerID: it.ev.GetCustomerId(),
			EventCreated: created, SentAt: accepted, Latency: latency, Late: latency > h.SLO, DigestSize: len(fresh)}
	}
	if h.Metrics != nil {
		h.Metrics.AlertMessages.WithLabelValues(s.out.Name, kind).Inc()
		for _, r := range recs {
			h.Metrics.AlertsSent.WithLabelValues(s.out.Name).Inc()
			h.Metrics.AlertLatency.WithLabelValues(s.out.Name).Observe(r.Latency.Seconds())
			// Late counts what the promise measures (acceptance), which
			// also covers an alert that left on time but waited on a slow
			// channel.
			if r.Late {
				h.Metrics.AlertsLate.WithLabelValues(s.out.Name).Inc()
			}
		}
	}
	if err := h.record(ctx, conn, recs); err != nil {
		// Returning the error redelivers the events, which sends them
		// again: the documented duplicate, preferred to silence.
		h.Log.ErrorContext(ctx, "alerts sent but not recorded; a redelivery will send them again", "channel", s.out.Name, "outcome", "unrecorded",
			"alerts", len(recs), "error", redact.Error(err))
		s.settle(fresh, err)
		return
	}
	for _, r := range recs {
		h.Log.InfoContext(ctx, "alert sent", "event_id", r.EventID, "customer_id", r.CustomerID, "channel", s.out.Name, "action", "alert", "outcome", "sent",
			"latency_seconds", r.Latency.Seconds(), "late", r.Late, "digest_size", r.DigestSize)
	}
	s.settle(fresh, nil)
}

// record retries the insert a few times: the alerts are already out, and
// every failed record is a duplicate alert later. It writes on the
// connection that holds the locks; only when that connection broke does it
// borrow another from the pool, each attempt bounded so that an exhausted
// pool cannot stall the sender.
func (h *Handler) record(ctx context.Context, conn *pgxpool.Conn, recs []store.SentAlert) error {
	var err error
	wait := 200 * time.Millisecond
	for attempt := 0; attempt < 4; attempt++ {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		var db store.DB = conn
		if conn.Conn().IsClosed() {
			db = h.Pool
		}
		err = store.RecordAlerts(actx, db, recs)
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
