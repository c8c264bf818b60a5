// Package relay publishes billing-state's outbox: each committed status
// change goes to billing.status.<customer id> as a CustomerStatus, in
// commit order, with Nats-Msg-Id "outbox-<id>". A crash between the publish
// and the mark re-publishes the row with the same id, which JetStream drops
// as a duplicate, so watchers see each change once.
package relay

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/services/billing-state/internal/state"
)

// Publisher is the part of bus.Publisher the relay uses.
type Publisher interface {
	PublishAll(ctx context.Context, msgs []bus.Message) ([]bus.PubResult, error)
}

// Options tune the relay.
type Options struct {
	// Poll is the longest a committed change waits when no in-process kick
	// arrives (another replica's commit, a restart): 50ms.
	Poll time.Duration
	// Batch is the most rows per transaction: 200.
	Batch int
	// Retention is how long published rows stay in the outbox before the
	// relay deletes them (24h); negative keeps them forever. The change's
	// history stays in audit_log either way.
	Retention time.Duration
	// PruneEvery is the pause between deletions of expired rows (1m).
	PruneEvery time.Duration
	Logger     *slog.Logger
	Registry   prometheus.Registerer
}

// Relay moves outbox rows to NATS.
type Relay struct {
	store *state.Store
	pub   Publisher
	opts  Options
	log   *slog.Logger
	kick  chan struct{}

	published prometheus.Counter
	pruned    prometheus.Counter
	lag       prometheus.Observer
	pending   prometheus.Gauge
	failures  prometheus.Counter
}

// New returns a relay. Register Kick as the store's OutboxWritten hook.
func New(store *state.Store, pub Publisher, o Options) *Relay {
	if o.Poll <= 0 {
		o.Poll = 50 * time.Millisecond
	}
	if o.Batch <= 0 {
		o.Batch = 200
	}
	if o.Retention == 0 {
		o.Retention = 24 * time.Hour
	}
	if o.PruneEvery <= 0 {
		o.PruneEvery = time.Minute
	}
	log := o.Logger
	if log == nil {
		log = logging.Discard()
	}
	r := &Relay{store: store, pub: pub, opts: o, log: log, kick: make(chan struct{}, 1)}
	r.published = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lr_billing_state_outbox_published_total", Help: "Status changes published from the outbox.",
	})
	r.pruned = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lr_billing_state_outbox_pruned_total", Help: "Published outbox rows deleted after the retention.",
	})
	r.lag = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "lr_billing_state_outbox_lag_seconds",
		Help:    "Time from the status change's commit to its publish.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 5, 30},
	})
	r.pending = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "lr_billing_state_outbox_pending", Help: "Outbox rows not yet published (refreshed while the relay idles).",
	})
	r.failures = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "lr_billing_state_outbox_publish_failures_total", Help: "Relay passes that could not publish.",
	})
	if o.Registry != nil {
		for _, c := range []prometheus.Collector{r.published, r.pruned, r.lag.(prometheus.Histogram), r.pending, r.failures} {
			_ = o.Registry.Register(c)
		}
	}
	return r
}

// Kick wakes the relay now; it never blocks.
func (r *Relay) Kick() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// Run publishes until ctx ends.
func (r *Relay) Run(ctx context.Context) error {
	poll := time.NewTimer(r.opts.Poll)
	defer poll.Stop()
	backoff := time.Duration(0)
	lastGauge, lastPrune := time.Time{}, time.Now()
	for {
		n, err := r.store.PublishOutbox(ctx, r.opts.Batch, r.publish)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			r.failures.Inc()
			backoff = min(max(2*backoff, 100*time.Millisecond), 5*time.Second)
			r.log.WarnContext(ctx, "outbox relay pass failed; retrying", "action", "outbox_publish", "error", bus.Redact(err.Error()), "retry_in", backoff.String())
		default:
			backoff = 0
		}
		if n >= r.opts.Batch && err == nil {
			continue // more waiting
		}
		if time.Since(lastGauge) > 5*time.Second {
			if p, _, perr := r.store.OutboxPending(ctx); perr == nil {
				r.pending.Set(float64(p))
			}
			lastGauge = time.Now()
		}
		if time.Since(lastPrune) > r.opts.PruneEvery {
			r.prune(ctx)
			lastPrune = time.Now()
		}
		wait := r.opts.Poll
		if backoff > 0 {
			wait = backoff
		}
		if !poll.Stop() {
			select {
			case <-poll.C:
			default:
			}
		}
		poll.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
			if backoff > 0 {
				// Do not let kicks turn a backoff into a busy loop.
				select {
				case <-ctx.Done():
					return nil
				case <-poll.C:
				}
			}
		case <-poll.C:
		}
	}
}

// pruneBatch is the most rows one DELETE takes, and pruneRounds the most
// DELETEs in a row: a backlog of expired rows (the first start with a
// retention, say) goes in steps that never hold the relay for long.
const (
	pruneBatch  = 1000
	pruneRounds = 20
)

// prune deletes published rows past the retention.
func (r *Relay) prune(ctx context.Context) {
	if r.opts.Retention < 0 {
		return
	}
	for range pruneRounds {
		n, err := r.store.PruneOutbox(ctx, r.opts.Retention, pruneBatch)
		if err != nil {
			if ctx.Err() == nil {
				r.log.WarnContext(ctx, "outbox prune failed; retrying later", "action", "outbox_prune", "error", bus.Redact(err.Error()))
			}
			return
		}
		r.pruned.Add(float64(n))
		if n < pruneBatch {
			return
		}
	}
}

// publish sends a claimed batch in one go (see bus.Publisher.PublishAll)
// and reports how many rows from the start JetStream stored.
func (r *Relay) publish(ctx context.Context, rows []state.OutboxRow) (int, error) {
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	msgs := make([]bus.Message, len(rows))
	for i, row := range rows {
		msgs[i] = bus.Message{Subject: bus.StatusSubject(row.CustomerID), MsgID: "outbox-" + strconv.FormatInt(row.ID, 10), Data: row.Payload}
	}
	done, err := r.pub.PublishAll(pctx, msgs)
	for _, row := range rows[:len(done)] {
		r.published.Inc()
		r.lag.Observe(time.Since(row.CreatedAt).Seconds())
	}
	return len(done), err
}
