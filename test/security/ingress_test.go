package security

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/stripeevent"
	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/testkit"
)

// Flood shape, from the issue: 300 uploads of 1 MiB, each with a
// well-formed, current but wrong Stripe-Signature, held open.
const (
	ingressFloodUploads  = 300
	ingressFloodBody     = 1 << 20
	ingressFloodDuration = 6 * time.Second
	// ingressReadTimeout is short so that the flood sees admitted uploads
	// cut off and their slots taken by others, several times over.
	ingressReadTimeout = "2s"
	// Bounds the test holds ingress to.
	ingressMaxRSSGrowth = 64 << 20
	ingressMaxAckTime   = time.Second
)

// ingressStack runs nats-server and the ingress binary alone.
func ingressStack(t *testing.T, env map[string]string) *harness.Stack {
	t.Helper()
	return harness.StartStack(t, harness.StackOptions{
		Services:   []string{"ingress"},
		LogLevel:   "error",
		ServiceEnv: map[string]map[string]string{"ingress": env},
	})
}

// ingressEvent is a minimal Stripe envelope.
func ingressEvent(id, typ string) []byte {
	return fmt.Appendf(nil, `{"id":%q,"object":"event","api_version":"2023-10-16","created":%d,"livemode":false,"type":%q,"data":{"object":{"id":"cus_security1","object":"customer"}}}`,
		id, time.Now().Unix(), typ)
}

