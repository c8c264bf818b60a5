package stripeapi_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/stripeapi"
	"github.com/launchready/launchready/test/testkit/stripemock"
)

// TestCreatePortalSessionAgainstStripeMock: the request is the one Stripe
// documents (stripe-mock validates it against the OpenAPI specification
// and answers a session), and carries exactly the customer and return URL.
func TestCreatePortalSessionAgainstStripeMock(t *testing.T) {
	mock, err := url.Parse(stripemock.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var seen []*http.Request
	var bodies []string
	proxy := httputil.NewSingleHostReverseProxy(mock)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		mu.Lock()
		seen, bodies = append(seen, r.Clone(context.Background())), append(bodies, string(body))
		mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	key := testKey()
	c, err := stripeapi.New(stripeapi.Config{Key: config.Secret(key), Base: front.URL, Rate: 100, Livemode: "test"})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.CreatePortalSession(context.Background(), "cus_LRportal1", "https://app.example.com/billing?from=portal")
	if err != nil {
		t.Fatal(err)
	}
	if u, err := url.Parse(got); err != nil || u.Scheme != "https" || u.Host == "" {
		t.Fatalf("portal url %q (%v)", got, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 {
		t.Fatalf("%d requests, want 1", len(seen))
	}
	r := seen[0]
	if r.Method != http.MethodPost || r.URL.Path != "/v1/billing_portal/sessions" {
		t.Errorf("%s %s", r.Method, r.URL.Path)
	}
	if r.Header.Get("Authorization") != "Bearer "+key || r.Header.Get("Idempotency-Key") == "" {
		t.Errorf("headers: authorization set %v, idempotency key %q", r.Header.Get("Authorization") != "", r.Header.Get("Idempotency-Key"))
	}
	form, err := url.ParseQuery(bodies[0])
	if err != nil {
		t.Fatal(err)
	}
	want := url.Values{"customer": {"cus_LRportal1"}, "return_url": {"https://app.example.com/billing?from=portal"}}
	if form.Encode() != want.Encode() {
		t.Errorf("form %q, want %q", form.Encode(), want.Encode())
	}
}
