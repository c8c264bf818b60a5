package webhookrates

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Counters the Sampler reads, as the services export them.
const (
	requestsCounter          = "lr_webhook_requests_total"
	webhookDuplicatesCounter = "lr_webhook_duplicates_total"
	consumerDuplicateCounter = "lr_consumer_duplicates_total"
)

// succeeded are the request outcomes the failure ratio does not count as
// failures, as lr:webhook_failure_ratio:rate15m leaves them out.
var succeeded = map[string]bool{"accepted": true, "duplicate": true, "ignored": true}

// coarseEvery spaces the samples kept for the week: one in ten minutes is
// plenty for a weekly count and keeps a week at about a thousand a target.
const coarseEvery = 10 * time.Minute

// maxMetricsBody bounds one /metrics page.
const maxMetricsBody = 8 << 20

// Sampler reads the counters behind the figures from each target's
// /metrics and keeps, per target, how much each has grown since the
// console first read it. Growth is added up sample to sample, so a
// process restart (its counters back at zero) loses nothing the console
// saw. Only what happened while the console was running is counted.
type Sampler struct {
	// Targets are ops listeners, host:port.
	Targets []string
	HTTP    *http.Client
	// Now is the clock (time.Now when nil).
	Now func() time.Time

	mu      sync.Mutex
	targets map[string]*target
}

// target is what the Sampler holds of one ops listener.
type target struct {
	last map[string]float64 // the counters as last read
	sum  growth             // their growth since the first read
	// recent are every sample of the last FailureWindow and the one
	// before it; coarse one each coarseEvery over DuplicateWindow and the
	// one before it.
	recent, coarse []point
}

// growth is the counters' growth: failed and all requests, and duplicates
// by stage.
type growth struct {
	failed, requests float64
	dups             map[string]float64
}

type point struct {
	at time.Time
	g  growth
}

func (s *Sampler) now() time.Time {
	if s.Now != nil {
		return s.Now()
	}
	return time.Now()
}

// Run samples every interval until ctx ends.
func (s *Sampler) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.Sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sample reads every target once. A target that does not answer is left
// out of this round; its next answer is compared with its last.
func (s *Sampler) Sample(ctx context.Context) {
	hc := s.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	read := make([]map[string]float64, len(s.Targets))
	var wg sync.WaitGroup
	for i, t := range s.Targets {
		wg.Go(func() { read[i], _ = scrape(ctx, hc, "http://"+t+"/metrics") })
	}
	wg.Wait()
	reads := make(map[string]map[string]float64, len(s.Targets))
	for i, t := range s.Targets {
		if read[i] != nil {
			reads[t] = read[i]
		}
	}
	s.record(s.now(), reads)
}

// record keeps one round's reads, by target, of counters keyed
// "req|<outcome>" and "dup|<stage>".
func (s *Sampler) record(at time.Time, reads map[string]map[string]float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.targets == nil {
		s.targets = map[string]*target{}
	}
	for t, read := range reads {
		tg := s.targets[t]
		if tg == nil {
			tg = &target{sum: growth{dups: map[string]float64{}}}
			s.targets[t] = tg
		} else {
			tg.add(read)
		}
		tg.last = read
		tg.keep(point{at: at, g: tg.sum.clone()})
	}
}

// add adds the growth from the last read to now. A counter lower than
// last time belongs to a restarted process: all of it is new.
func (tg *target) add(now map[string]float64) {
	for k, v := range now {
		d := v - tg.last[k]
		if d < 0 {
			d = v
		}
		if d == 0 {
			continue
		}
		kind, name, _ := strings.Cut(k, "|")
		switch kind {
		case "req":
			tg.sum.requests += d
			if !succeeded[name] {
				tg.sum.failed += d
			}
		case "dup":
			tg.sum.dups[name] += d
		}
	}
}

// keep appends p and forgets what no window needs.
func (tg *target) keep(p point) {
	tg.recent = trim(append(tg.recent, p), p.at.Add(-FailureWindow))
	if n := len(tg.coarse); n == 0 || p.at.Sub(tg.coarse[n-1].at) >= coarseEvery {
		tg.coarse = append(tg.coarse, p)
	}
	tg.coarse = trim(tg.coarse, p.at.Add(-DuplicateWindow))
}

// trim drops the points before from, except the newest of them, which a
// window starting at from is counted from.
func trim(ps []point, from time.Time) []point {
	i := 0
	for i+1 < len(ps) && !ps[i+1].at.After(from) {
		i++
	}
	return ps[i:]
}

// base is the point a window starting at from is counted from: the newest
// at or before it, which makes the window at most one sampling interval
// longer than it says; else, while the console has not yet seen that far
// back, the oldest there is, where the window then starts.
func base(ps []point, from time.Time) point {
	b := ps[0]
	for _, p := range ps[1:] {
		if p.at.After(from) {
			break
		}
		b = p
	}
	return b
}

func (g growth) clone() growth {
	c := growth{failed: g.failed, requests: g.requests, dups: make(map[string]float64, len(g.dups))}
	for k, v := range g.dups {
		c.dups[k] = v
	}
	return c
}

// Figures computes both figures over what the Sampler has seen. Each
// window starts at the latest of the targets' starts, so that every target
// counted is counted over all of it.
func (s *Sampler) Figures(context.Context) (Figures, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	f := Figures{From: "sampled", At: now}
	if len(s.targets) == 0 {
		return f, fmt.Errorf("no ops listener has answered yet")
	}
	dups := map[string]float64{}
	for _, tg := range s.targets {
		last := tg.recent[len(tg.recent)-1]
		b := base(tg.recent, now.Add(-FailureWindow))
		f.Failed += last.g.failed - b.g.failed
		f.Requests += last.g.requests - b.g.requests
		if b.at.After(f.FailureSince) {
			f.FailureSince = b.at
		}
		b = base(tg.coarse, now.Add(-DuplicateWindow))
		for k, v := range last.g.dups {
			if n := v - b.g.dups[k]; n > 0 {
				dups[k] += n
			}
		}
		if b.at.After(f.DuplicatesSince) {
			f.DuplicatesSince = b.at
		}
	}
	if f.Requests > 0 {
		f.FailureRatio, f.FailureKnown = f.Failed/f.Requests, true
	}
	f.Duplicates, f.DuplicatesTotal = stages(dups)
	return f, nil
}

// scrape reads the counters of one /metrics page, keyed "req|<outcome>"
// and "dup|<stage>".
func scrape(ctx context.Context, hc *http.Client, u string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	// The text format: the protobuf one would need another parser.
	req.Header.Set("Accept", "text/plain;version=0.0.4")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(io.LimitReader(resp.Body, maxMetricsBody))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", u, err)
	}
	out := map[string]float64{}
	each := func(name string, key func(*dto.Metric) string) {
		if mf := fams[name]; mf != nil {
			for _, m := range mf.GetMetric() {
				out[key(m)] += m.GetCounter().GetValue()
			}
		}
	}
	each(requestsCounter, func(m *dto.Metric) string { return "req|" + label(m, "outcome") })
	each(webhookDuplicatesCounter, func(*dto.Metric) string { return "dup|ingress" })
	each(consumerDuplicateCounter, func(m *dto.Metric) string { return "dup|" + label(m, "consumer") })
	return out, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}