// TestIngressBodyFlood: 300 slow 1 MiB uploads with wrong signatures,
// re-opened as soon as ingress drops one, leave ingress's RSS growth under
// 64 MiB, and a valid event sent meanwhile is acknowledged within 1 s.
func TestIngressBodyFlood(t *testing.T) {
	s := ingressStack(t, map[string]string{"WEBHOOK_READ_TIMEOUT": ingressReadTimeout})
	proc := s.Procs["ingress"]
	u, err := url.Parse(s.WebhookURL)
	if err != nil {
		t.Fatal(err)
	}

	// Warm up, so the baseline holds what any served request leaves behind.
	for i := range 20 {
		if a := s.Driver.Post(t.Context(), ingressEvent(fmt.Sprintf("evt_warm%d", i), "customer.created")); a.Status != http.StatusOK {
			t.Fatalf("warm-up event: %d %s %v", a.Status, a.Body, a.Err)
		}
	}
	base := proc.RSS()
	if base == 0 {
		t.Fatal("cannot read ingress's RSS from /proc")
	}

	flood := newIngressFlood(u.Host, u.Path)
	flood.start(ingressFloodUploads)
	defer flood.stop()
	testkit.Eventually(t, 30*time.Second, "the flood's connections to open", func() bool {
		return flood.open.Load() >= ingressFloodUploads*9/10
	})

	var peak atomic.Int64
	sampled := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(25 * time.Millisecond)
		defer tick.Stop()
		for {
			if rss := proc.RSS(); rss > peak.Load() {
				peak.Store(rss)
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	// Valid events, one after another, for as long as the flood runs: each
	// must be acknowledged within a second.
	var slowest time.Duration
	probes := 0
	until := time.Now().Add(ingressFloodDuration)
	for time.Now().Before(until) {
		probes++
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		a := s.Driver.Post(ctx, ingressEvent(fmt.Sprintf("evt_probe%d", probes), "invoice.paid"))
		cancel()
		if a.Err != nil || a.Status != http.StatusOK {
			t.Errorf("valid event %d during the flood: %d %s %v", probes, a.Status, a.Body, a.Err)
		} else if a.Latency > ingressMaxAckTime {
			t.Errorf("valid event %d during the flood acknowledged after %s, want within %s", probes, a.Latency, ingressMaxAckTime)
		}
		slowest = max(slowest, a.Latency)
		// Ten a second: a busy Stripe account, not a load test.
		select {
		case <-t.Context().Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	close(stopSampling)
	<-sampled
	growth := peak.Load() - base
	answers := flood.answers()
	t.Logf("ingress RSS %.1f MiB before, peak %.1f MiB during the flood (+%.1f MiB); %d valid events, slowest %s; flood answers %v, peak open %d",
		float64(base)/(1<<20), float64(peak.Load())/(1<<20), float64(growth)/(1<<20), probes, slowest, answers, flood.peakOpen.Load())

	if growth >= ingressMaxRSSGrowth {
		t.Errorf("ingress RSS grew by %.1f MiB under the flood, want under %d MiB", float64(growth)/(1<<20), ingressMaxRSSGrowth>>20)
	}
	// Both bounds must have been at work: uploads over the limit turned
	// away, and admitted ones cut off at the read timeout.
	if answers[http.StatusServiceUnavailable] == 0 || answers[http.StatusRequestTimeout] == 0 {
		t.Errorf("flood answers %v: want 503s (over WEBHOOK_MAX_INFLIGHT) and 408s (WEBHOOK_READ_TIMEOUT)", answers)
	}
	if answers[http.StatusOK] != 0 {
		t.Errorf("%d uploads with a wrong signature were accepted", answers[http.StatusOK])
	}

	flood.stop()
	if !proc.Running() || proc.Crashes() != 0 {
		t.Fatalf("ingress is not running after the flood (crashes %d)", proc.Crashes())
	}
	if a := s.Driver.Post(t.Context(), ingressEvent("evt_afterflood", "invoice.paid")); a.Status != http.StatusOK {
		t.Fatalf("valid event after the flood: %d %s %v", a.Status, a.Body, a.Err)
	}
	if n, err := s.StreamMsgs("BILLING_EVENTS"); err != nil || n != uint64(20+probes+1) {
		t.Fatalf("stream holds %d events (%v), want the %d valid ones", n, err, 20+probes+1)
	}
}

// TestIngressRefusesImplausibleEvents: a signed event whose type is 5,000
// characters used to reach NATS, which closed ingress's connection for good.
// It gets 400 now, and the connection serves the next event; a wildcard
// type is acknowledged and ignored; a body that is not JSON by its content
// type gets 415. Only the valid event is stored.
func TestIngressRefusesImplausibleEvents(t *testing.T) {
	s := ingressStack(t, nil)

	long := ingressEvent("evt_longtype", "customer."+strings.Repeat("x", 5000-len("customer.")))
	a := s.Driver.Post(t.Context(), long)
	if a.Status != http.StatusBadRequest || !strings.Contains(a.Body, "implausible") || !strings.Contains(a.Body, "5000 bytes") {
		t.Fatalf("5,000-character type: %d %s %v, want 400 naming the length", a.Status, a.Body, a.Err)
	}

	a = s.Driver.Post(t.Context(), ingressEvent("evt_wildcard", "customer.*"))
	if a.Status != http.StatusOK || !strings.Contains(a.Body, `"ignored":true`) {
		t.Fatalf("wildcard type: %d %s %v, want 200 ignored", a.Status, a.Body, a.Err)
	}

	plain := ingressEvent("evt_textplain", "customer.created")
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, s.WebhookURL, strings.NewReader(string(plain)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Stripe-Signature", stripeevent.Sign(plain, s.Secret, time.Now()))
	resp, err := s.Driver.Client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain: %d, want 415", resp.StatusCode)
	}

	a = s.Driver.Post(t.Context(), ingressEvent("evt_afterlong", "customer.created"))
	if a.Status != http.StatusOK {
		t.Fatalf("valid event after the refusals: %d %s %v; ingress's NATS connection did not survive", a.Status, a.Body, a.Err)
	}
	if n, err := s.StreamMsgs("BILLING_EVENTS"); err != nil || n != 1 {
		t.Fatalf("stream holds %d events (%v), want only the valid one", n, err)
	}
	if proc := s.Procs["ingress"]; !proc.Running() || proc.Crashes() != 0 {
		t.Fatalf("ingress is not running (crashes %d)", proc.Crashes())
	}
}

// ingressFlood keeps n slow uploads open against ingress: each sends its
// headers and then its 1 MiB body in small pieces, all but the last byte,
// and holds the connection until ingress answers or drops it; then it
// opens another.
type ingressFlood struct {
	host, path string
	release    chan struct{}
	once       sync.Once
	wg         sync.WaitGroup

	open, peakOpen atomic.Int64
	mu             sync.Mutex
	statuses       map[int]int
}

func newIngressFlood(host, path string) *ingressFlood {
	return &ingressFlood{host: host, path: path, release: make(chan struct{}), statuses: map[int]int{}}
}

func (f *ingressFlood) start(n int) {
	for range n {
		f.wg.Go(f.upload)
	}
}

// stop closes every connection and waits for the uploaders; safe twice.
func (f *ingressFlood) stop() {
	f.once.Do(func() { close(f.release) })
	f.wg.Wait()
}

// answers counts ingress's answers by status; 0 counts connections it
// dropped without one.
func (f *ingressFlood) answers() map[int]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make(map[int]int, len(f.statuses))
	for k, v := range f.statuses {
		out[k] = v
	}
	return out
}

func (f *ingressFlood) upload() {
	for {
		select {
		case <-f.release:
			return
		default:
		}
		f.uploadOnce()
		// Pace re-opening a little, as a client's own loop would, so the
		// load generator does not starve the box.
		select {
		case <-f.release:
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// uploadOnce is one upload, from dial to answer or drop.
func (f *ingressFlood) uploadOnce() {
	conn, err := net.DialTimeout("tcp", f.host, 5*time.Second)
	if err != nil {
		return
	}
	n := f.open.Add(1)
	for {
		p := f.peakOpen.Load()
		if n <= p || f.peakOpen.CompareAndSwap(p, n) {
			break
		}
	}
	done, wrote := make(chan struct{}), make(chan struct{})
	defer func() {
		close(done)
		conn.Close()
		<-wrote
		f.open.Add(-1)
	}()
	go func() {
		select {
		case <-f.release:
			conn.Close()
		case <-done:
		}
	}()

	// Well-formed and current, but signed with nothing ingress knows.
	sig := fmt.Sprintf("t=%d,v1=%s", time.Now().Unix(), strings.Repeat("0f", 32))
	head := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nStripe-Signature: %s\r\nContent-Length: %d\r\n\r\n",
		f.path, f.host, sig, ingressFloodBody)
	if _, err := conn.Write([]byte(head)); err != nil {
		close(wrote)
		return
	}
	go func() {
		defer close(wrote)
		// 32 KiB every 50 ms: the body, but its last byte, in about 1.6 s,
		// before the read timeout cuts it off.
		chunk := make([]byte, 32<<10)
		for i := range chunk {
			chunk[i] = ' '
		}
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for sent := 0; sent < ingressFloodBody-1; {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			m := min(len(chunk), ingressFloodBody-1-sent)
			if _, err := conn.Write(chunk[:m]); err != nil {
				return
			}
			sent += m
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	status := 0
	if err == nil {
		status = resp.StatusCode
		resp.Body.Close()
	}
	f.mu.Lock()
	f.statuses[status]++
	f.mu.Unlock()
}
