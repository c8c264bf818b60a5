package send

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/stripeevent"
)

func newSecret(t *testing.T) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return "whsec_" + hex.EncodeToString(b)
}

// receiver is a stand-in for ingress that verifies every request the way
// ingress does and records what it got.
type receiver struct {
	srv    *httptest.Server
	secret string

	mu     sync.Mutex
	bodies [][]byte
	seen   map[string]bool
}

func newReceiver(t *testing.T, secret string) *receiver {
	t.Helper()
	r := &receiver{secret: secret, seen: map[string]bool{}}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path != "/webhooks/stripe" || req.Method != http.MethodPost {
			http.Error(w, `{"error":"wrong route"}`, http.StatusNotFound)
			return
		}
		body, _ := io.ReadAll(req.Body)
		err := stripeevent.Verify(body, req.Header.Get("Stripe-Signature"), []string{r.secret}, 5*time.Minute, time.Now())
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = io.WriteString(w, `{"error":"signature does not match any configured secret"}`)
			return
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		r.bodies = append(r.bodies, body)
		key := string(body)
		dup := r.seen[key]
		r.seen[key] = true
		if dup {
			_, _ = io.WriteString(w, `{"received":true,"duplicate":true}`)
			return
		}
		_, _ = io.WriteString(w, `{"received":true,"duplicate":false}`)
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) url() string { return r.srv.URL + "/webhooks/stripe" }

func (r *receiver) received() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.bodies...)
}

// payload writes an event file whose bytes are deliberately not what a JSON
// encoder would produce, so a re-encoding sender would be caught.
func payload(t *testing.T, id string) (string, []byte) {
	t.Helper()
	b := []byte("{\n  \"id\":  \"" + id + "\",\n  \"object\": \"event\", \"type\": \"customer.created\",\n  \"data\": {\"object\": {\"id\": \"cus_1\", \"object\": \"customer\"}}\n}\n")
	path := filepath.Join(t.TempDir(), id+".json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, b
}

func run(t *testing.T, env map[string]string, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := Main(context.Background(), args, config.Map(env), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestSendSignsWithFlagSecretAndKeepsBytes(t *testing.T) {
	secret := newSecret(t)
	rcv := newReceiver(t, secret)
	file, want := payload(t, "evt_send_1")

	code, out, errOut := run(t, nil, "--secret", secret, "--url", rcv.url(), file)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	got := rcv.received()
	if len(got) != 1 || !bytes.Equal(got[0], want) {
		t.Fatalf("receiver got %q, want exactly %q", got, want)
	}
	if !strings.Contains(out, "evt_send_1") || !strings.Contains(out, `200 {"received":true,"duplicate":false}`) {
		t.Fatalf("output %q lacks the event id and the answer", out)
	}
	if strings.Contains(out+errOut, secret) {
		t.Fatal("the secret was printed")
	}
}

func TestSendUsesFirstSecretOfEnvList(t *testing.T) {
	first, second := newSecret(t), newSecret(t)
	rcv := newReceiver(t, first)
	file, _ := payload(t, "evt_send_env")

	code, _, errOut := run(t, map[string]string{"STRIPE_WEBHOOK_SECRET": first + ", " + second}, "--url", rcv.url(), file)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if n := len(rcv.received()); n != 1 {
		t.Fatalf("receiver verified %d requests, want 1", n)
	}
}

func TestSendFallsBackToDevSecretAndIngressAddr(t *testing.T) {
	secret := newSecret(t)
	rcv := newReceiver(t, secret)
	u, err := url.Parse(rcv.srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	if err := os.WriteFile(filepath.Join(data, "dev-secrets.json"), []byte(`{"webhook_secret":"`+secret+`","api_token":"x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	file, _ := payload(t, "evt_send_dev")

	// Flags after the file name work too.
	code, out, errOut := run(t, map[string]string{"INGRESS_ADDR": ":" + u.Port()}, file, "--data", data)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q, stdout %q", code, errOut, out)
	}
	if n := len(rcv.received()); n != 1 {
		t.Fatalf("receiver verified %d requests, want 1", n)
	}
}

func TestSendDupPostsTheSameEventAgain(t *testing.T) {
	secret := newSecret(t)
	rcv := newReceiver(t, secret)
	file, _ := payload(t, "evt_send_dup")

	code, out, errOut := run(t, nil, "--secret", secret, "--url", rcv.url(), "--dup", "2", file)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
	if n := len(rcv.received()); n != 2 {
		t.Fatalf("receiver got %d requests, want 2", n)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasSuffix(lines[1], `"duplicate":true}`) {
		t.Fatalf("want two answers, the second a duplicate; got %q", out)
	}
}

func TestSendExitsNonZeroOnRefusal(t *testing.T) {
	rcv := newReceiver(t, newSecret(t))
	file, _ := payload(t, "evt_send_wrong")

	code, out, _ := run(t, nil, "--secret", newSecret(t), "--url", rcv.url(), file)
	if code != 1 {
		t.Fatalf("exit %d, want 1 for a 400 answer", code)
	}
	if !strings.Contains(out, "400") || !strings.Contains(out, "signature does not match") {
		t.Fatalf("output %q does not show the refusal", out)
	}
	if n := len(rcv.received()); n != 0 {
		t.Fatalf("receiver accepted %d requests signed with the wrong secret", n)
	}
}

func TestSendUsageErrors(t *testing.T) {
	file, _ := payload(t, "evt_send_usage")
	cases := []struct {
		name string
		args []string
	}{
		{"no files", []string{"--secret", "whsec_x"}},
		{"no secret anywhere", []string{"--data", t.TempDir(), file}},
		{"dup zero", []string{"--secret", "whsec_x", "--dup", "0", file}},
		{"unknown flag", []string{"--nope", file}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, _, errOut := run(t, nil, tc.args...)
			if code != 2 {
				t.Fatalf("exit %d, want 2", code)
			}
			if errOut == "" {
				t.Fatal("no explanation on stderr")
			}
		})
	}
}

func TestSendReportsUnreachableIngress(t *testing.T) {
	rcv := newReceiver(t, newSecret(t))
	target := rcv.url()
	rcv.srv.Close()
	file, _ := payload(t, "evt_send_down")

	code, _, errOut := run(t, nil, "--secret", "whsec_x", "--url", target, file)
	if code != 1 || !strings.Contains(errOut, "post") {
		t.Fatalf("exit %d stderr %q, want 1 and the failed post", code, errOut)
	}
}

func TestDefaultURL(t *testing.T) {
	for addr, want := range map[string]string{
		":8080":          "http://127.0.0.1:8080/webhooks/stripe",
		"0.0.0.0:9000":   "http://127.0.0.1:9000/webhooks/stripe",
		"[::]:9000":      "http://127.0.0.1:9000/webhooks/stripe",
		"10.1.2.3:8080":  "http://10.1.2.3:8080/webhooks/stripe",
		"ingress.local":  "http://ingress.local/webhooks/stripe",
		"localhost:8080": "http://localhost:8080/webhooks/stripe",
	} {
		if got := defaultURL(addr); got != want {
			t.Errorf("defaultURL(%q) = %q, want %q", addr, got, want)
		}
	}
}
