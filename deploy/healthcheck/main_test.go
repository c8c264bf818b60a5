package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRunExitCodes(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	mux.HandleFunc("/down", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusServiceUnavailable) })
	mux.HandleFunc("/moved", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/readyz", http.StatusFound) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	cases := []struct {
		name    string
		args    []string
		want    int
		message string
	}{
		{"ready", []string{srv.URL + "/readyz"}, 0, ""},
		{"unavailable", []string{srv.URL + "/down"}, 1, "status 503"},
		{"redirect is not healthy", []string{srv.URL + "/moved"}, 1, "status 302"},
		{"nothing listening", []string{closedURL + "/readyz"}, 1, "probe"},
		{"no url", nil, 2, "usage"},
		{"two urls", []string{"a", "b"}, 2, "usage"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if got := run(tc.args, &stderr); got != tc.want {
				t.Fatalf("run(%q) = %d, want %d (stderr %q)", tc.args, got, tc.want, stderr.String())
			}
			if !strings.Contains(stderr.String(), tc.message) {
				t.Fatalf("stderr %q does not mention %q", stderr.String(), tc.message)
			}
		})
	}
}
