package backfill

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/stripeapi"
	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/pkg/vendorhttp"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
)

// EventRetention is how long Stripe keeps events for GET /v1/events.
const EventRetention = 30 * 24 * time.Hour

// Publisher stores one event in BILLING_EVENTS (bus.Publisher).
type Publisher interface {
	PublishEvent(ctx context.Context, ev *billingv1.BillingEvent) (bus.PubResult, error)
}

// Backfiller reads Stripe's API and publishes what it reads into the
// stream webhooks feed.
type Backfiller struct {
	API *stripeapi.Client
	// Pub is nil for a dry run.
	Pub Publisher
	// store is nil for a dry run without a database.
	store *store
	// Progress, when set, sees the counts after every page.
	Progress func(Progress)
	Log      *slog.Logger
	// PublishTimeout bounds one publish attempt.
	PublishTimeout time.Duration
}

// Progress is what a backfill has done so far.
type Progress struct {
	// Run is the run being read (0 in a dry run).
	Run int64
	// Read counts the events listed; Published those stored as new;
	// Known those the stream already held (an earlier run or the webhook);
	// Skipped those that could not be published (unreadable, implausible).
	Read, Published, Known, Skipped int64
	// ByType counts the events listed by type.
	ByType  map[string]int64
	Started time.Time
	// Resumed counts the interrupted runs continued.
	Resumed int
}

// Rate is events read per second so far.
func (p Progress) Rate() float64 {
	if s := time.Since(p.Started).Seconds(); s > 0 {
		return float64(p.Read) / s
	}
	return 0
}

// EventOptions select the events of a run.
type EventOptions struct {
	// Since is the window's start; zero means where the last complete run
	// over the same types ended.
	Since time.Time
	// Until is the window's end; zero means now.
	Until time.Time
	Types []string
	// DryRun lists and counts, and publishes and records nothing.
	DryRun bool
}

// ErrNoStart: no --since and no complete run to continue from.
var ErrNoStart = errors.New("no complete backfill to continue from: give --since (a duration such as 72h, or an RFC 3339 time)")

// typesKey is the types as the runs table records them.
func typesKey(types []string) string {
	ts := slices.Clone(types)
	slices.Sort(ts)
	return strings.Join(slices.Compact(ts), ",")
}

// Events backfills events: first the parts interrupted runs over the same
// types had not read yet, then the window asked for.
func (b *Backfiller) Events(ctx context.Context, o EventOptions) (Progress, error) {
	p := Progress{ByType: map[string]int64{}, Started: time.Now()}
	key := typesKey(o.Types)
	if !o.DryRun {
		unfinished, err := b.store.unfinished(ctx, key)
		if err != nil {
			return p, err
		}
		for _, r := range unfinished {
			b.Log.InfoContext(ctx, "resuming interrupted backfill", "run", r.ID, "window_start", r.Start, "window_end", r.End, "next_until", r.NextUntil)
			p.Resumed++
			if err := b.readRun(ctx, &p, r, o.Types); err != nil {
				return p, err
			}
		}
	}
	since, until := o.Since, o.Until
	if until.IsZero() {
		until = time.Now()
	}
	if since.IsZero() {
		if b.store == nil {
			return p, ErrNoStart
		}
		end, err := b.store.lastEnd(ctx, key)
		if err != nil {
			return p, err
		}
		if end.IsZero() {
			if p.Resumed > 0 {
				return p, nil
			}
			return p, ErrNoStart
		}
		since = end
	}
	since, until = since.Truncate(time.Second), until.Truncate(time.Second)
	if since.After(until) {
		return p, fmt.Errorf("the window starts (%s) after it ends (%s)", since.Format(time.RFC3339), until.Format(time.RFC3339))
	}
	if time.Since(since) > EventRetention {
		b.Log.WarnContext(ctx, "Stripe keeps events for 30 days: older ones cannot be listed; --objects restores older state",
			"since", since.Format(time.RFC3339))
	}
	if o.DryRun {
		err := b.API.ListEvents(ctx, stripeapi.EventQuery{Since: since, Until: until, Types: o.Types}, func(evs []stripeapi.Event) error {
			for _, ev := range evs {
				p.Read++
				p.ByType[ev.Type]++
			}
			b.progress(p)
			return nil
		})
		return p, err
	}
	r, err := b.store.create(ctx, key, since, until)
	if err != nil {
		return p, err
	}
	return p, b.readRun(ctx, &p, r, o.Types)
}

