// Package jaeger reads one trace from Jaeger's query API
// (GET /api/traces/{id}) and lays its spans out for the console's trace
// view: each span's service, operation, start offset and duration, in
// parent-before-child order with its depth.
package jaeger

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrNotFound: Jaeger has no trace of that id (never recorded, or past
// its retention).
var ErrNotFound = errors.New("trace not found")

// traceID is a W3C trace id: 32 hex digits (Jaeger also accepts 16).
var traceID = regexp.MustCompile(`^[0-9a-fA-F]{16}$|^[0-9a-fA-F]{32}$`)

// ValidID reports whether id is a trace id Jaeger could hold.
func ValidID(id string) bool { return traceID.MatchString(id) }

// maxBody bounds Jaeger's answer: a trace of a webhook's path is a few
// dozen spans, a runaway one is not drawn.
const maxBody = 8 << 20

// Client reads traces from Jaeger's query service at Base.
type Client struct {
	Base string
	// UI, when set, is where staff's browsers reach Jaeger's UI; else it
	// is Base, which serves the UI beside the API.
	UI   string
	HTTP *http.Client
}

// UIURL is the trace's page in Jaeger's own UI.
func (c *Client) UIURL(id string) string {
	base := c.UI
	if base == "" {
		base = c.Base
	}
	return strings.TrimRight(base, "/") + "/trace/" + url.PathEscape(id)
}

// Span is one span laid out on the trace's time line.
type Span struct {
	SpanID    string
	Service   string
	Operation string
	Depth     int
	Start     time.Time
	Offset    time.Duration // from the trace's start
	Duration  time.Duration
	Error     bool
	// LeftPct and WidthPct place the span's bar on the trace's duration,
	// in percent (WidthPct at least 0.5, so the shortest span shows).
	LeftPct, WidthPct float64
}

// Trace is one trace's spans, parents before their children, siblings by
// start.
type Trace struct {
	ID       string
	Start    time.Time
	Duration time.Duration
	Services []string
	Spans    []Span
}

type apiResponse struct {
	Data []struct {
		TraceID string `json:"traceID"`
		Spans   []struct {
			SpanID        string `json:"spanID"`
			OperationName string `json:"operationName"`
			References    []struct {
				RefType string `json:"refType"`
				SpanID  string `json:"spanID"`
			} `json:"references"`
			StartTime int64 `json:"startTime"` // microseconds since the epoch
			Duration  int64 `json:"duration"`  // microseconds
			Tags      []struct {
				Key   string `json:"key"`
				Value any    `json:"value"`
			} `json:"tags"`
			ProcessID string `json:"processID"`
		} `json:"spans"`
		Processes map[string]struct {
			ServiceName string `json:"serviceName"`
		} `json:"processes"`
	} `json:"data"`
	Errors []struct {
		Code int    `json:"code"`
		Msg  string `json:"msg"`
	} `json:"errors"`
}

// Trace fetches trace id and lays it out.
func (c *Client) Trace(ctx context.Context, id string) (Trace, error) {
	if !ValidID(id) {
		return Trace{}, fmt.Errorf("trace %q: not a trace id", id)
	}
	body, err := c.get(ctx, "/api/traces/"+url.PathEscape(id))
	if err != nil {
		return Trace{}, fmt.Errorf("trace %s: %w", id, err)
	}
	if len(body.Data) == 0 || len(body.Data[0].Spans) == 0 {
		return Trace{}, ErrNotFound
	}
	return layout(body), nil
}

// FindTrace returns the id of the newest trace in which service recorded
// a span tagged key=value between start and end (Jaeger's search,
// GET /api/traces?service=&tags=), or ErrNotFound.
func (c *Client) FindTrace(ctx context.Context, service, key, value string, start, end time.Time) (string, error) {
	tags, err := json.Marshal(map[string]string{key: value})
	if err != nil {
		return "", fmt.Errorf("find trace: %w", err)
	}
	q := url.Values{"service": {service}, "tags": {string(tags)}, "limit": {"1"},
		"start": {strconv.FormatInt(start.UnixMicro(), 10)}, "end": {strconv.FormatInt(end.UnixMicro(), 10)}}
	body, err := c.get(ctx, "/api/traces?"+q.Encode())
	if err != nil {
		return "", fmt.Errorf("find the trace of %s=%s in %s: %w", key, value, service, err)
	}
	for _, t := range body.Data {
		if ValidID(t.TraceID) {
			return t.TraceID, nil
		}
	}
	return "", ErrNotFound
}

// get asks Jaeger's query API for path, a list of traces.
func (c *Client) get(ctx context.Context, path string) (apiResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.Base, "/")+path, nil)
	if err != nil {
		return apiResponse{}, err
	}
	req.Header.Set("Accept", "application/json")
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return apiResponse{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return apiResponse{}, ErrNotFound
	}
	if resp.StatusCode != http.StatusOK {
		return apiResponse{}, fmt.Errorf("jaeger answered %d", resp.StatusCode)
	}
	var body apiResponse
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&body); err != nil {
		return apiResponse{}, fmt.Errorf("unreadable answer: %w", err)
	}
	return body, nil
}

func layout(body apiResponse) Trace {
	d := body.Data[0]
	t := Trace{ID: d.TraceID}
	var start, end int64
	parent := map[string]string{}
	byID := map[string]Span{}
	services := map[string]bool{}
	for i, s := range d.Spans {
		if i == 0 || s.StartTime < start {
			start = s.StartTime
		}
		end = max(end, s.StartTime+s.Duration)
		svc := d.Processes[s.ProcessID].ServiceName
		services[svc] = true
		sp := Span{SpanID: s.SpanID, Service: svc, Operation: s.OperationName,
			Start: time.UnixMicro(s.StartTime).UTC(), Duration: time.Duration(s.Duration) * time.Microsecond}
		for _, tag := range s.Tags {
			if tag.Key == "error" && tag.Value == true {
				sp.Error = true
			}
		}
		for _, r := range s.References {
			if r.RefType == "CHILD_OF" || r.RefType == "FOLLOWS_FROM" {
				parent[s.SpanID] = r.SpanID
				break
			}
		}
		byID[s.SpanID] = sp
	}
	t.Start = time.UnixMicro(start).UTC()
	t.Duration = time.Duration(end-start) * time.Microsecond
	for s := range services {
		t.Services = append(t.Services, s)
	}
	sort.Strings(t.Services)

	children := map[string][]string{}
	var roots []string
	for id := range byID {
		p, ok := parent[id]
		if _, known := byID[p]; !ok || !known {
			roots = append(roots, id)
			continue
		}
		children[p] = append(children[p], id)
	}
	byStart := func(ids []string) {
		sort.Slice(ids, func(i, j int) bool {
			a, b := byID[ids[i]], byID[ids[j]]
			if !a.Start.Equal(b.Start) {
				return a.Start.Before(b.Start)
			}
			return ids[i] < ids[j]
		})
	}
	total := float64(max(end-start, 1))
	var walk func(id string, depth int)
	walk = func(id string, depth int) {
		sp := byID[id]
		sp.Depth = depth
		sp.Offset = sp.Start.Sub(t.Start)
		sp.LeftPct = float64(sp.Offset.Microseconds()) / total * 100
		sp.WidthPct = max(float64(sp.Duration.Microseconds())/total*100, 0.5)
		if sp.LeftPct+sp.WidthPct > 100 {
			sp.LeftPct = 100 - sp.WidthPct
		}
		t.Spans = append(t.Spans, sp)
		kids := children[id]
		byStart(kids)
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	byStart(roots)
	for _, r := range roots {
		walk(r, 0)
	}
	return t
}
