package web

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/telemetry"
	"github.com/launchready/launchready/services/console/internal/holdings"
	"github.com/launchready/launchready/services/console/internal/jaeger"
)

// event shows one event: what each consumer recorded for it, its dead
// letters, and the payload a dead letter keeps (masked for a viewer, as
// on the dead letter's own page).
func (s *Server) event(w http.ResponseWriter, r *http.Request, q *request) {
	id := r.PathValue("id")
	if id == "" || len(id) > 255 {
		s.render(w, r, http.StatusNotFound, "error", q, map[string]any{"Title": "Not found", "Message": "No such event."})
		return
	}
	ctx := r.Context()
	data := map[string]any{"Title": "Event " + id, "ID": id}
	if s.opts.Reader != nil {
		e, customer, err := holdings.EventOutcomes(ctx, s.opts.Reader, id)
		if err != nil {
			data["OutcomeError"] = s.partFailed(ctx, "read the consumers' outcomes", err)
		}
		data["E"], data["Customer"] = e, customer
	}
	var traceParents []string
	if s.opts.JS != nil {
		dls, err := bus.ListDeadLetters(ctx, s.opts.JS, "", 1000)
		if err != nil {
			data["DeadError"] = s.partFailed(ctx, "list the dead letters", err)
		}
		var mine []deadLetterView
		for _, dl := range dls {
			if dl.EventID == id {
				mine = append(mine, s.viewDeadLetter(dl, q))
				traceParents = append(traceParents, dl.Header.Get("traceparent"))
			}
		}
		data["Letters"] = mine
		if len(mine) > 0 {
			data["L"] = mine[0]
			if c, _ := data["Customer"].(string); c == "" && mine[0].Event != nil {
				data["Customer"] = mine[0].Event.GetCustomerId()
			}
		}
	}
	e, _ := data["E"].(holdings.Event)
	data["Trace"] = s.eventTrace(ctx, id, traceParents, e.First)
	s.render(w, r, http.StatusOK, "event", q, data)
}

// traceLink is where the event page points for the event's trace.
type traceLink struct {
	ID string
	// From says where the id was found.
	From string
	// UI is the trace in Jaeger's own UI, when Jaeger is configured.
	UI string
	// Note says why there is no link.
	Note string
}

// traceServices are the services whose spans carry the event id
// (telemetry.AttrEventID), in the order Jaeger is searched: ingress
// published the event (a backfill has no ingress span), billing-state
// consumed every event.
var traceServices = []string{"ingress", "billing-state"}

// traceSearchBefore is how long before the first outcome recorded for
// an event Jaeger is searched for its spans: ingress publishes it
// moments before, unless the consumers were behind.
const traceSearchBefore = 6 * time.Hour

// eventTrace finds the trace an event was published in. No service keeps
// an event's trace id in a table, and the console may not read the
// events stream's messages (its NATS user reads only dead letters). A
// dead letter keeps the message's traceparent; without one, Jaeger is
// asked for the span tagged with the event id.
func (s *Server) eventTrace(ctx context.Context, id string, traceParents []string, first time.Time) traceLink {
	var l traceLink
	for _, tp := range traceParents {
		sc := trace.SpanContextFromContext(propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": tp}))
		if sc.HasTraceID() {
			l.ID, l.From = sc.TraceID().String(), "its dead letter's traceparent"
			break
		}
	}
	if s.opts.Jaeger == nil {
		if l.ID == "" {
			l.Note = "No Jaeger is configured (CONSOLE_JAEGER_URL) to find the event's trace in."
		}
		return l
	}
	if l.ID == "" {
		now := s.opts.Now()
		start := now.Add(-7 * 24 * time.Hour)
		if !first.IsZero() {
			start = first.Add(-traceSearchBefore)
		}
		for _, svc := range traceServices {
			found, err := s.opts.Jaeger.FindTrace(ctx, svc, string(telemetry.AttrEventID), id, start, now)
			if err == nil {
				l.ID, l.From = found, "Jaeger's spans of "+svc
				break
			}
			if !errors.Is(err, jaeger.ErrNotFound) {
				s.opts.Log.WarnContext(ctx, "find the trace of an event", "event_id", id, "error", err.Error())
				l.Note = "Jaeger did not answer; the error is in the console's log."
				return l
			}
		}
		if l.ID == "" {
			l.Note = "Jaeger holds no span of this event: it was not sampled, or it is past Jaeger's retention."
			return l
		}
	}
	l.UI = s.opts.Jaeger.UIURL(l.ID)
	return l
}
