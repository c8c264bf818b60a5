// Package scenario turns journeys (test/testkit/journey's Gen and B) into
// the deliveries of a chaos, cluster or load run: a mix of customers
// cycling through journey.Templates padded with a real account's noise,
// shuffled with duplicates or interleaved in Stripe's order.
package scenario

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/launchready/launchready/test/testkit/journey"
)

// Mix builds customers journeys cycling through journey.Templates, padded with the
// noise a real account sends (payment methods attached, profile updates)
// so that they hold exactly total events. Customer i starts at base plus i
// minutes.
func Mix(g *journey.Gen, customers, total int, base time.Time) ([]*journey.Journey, error) {
	if customers <= 0 {
		return nil, fmt.Errorf("scenario: need customers")
	}
	var js []*journey.Journey
	var bs []*journey.B
	n := 0
	for i := range customers {
		b := g.Customer(fmt.Sprintf("c%04d", i), base.Add(time.Duration(i)*time.Minute))
		tpl := journey.Templates[i%len(journey.Templates)]
		j, err := tpl.Build(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", tpl.Name, err)
		}
		js, bs = append(js, j), append(bs, b)
		n += len(j.Events)
	}
	if n > total {
		return nil, fmt.Errorf("scenario: %d customers make %d events, more than %d", customers, n, total)
	}
	for k := 0; n < total; k++ {
		i := k % customers
		b := bs[i]
		// After the journey's own first event, so a profile update is never
		// the customer's first word.
		at := 2*b.Day + 3600*(k/customers+1)
		if (k/customers)%2 == 0 {
			b.PaymentMethodAttached(at)
		} else {
			b.CustomerEvent("customer.updated", at)
		}
		if b.Err() != nil {
			return nil, b.Err()
		}
		n++
	}
	return js, nil
}

// Delivery is one POST of an event: the first, or a repeat.
type Delivery struct {
	Event  *journey.Event
	Repeat bool
}

// Shuffle returns every event once plus dupFraction of them a second time,
// in a random order drawn from seed.
func Shuffle(js []*journey.Journey, dupFraction float64, seed uint64) []Delivery {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)) // #nosec G404 -- a seeded, reproducible order, by design
	var out []Delivery
	var all []*journey.Event
	for _, j := range js {
		for _, e := range j.Events {
			all = append(all, e)
			out = append(out, Delivery{Event: e})
		}
	}
	dups := int(float64(len(all)) * dupFraction)
	for _, i := range r.Perm(len(all))[:dups] {
		out = append(out, Delivery{Event: all[i], Repeat: true})
	}
	r.Shuffle(len(out), func(i, k int) { out[i], out[k] = out[k], out[i] })
	return out
}

// InOrder returns every event once, each customer's in Stripe's order,
// customers interleaved round robin.
func InOrder(js []*journey.Journey) []*journey.Event {
	var out []*journey.Event
	for i := 0; ; i++ {
		added := false
		for _, j := range js {
			if i < len(j.Events) {
				out = append(out, j.Events[i])
				added = true
			}
		}
		if !added {
			return out
		}
	}
}
