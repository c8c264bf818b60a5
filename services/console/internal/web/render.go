package web

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/launchready/launchready/pkg/redact"
	"github.com/launchready/launchready/services/console/internal/auth"
)

var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"money": money,
	"count": count,
	"json": func(b json.RawMessage) string {
		if len(b) == 0 {
			return ""
		}
		var out bytes.Buffer
		if json.Indent(&out, b, "", "  ") != nil {
			return string(b)
		}
		return out.String()
	},
}

// parsePages parses each page with the layout around it and the partials
// (templates/_*.html) any page may include.
func parsePages() (map[string]*template.Template, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	partials, err := fs.Glob(templateFS, "templates/_*.html")
	if err != nil {
		return nil, err
	}
	pages := map[string]*template.Template{}
	for _, n := range names {
		name := strings.TrimSuffix(path.Base(n), ".html")
		if name == "layout" || strings.HasPrefix(name, "_") {
			continue
		}
		t, err := template.New(name).Funcs(funcs).Funcs(readFuncs).ParseFS(templateFS, append([]string{"templates/layout.html", n}, partials...)...)
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", name, err)
		}
		pages[name] = t
	}
	return pages, nil
}

// view is what every template gets: the signed-in staff member (nil on the
// sign-in page), their CSRF token and the page's own data.
type view struct {
	Title string
	Q     *request
	Data  any
}

// Can reports whether the signed-in staff member has at least role; the
// page shows only what they may do, and the server checks again.
func (v view) Can(role string) bool { return v.Q != nil && v.Q.Role.Allows(auth.Role(role)) }

// CSRF is the session's token, for the hidden field of every form.
func (v view) CSRF() string {
	if v.Q == nil {
		return ""
	}
	return v.Q.Session.CSRFToken
}

func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page string, q *request, data map[string]any) {
	t, ok := s.pages[page]
	if !ok {
		http.Error(w, "no such page", http.StatusInternalServerError)
		return
	}
	title, _ := data["Title"].(string)
	var buf bytes.Buffer
	if err := t.ExecuteTemplate(&buf, "layout", view{Title: title, Q: q, Data: data}); err != nil {
		s.opts.Log.ErrorContext(r.Context(), "render", "page", page, "error", redact.Error(err))
		http.Error(w, "the page could not be drawn", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// failed answers a handler's unexpected failure without its details.
func (s *Server) failed(w http.ResponseWriter, r *http.Request, q *request, what string, err error) {
	s.opts.Log.ErrorContext(r.Context(), what, "error", redact.Error(err))
	s.render(w, r, http.StatusInternalServerError, "error", q, map[string]any{"Title": "Something went wrong",
		"Message": "The console could not " + what + ". The error is in its log."})
}

func jsonOf(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return b
}
