package web

import (
	"net/http"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/services/console/internal/holdings"
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
	if s.opts.JS != nil {
		dls, err := bus.ListDeadLetters(ctx, s.opts.JS, "", 1000)
		if err != nil {
			data["DeadError"] = s.partFailed(ctx, "list the dead letters", err)
		}
		var mine []deadLetterView
		for _, dl := range dls {
			if dl.EventID == id {
				mine = append(mine, s.viewDeadLetter(dl, q))
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
	s.render(w, r, http.StatusOK, "event", q, data)
}
