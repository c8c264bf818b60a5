package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/launchready/launchready/services/console/internal/jaeger"
)

// traceLookup opens the trace named in the form of the trace page.
func (s *Server) traceLookup(w http.ResponseWriter, r *http.Request, q *request) {
	id := strings.TrimSpace(r.URL.Query().Get("id"))
	if id == "" {
		s.render(w, r, http.StatusOK, "trace", q, map[string]any{"Title": "Trace", "Configured": s.opts.Jaeger != nil})
		return
	}
	http.Redirect(w, r, "/traces/"+url.PathEscape(id), http.StatusSeeOther)
}

// trace draws one trace from Jaeger: each span as a bar on the trace's
// time line, by service, with its duration.
func (s *Server) trace(w http.ResponseWriter, r *http.Request, q *request) {
	id := r.PathValue("id")
	data := map[string]any{"Title": "Trace " + id, "ID": id, "Configured": s.opts.Jaeger != nil}
	if s.opts.Jaeger == nil {
		s.render(w, r, http.StatusOK, "trace", q, data)
		return
	}
	if !jaeger.ValidID(id) {
		data["Message"] = "A trace id is 32 hexadecimal digits."
		s.render(w, r, http.StatusBadRequest, "trace", q, data)
		return
	}
	data["UI"] = s.opts.Jaeger.UIURL(id)
	t, err := s.opts.Jaeger.Trace(r.Context(), id)
	switch {
	case errors.Is(err, jaeger.ErrNotFound):
		data["Message"] = "Jaeger has no trace " + id + ": it was not sampled, or it is past Jaeger's retention."
		s.render(w, r, http.StatusNotFound, "trace", q, data)
		return
	case err != nil:
		s.opts.Log.WarnContext(r.Context(), "read trace", "trace_id", id, "error", err.Error())
		data["Message"] = "Jaeger did not answer; the error is in the console's log."
		s.render(w, r, http.StatusBadGateway, "trace", q, data)
		return
	}
	colour := map[string]int{}
	for i, svc := range t.Services {
		colour[svc] = i % 6
	}
	data["T"], data["Colour"] = t, colour
	s.render(w, r, http.StatusOK, "trace", q, data)
}

// ms prints a duration in milliseconds, to the microsecond.
func ms(d time.Duration) string { return fmt.Sprintf("%.3f ms", float64(d.Microseconds())/1000) }
