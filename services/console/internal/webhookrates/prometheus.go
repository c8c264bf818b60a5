package webhookrates

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Prometheus reads the recorded series from Prometheus' HTTP API
// (GET /api/v1/query) at Base.
type Prometheus struct {
	Base string
	HTTP *http.Client
	// Now is the clock of Figures.At (time.Now when nil).
	Now func() time.Time
}

// maxAnswer bounds Prometheus' answer: a handful of series.
const maxAnswer = 1 << 20

type queryAnswer struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		} `json:"result"`
	} `json:"data"`
}

// sample is one series of an instant vector.
type sample struct {
	labels map[string]string
	value  float64
}

// query runs an instant query and returns its vector.
func (p *Prometheus) query(ctx context.Context, expr string) ([]sample, error) {
	u := strings.TrimRight(p.Base, "/") + "/api/v1/query?" + url.Values{"query": {expr}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	req.Header.Set("Accept", "application/json")
	hc := p.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 5 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", expr, err)
	}
	var a queryAnswer
	if err := json.Unmarshal(body, &a); err != nil {
		return nil, fmt.Errorf("query %s: %s, not Prometheus' answer", expr, resp.Status)
	}
	if a.Status != "success" {
		return nil, fmt.Errorf("query %s: %s: %s %s", expr, resp.Status, a.ErrorType, a.Error)
	}
	if a.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: a %s, want a vector", expr, a.Data.ResultType)
	}
	out := make([]sample, 0, len(a.Data.Result))
	for _, r := range a.Data.Result {
		s, ok := r.Value[1].(string)
		if !ok {
			return nil, fmt.Errorf("query %s: a value that is not a string", expr)
		}
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %q: %w", expr, s, err)
		}
		out = append(out, sample{labels: r.Metric, value: v})
	}
	return out, nil
}

// Figures reads both recorded series.
func (p *Prometheus) Figures(ctx context.Context) (Figures, error) {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	f := Figures{From: "prometheus", At: now()}
	ratio, rerr := p.query(ctx, FailureRatioSeries)
	// The rule divides by the request rate: with no request in the window
	// the ratio is NaN, or absent before the rule has ever run.
	if rerr == nil && len(ratio) > 0 && !math.IsNaN(ratio[0].value) && !math.IsInf(ratio[0].value, 0) {
		f.FailureRatio, f.FailureKnown = ratio[0].value, true
	}
	dups, derr := p.query(ctx, DuplicatesSeries)
	if derr == nil {
		by := map[string]float64{}
		for _, s := range dups {
			name := s.labels["stage"]
			if name == "" {
				name = "unlabelled"
			}
			by[name] += s.value
		}
		f.Duplicates, f.DuplicatesTotal = stages(by)
	}
	return f, errors.Join(rerr, derr)
}
