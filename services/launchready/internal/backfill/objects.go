package backfill

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/launchready/launchready/pkg/stripeapi"
	"github.com/launchready/launchready/pkg/stripeevent"
)

// ObjectOptions select the objects of a snapshot run.
type ObjectOptions struct {
	// Since lists only objects created at or after it; zero lists all.
	Since time.Time
	// Kinds to list; empty means every kind, in stripeapi.Kinds order.
	Kinds  []stripeapi.Kind
	DryRun bool
}

// Objects lists customers, subscriptions (status=all), invoices, checkout
// sessions, charges, refunds and disputes, and publishes each as a
// snapshot (stripeevent.Snapshot): billing-state applies it as the newest
// truth about the object, crm-sync mirrors it, and support-notify leaves it
// alone. Customers go first so every later object finds its customer's
// profile; charges before refunds and disputes, which name only a charge.
func (b *Backfiller) Objects(ctx context.Context, o ObjectOptions) (Progress, error) {
	p := Progress{ByType: map[string]int64{}, Started: time.Now()}
	kinds := o.Kinds
	if len(kinds) == 0 {
		kinds = stripeapi.Kinds()
	}
	// One read time for the run: every snapshot of it is as new as the
	// others, and older than any event Stripe sends after it.
	at := time.Now()
	for _, kind := range kinds {
		err := b.API.ListObjects(ctx, kind, stripeapi.ObjectQuery{Since: o.Since}, func(objs []stripeapi.Object) error {
			for _, obj := range objs {
				p.Read++
				p.ByType[string(kind)]++
				if o.DryRun {
					continue
				}
				ev, err := stripeevent.Snapshot(obj.Raw, at)
				if err == nil {
					err = stripeevent.CheckPlausible(ev)
				}
				if err != nil {
					if !errors.Is(err, stripeevent.ErrNoSnapshot) {
						b.Log.WarnContext(ctx, "listed object cannot be published", "object_id", obj.ID, "outcome", "skipped", "error", err.Error())
					}
					p.Skipped++
					continue
				}
				ev.ReceivedAt = timestamppb.Now()
				dup, err := b.publishEvent(ctx, ev)
				switch {
				case errors.Is(err, errSkip):
					p.Skipped++
				case err != nil:
					return err
				case dup:
					p.Known++
				default:
					p.Published++
				}
			}
			b.progress(p)
			return nil
		})
		if err != nil {
			return p, fmt.Errorf("snapshot %s: %w", kind, err)
		}
	}
	return p, nil
}