// readRun lists what is left of the run's window into its spool, then
// publishes the spool oldest first. Stripe lists newest first; published
// in that order, a problem's end would reach the consumers before its
// start, and support-notify opens no ticket for a problem already over.
func (b *Backfiller) readRun(ctx context.Context, p *Progress, r Run, types []string) error {
	p.Run = r.ID
	if r.ListedAt == nil {
		if err := b.listRun(ctx, p, &r, types); err != nil {
			return fmt.Errorf("backfill run %d: %w", r.ID, err)
		}
	}
	if err := b.publishRun(ctx, p, &r); err != nil {
		return fmt.Errorf("backfill run %d: %w", r.ID, err)
	}
	return b.store.complete(ctx, r)
}

// listRun reads [r.Start, r.NextUntil] newest first into the spool,
// recording with each page that everything after the page's oldest second
// is spooled. That second itself may continue on the next page, so a
// resumed listing reads it again; the spool keeps each event once.
func (b *Backfiller) listRun(ctx context.Context, p *Progress, r *Run, types []string) error {
	pos, err := b.store.lastPos(ctx, r.ID)
	if err != nil {
		return err
	}
	q := stripeapi.EventQuery{Since: r.Start, Until: r.NextUntil, Types: types}
	err = b.API.ListEvents(ctx, q, func(evs []stripeapi.Event) error {
		for _, ev := range evs {
			p.Read++
			p.ByType[ev.Type]++
		}
		if err := b.store.spool(ctx, r, evs, pos+1, evs[len(evs)-1].Created); err != nil {
			return err
		}
		pos += int64(len(evs))
		b.progress(*p)
		return nil
	})
	if err != nil {
		return err
	}
	return b.store.listed(ctx, r)
}

// spoolBatch is how many spooled events are held in memory at once.
const spoolBatch = 100

// publishRun publishes the run's unpublished spooled events oldest first,
// recording each one as its PubAck arrives, so a run killed here resumes
// with the events not yet acknowledged.
func (b *Backfiller) publishRun(ctx context.Context, p *Progress, r *Run) error {
	for {
		evs, err := b.store.unpublished(ctx, r.ID, spoolBatch)
		if err != nil || len(evs) == 0 {
			return err
		}
		for _, ev := range evs {
			dup, err := b.publish(ctx, ev)
			switch {
			case errors.Is(err, errSkip):
				p.Skipped++
				r.Skipped++
			case err != nil:
				return err
			case dup:
				p.Known++
				r.Known++
			default:
				p.Published++
				r.Published++
			}
			if err := b.store.published(ctx, *r, ev.ID); err != nil {
				return err
			}
		}
		b.progress(*p)
	}
}

func (b *Backfiller) progress(p Progress) {
	if b.Progress != nil {
		b.Progress(p)
	}
}

// errSkip: the event cannot be published, and no retry would change that.
var errSkip = errors.New("skipped")

// publish normalises ev as ingress does and publishes it, marked as read
// from the API. dup is true when the stream already held it.
func (b *Backfiller) publish(ctx context.Context, listed stripeapi.Event) (dup bool, err error) {
	ev, err := stripeevent.Normalize(listed.Raw)
	if err == nil {
		err = stripeevent.CheckPlausible(ev)
	}
	if err != nil {
		b.Log.WarnContext(ctx, "listed event cannot be published", "event_id", listed.ID, "event_type", listed.Type, "outcome", "skipped", "error", err.Error())
		return false, errSkip
	}
	ev.Source = billingv1.EventSource_EVENT_SOURCE_API
	ev.ReceivedAt = timestamppb.Now()
	return b.publishEvent(ctx, ev)
}

// publishEvent publishes with a few patient retries while JetStream is
// unreachable: a backfill is worth finishing, and progress is only
// recorded for pages that are stored.
func (b *Backfiller) publishEvent(ctx context.Context, ev *billingv1.BillingEvent) (dup bool, err error) {
	timeout := b.PublishTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	backoff := vendorhttp.Backoff{Base: 500 * time.Millisecond, Max: 5 * time.Second}
	const attempts = 6
	for attempt := 1; ; attempt++ {
		pctx, cancel := context.WithTimeout(ctx, timeout)
		res, err := b.Pub.PublishEvent(pctx, ev)
		cancel()
		switch {
		case err == nil:
			return res.Duplicate, nil
		case errors.Is(err, bus.ErrInvalidSubject):
			b.Log.WarnContext(ctx, "listed event cannot be published", "event_id", ev.GetEventId(), "event_type", ev.GetType(), "outcome", "skipped", "error", err.Error())
			return false, errSkip
		case ctx.Err() != nil || attempt == attempts || !errors.Is(err, bus.ErrUnavailable):
			return false, err
		}
		t := time.NewTimer(backoff.Delay(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return false, context.Cause(ctx)
		case <-t.C:
		}
	}
}
