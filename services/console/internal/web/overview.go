package web

import (
	"net/http"

	"github.com/launchready/launchready/services/console/internal/store"
)

func (s *Server) overview(w http.ResponseWriter, r *http.Request, q *request) {
	s.render(w, r, http.StatusOK, "overview", q, map[string]any{"Title": "Overview", "O": s.readOverview(r.Context())})
}

// auditPage lists the newest audit rows, optionally of one staff member or
// one customer.
func (s *Server) auditPage(w http.ResponseWriter, r *http.Request, q *request) {
	f := store.AuditFilter{Actor: r.URL.Query().Get("actor"), CustomerID: r.URL.Query().Get("customer"), Limit: 200}
	rows, err := store.ListAudit(r.Context(), s.opts.Pool, f)
	if err != nil {
		s.failed(w, r, q, "read the audit log", err)
		return
	}
	s.render(w, r, http.StatusOK, "audit", q, map[string]any{"Title": "Audit log", "Rows": rows, "Filter": f})
}
