// Package webhookrates gives the console's overview two figures the alert
// rules also watch: the webhook failure rate of the last 15 minutes and the
// duplicate deliveries detected in the last 7 days.
//
// With a Prometheus, the figures are its recorded series
// (lr:webhook_failure_ratio:rate15m and lr:duplicates:increase1w, from
// deploy/observability/prometheus-rules.yaml), so the console and the
// alerts show the same numbers. Without one, a Sampler reads the same
// counters from the services' ops listeners now and then, keeps what it
// read in memory, and computes the figures over the part of the window it
// has seen, which it names.
package webhookrates

import (
	"context"
	"sort"
	"time"
)

// Windows of the two figures, as the recorded series name them.
const (
	FailureWindow   = 15 * time.Minute
	DuplicateWindow = 7 * 24 * time.Hour
)

// Series the figures come from.
const (
	FailureRatioSeries = "lr:webhook_failure_ratio:rate15m"
	DuplicatesSeries   = "lr:duplicates:increase1w"
)

// Figures are the two numbers and where they come from.
type Figures struct {
	// From is "prometheus" or "sampled".
	From string
	// FailureRatio is failed requests over all requests in the window;
	// FailureKnown is false when no request arrived in it (0 of 0).
	FailureRatio float64
	FailureKnown bool
	// Failed and Requests are the counts behind the ratio (sampled only:
	// the recorded series keeps only the ratio).
	Failed, Requests float64
	// FailureSince is where a sampled window starts: later than 15 minutes
	// ago while the console has not yet seen that much.
	FailureSince time.Time
	// Duplicates are the week's duplicates by stage: "ingress" (JetStream
	// already held the event id) and each consumer (its processed_events
	// already had it).
	Duplicates      []Stage
	DuplicatesTotal float64
	// DuplicatesSince is where a sampled week starts.
	DuplicatesSince time.Time
	// At is when the figures were read.
	At time.Time
}

// Stage is one place duplicates are caught, and how many.
type Stage struct {
	Name  string
	Count float64
}

// Partial reports whether a sampled window covers less than its full
// length (with one sampling interval of slack).
func (f Figures) Partial(since time.Time, window, slack time.Duration) bool {
	return f.From == "sampled" && !since.IsZero() && f.At.Sub(since) < window-slack
}

// Source is where the overview reads the figures.
type Source interface {
	Figures(ctx context.Context) (Figures, error)
}

// stages sorts a stage map into a list, ingress first, and sums it.
func stages(m map[string]float64) ([]Stage, float64) {
	out := make([]Stage, 0, len(m))
	var total float64
	for name, n := range m {
		out = append(out, Stage{Name: name, Count: n})
		total += n
	}
	sort.Slice(out, func(i, j int) bool {
		if (out[i].Name == "ingress") != (out[j].Name == "ingress") {
			return out[i].Name == "ingress"
		}
		return out[i].Name < out[j].Name
	})
	return out, total
}
