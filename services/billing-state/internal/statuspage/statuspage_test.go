package statuspage_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/display"
	"github.com/launchready/launchready/services/billing-state/internal/statuspage"
)

// page is the status page over a fake store of statuses and a real NATS
// server carrying billing.status.<customer>.
type page struct {
	srv    *httptest.Server
	signer *statuspage.Signer
	nc     *nats.Conn
	mu     sync.Mutex
	byID   map[string]*billingv1.CustomerStatus
	now    time.Time
}

func (p *page) set(st *billingv1.CustomerStatus) {
	p.mu.Lock()
	p.byID[st.GetCustomerId()] = st
	p.mu.Unlock()
}

func (p *page) clock() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.now
}

func setup(t *testing.T, mods ...func(*statuspage.Options)) *page {
	t.Helper()
	cats, err := display.Load("")
	if err != nil {
		t.Fatal(err)
	}
	ns := natstest.Start(t)
	nc, _, err := bus.Connect(context.Background(), ns.Conn(natsauth.BillingState), "page", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	p := &page{nc: nc, byID: map[string]*billingv1.CustomerStatus{}, now: time.Now()}
	secrets, err := statuspage.ParseSecrets(strings.Repeat("n", 40) + "," + strings.Repeat("o", 40))
	if err != nil {
		t.Fatal(err)
	}
	p.signer = statuspage.NewSigner(secrets, time.Hour, p.clock)
	viewer := &display.Viewer{Catalogues: cats, Now: time.Now,
		Facts: func(context.Context, string, string, time.Duration) (display.Facts, error) {
			return display.Facts{}, nil
		}}
	stop := make(chan struct{})
	o := statuspage.Options{Signer: p.signer, Viewer: viewer, Changes: nc, Logger: logging.Discard(), Heartbeat: 100 * time.Millisecond,
		Status: func(_ context.Context, id string) (*billingv1.CustomerStatus, error) {
			p.mu.Lock()
			defer p.mu.Unlock()
			st, ok := p.byID[id]
			if !ok {
				return nil, statuspage.ErrNotFound
			}
			return proto.Clone(st).(*billingv1.CustomerStatus), nil
		}}
	for _, m := range mods {
		m(&o)
	}
	h := statuspage.Handler(o, stop)
	p.srv = httptest.NewServer(h)
	t.Cleanup(func() { close(stop); p.srv.Close() })
	return p
}

func active(id string) *billingv1.CustomerStatus {
	return &billingv1.CustomerStatus{CustomerId: id, Status: billingv1.BillingStatus_BILLING_STATUS_ACTIVE, Entitled: true}
}

func get(t *testing.T, url, lang string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	if lang != "" {
		req.Header.Set("Accept-Language", lang)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

// Every answer carries the headers that keep the page private and unframed.
func checkHeaders(t *testing.T, res *http.Response) {
	t.Helper()
	h := res.Header
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"frame-ancestors 'none'", "script-src 'self'", "default-src 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP allows inline script: %q", csp)
	}
	if h.Get("Cache-Control") != "no-store" || h.Get("Referrer-Policy") != "no-referrer" || h.Get("X-Frame-Options") != "DENY" {
		t.Errorf("headers %v", h)
	}
	for k := range h {
		if strings.HasPrefix(strings.ToLower(k), "access-control-") {
			t.Errorf("CORS header %s", k)
		}
	}
}

func TestPageShowsTheDisplay(t *testing.T) {
	p := setup(t)
	p.set(active("cus_page1"))
	token, _ := p.signer.Sign("cus_page1", 0)
	res, body := get(t, p.srv.URL+"/s/"+token, "de-CH,de;q=0.9,en;q=0.5")
	checkHeaders(t, res)
	if res.StatusCode != http.StatusOK || !strings.Contains(body, `<html lang="de">`) || !strings.Contains(body, "Ihr Abo ist aktiv") ||
		!strings.Contains(body, `data-tone="ok"`) || strings.Contains(body, "<script>") {
		t.Fatalf("%d\n%s", res.StatusCode, body)
	}
	// A customer billing-state has not seen has the empty state.
	token, _ = p.signer.Sign("cus_nobody", time.Minute)
	if res, body := get(t, p.srv.URL+"/s/"+token, ""); res.StatusCode != http.StatusOK || !strings.Contains(body, "No active plan") || !strings.Contains(body, `lang="en"`) {
		t.Fatalf("%d\n%s", res.StatusCode, body)
	}
	for _, a := range []string{"/static/status.css", "/static/status.js"} {
		res, body := get(t, p.srv.URL+a, "")
		checkHeaders(t, res)
		if res.StatusCode != http.StatusOK || len(body) < 100 {
			t.Errorf("%s: %d", a, res.StatusCode)
		}
	}
}

// The three bad links get 403 and a page with no data: an expired one,
// one for another customer with its signature changed, one with a
// truncated signature.
func TestBadLinksAreRefused(t *testing.T) {
	o := &opener{}
	p := setup(t, withPortal(t, o, pageURL+"/s/"))
	p.set(active("cus_victim"))
	p.set(active("cus_mine"))
	expired, _ := p.signer.Sign("cus_victim", time.Minute)
	p.mu.Lock()
	p.now = p.now.Add(2 * time.Minute)
	p.mu.Unlock()
	mine, _ := p.signer.Sign("cus_mine", time.Hour)
	parts := strings.Split(mine, ".")
	other := "cus_victim." + parts[1] + "." + parts[2]
	flipped := []byte(parts[2])
	flipped[3] ^= 1
	forged := "cus_victim." + parts[1] + "." + string(flipped)
	truncated := mine[:len(mine)-4]
	for name, token := range map[string]string{"expired": expired, "another customer": other, "signature changed": forged, "truncated signature": truncated} {
		for _, path := range []string{"/s/" + token, "/s/" + token + "/events", "/s/" + token + "/portal"} {
			res, body := get(t, p.srv.URL+path, "")
			checkHeaders(t, res)
			if res.StatusCode != http.StatusForbidden {
				t.Errorf("%s %s: %d", name, path, res.StatusCode)
			}
			for _, leak := range []string{"cus_victim", "cus_mine", "active", "data-events"} {
				if strings.Contains(body, leak) {
					t.Errorf("%s %s: the answer shows %q", name, path, leak)
				}
			}
		}
	}
	if calls := o.made(); len(calls) != 0 {
		t.Errorf("a bad link opened the billing portal: %v", calls)
	}
	if res, body := get(t, p.srv.URL+"/s/"+truncated, ""); !strings.Contains(body, "This link doesn&#39;t work") || res.StatusCode != 403 {
		t.Errorf("the refusal does not say why: %s", body)
	}
	// The link still works with its own customer and an older secret.
	if res, _ := get(t, p.srv.URL+"/s/"+mine, ""); res.StatusCode != http.StatusOK {
		t.Errorf("a good link: %d", res.StatusCode)
	}
}

// A signer with a new secret first still accepts links the old one signed.
func TestSecretRotation(t *testing.T) {
	old, _ := statuspage.ParseSecrets(strings.Repeat("o", 40))
	both, _ := statuspage.ParseSecrets(strings.Repeat("n", 40) + "," + strings.Repeat("o", 40))
	onlyNew, _ := statuspage.ParseSecrets(strings.Repeat("n", 40))
	token, _ := statuspage.NewSigner(old, time.Hour, nil).Sign("cus_rot", 0)
	if id, err := statuspage.NewSigner(both, time.Hour, nil).Verify(token); err != nil || id != "cus_rot" {
		t.Fatalf("after rotation: %q %v", id, err)
	}
	if _, err := statuspage.NewSigner(onlyNew, time.Hour, nil).Verify(token); !errors.Is(err, statuspage.ErrBadLink) {
		t.Fatalf("after the old secret is dropped: %v", err)
	}
	if _, err := statuspage.ParseSecrets("short"); err == nil {
		t.Fatal("a short secret accepted")
	}
	_, exp := statuspage.NewSigner(old, 2*time.Hour, nil).Sign("cus_rot", 48*time.Hour)
	if d := time.Until(exp); d > 2*time.Hour+time.Second {
		t.Fatalf("ttl past the maximum: %s", d)
	}
}

// A status change published while the page's event stream is open reaches
// it within 2 s, without a reload: ok turns into problem.
func TestEventsFollowTheStatus(t *testing.T) {
	p := setup(t, withPortal(t, &opener{}, pageURL+"/s/"))
	p.set(active("cus_live"))
	token, _ := p.signer.Sign("cus_live", time.Hour)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.srv.URL+"/s/"+token+"/events", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	checkHeaders(t, res)
	if res.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("content type %q", res.Header.Get("Content-Type"))
	}
	events := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
				events <- d
			}
		}
		close(events)
	}()
	first := <-events
	if !strings.Contains(first, `"tone":"ok"`) {
		t.Fatalf("first event %s", first)
	}
	failed := &billingv1.CustomerStatus{CustomerId: "cus_live", Status: billingv1.BillingStatus_BILLING_STATUS_PAST_DUE, Entitled: true}
	p.set(failed)
	data, _ := proto.Marshal(failed)
	start := time.Now()
	if err := p.nc.Publish(bus.StatusSubject("cus_live"), data); err != nil {
		t.Fatal(err)
	}
	select {
	case ev := <-events:
		if !strings.Contains(ev, `"tone":"problem"`) || !strings.Contains(ev, `"action":"update_payment_method"`) ||
			!strings.Contains(ev, `"href":"/s/`+token+`/portal"`) {
			t.Fatalf("after the failed payment: %s", ev)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("took %s", d)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("no event within 2 s of the change")
	}
}
