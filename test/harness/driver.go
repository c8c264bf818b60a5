package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/launchready/launchready/pkg/stripeevent"
)

// Driver posts signed webhooks to ingress the way Stripe does: each
// attempt signed at the moment it is sent, and, in Deliver, retried with
// backoff until a 2xx.
type Driver struct {
	URL    string
	Secret string
	Client *http.Client

	mu    sync.Mutex
	stats DriverStats
}

// DriverStats counts what the driver saw.
type DriverStats struct {
	Attempts   int
	Accepted   int
	Duplicates int
	Statuses   map[int]int
	NetErrors  int
	// AckLatencies of accepted attempts.
	AckLatencies []time.Duration
}

// NewDriver posts to url (ingress's /webhooks/stripe) signing with secret.
func NewDriver(url, secret string) *Driver {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     30 * time.Second,
	}
	return &Driver{URL: url, Secret: secret, Client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		stats: DriverStats{Statuses: map[int]int{}}}
}

// Answer is ingress's reply to one attempt.
type Answer struct {
	Status    int
	Duplicate bool
	Body      string
	Latency   time.Duration
	Err       error
}

// Post sends body once, signed now with the driver's secret.
func (d *Driver) Post(ctx context.Context, body []byte) Answer {
	return d.PostSigned(ctx, body, stripeevent.Sign(body, d.Secret, time.Now()))
}

// PostSigned sends body once with the given Stripe-Signature header ("" for
// none).
func (d *Driver) PostSigned(ctx context.Context, body []byte, sig string) Answer {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(body))
	if err != nil {
		return Answer{Err: err}
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("User-Agent", "Stripe/1.0 (+https://stripe.com/docs/webhooks)")
	if sig != "" {
		req.Header.Set("Stripe-Signature", sig)
	}
	start := time.Now()
	resp, err := d.Client.Do(req)
	a := Answer{Latency: time.Since(start)}
	if err != nil {
		a.Err = err
		d.record(a)
		return a
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = resp.Body.Close()
	a.Latency = time.Since(start)
	a.Status, a.Body = resp.StatusCode, string(b)
	var out struct {
		Duplicate bool `json:"duplicate"`
	}
	if resp.StatusCode/100 == 2 && json.Unmarshal(b, &out) == nil {
		a.Duplicate = out.Duplicate
	}
	d.record(a)
	return a
}

func (d *Driver) record(a Answer) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Attempts++
	if a.Err != nil {
		d.stats.NetErrors++
		return
	}
	d.stats.Statuses[a.Status]++
	if a.Status/100 == 2 {
		d.stats.Accepted++
		d.stats.AckLatencies = append(d.stats.AckLatencies, a.Latency)
		if a.Duplicate {
			d.stats.Duplicates++
		}
	}
}

// Deliver posts body until ingress answers 2xx, re-signing each attempt and
// backing off as Stripe does (compressed: 50 ms doubling to 2 s), until ctx
// ends. It returns the accepting answer and the attempts made.
func (d *Driver) Deliver(ctx context.Context, body []byte) (Answer, int, error) {
	wait := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		a := d.Post(ctx, body)
		if a.Err == nil && a.Status/100 == 2 {
			return a, attempt, nil
		}
		if a.Err == nil && a.Status/100 == 4 {
			// Stripe retries these too, but for a test a 4xx on a valid,
			// signed event is a bug to report, not to wait out.
			return a, attempt, fmt.Errorf("ingress refused a valid event: HTTP %d %s", a.Status, a.Body)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return a, attempt, fmt.Errorf("not accepted before the deadline after %d attempts (last: %d %v)", attempt, a.Status, a.Err)
		case <-t.C:
		}
		wait = min(wait*2, 2*time.Second)
	}
}

// Stats returns a copy of the counters.
func (d *Driver) Stats() DriverStats {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.stats
	s.Statuses = map[int]int{}
	for k, v := range d.stats.Statuses {
		s.Statuses[k] = v
	}
	s.AckLatencies = append([]time.Duration(nil), d.stats.AckLatencies...)
	return s
}

// ResetStats clears the counters.
func (d *Driver) ResetStats() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats = DriverStats{Statuses: map[int]int{}}
}

// Percentiles returns the qs quantiles (0..1) of ds, which it sorts.
func Percentiles(ds []time.Duration, qs ...float64) []time.Duration {
	out := make([]time.Duration, len(qs))
	if len(ds) == 0 {
		return out
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	for i, q := range qs {
		k := int(q*float64(len(ds)-1) + 0.5)
		out[i] = ds[min(max(k, 0), len(ds)-1)]
	}
	return out
}
