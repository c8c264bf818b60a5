package security

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/test/harness"
	"github.com/launchready/launchready/test/testkit"
)

// A dead connection is a dead process: when a service's NATS connection is
// closed for good, its /healthz fails within 5 s and the process exits
// non-zero, so that its supervisor (the kubelet, compose's restart policy)
// restarts it. A transient disconnect is not enough to show this, since
// nats.go reconnects forever; what closes a connection for good is the
// server refusing it. Here the server runs production's authorization
// (pkg/natsauth), and its configuration gives one service's user a new
// password and is reloaded (SIGHUP), as an operator rotating or revoking a
// credential would: the server ends the session with an authorization
// violation, refuses the reconnection with the same error, and nats.go
// gives up. The other services, whose users did not change, must not
// notice.
func TestDeadNATSConnectionEndsTheProcess(t *testing.T) {
	bin := harness.Binaries(t)
	n := harness.StartNATS(t, bin, filepath.Join(t.TempDir(), "jetstream"))
	n.Provision(t, bus.StreamConfig{Replicas: 1})
	dbURL := harness.NewDatabase(t)

	ops := map[string]string{}
	procs := map[string]*harness.Proc{}
	for _, name := range harness.Services {
		env := n.Env(name)
		for k, v := range map[string]string{
			"HTTP_ADDR":                   fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t)),
			"LOG_LEVEL":                   "info",
			"OTEL_EXPORTER_OTLP_ENDPOINT": "",
		} {
			env[k] = v
		}
		switch name {
		case "ingress":
			env["INGRESS_ADDR"] = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
			env["STRIPE_WEBHOOK_SECRET"] = "whsec_" + harness.Random(24)
		case "billing-state":
			env["DATABASE_URL"] = dbURL
			env["GRPC_ADDR"] = fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
			env["STATUS_API_TOKENS"] = "liveness=" + harness.Random(24) + ":read"
		default:
			env["DATABASE_URL"] = dbURL
		}
		var list []string
		for k, v := range env {
			list = append(list, k+"="+v)
		}
		ops[name] = "http://" + env["HTTP_ADDR"]
		procs[name] = harness.Start(t, name, filepath.Join(bin, name), list)
	}
	for _, name := range harness.Services {
		harness.WaitHTTP(t, ops[name]+"/readyz", 90*time.Second, procs[name])
	}

	for i, victim := range harness.Services {
		revoke(t, n, victim)
		revoked := time.Now()

		var last string
		if !testkit.Poll(5*time.Second, 20*time.Millisecond, func() bool {
			code, body := probeHealthz(ops[victim])
			last = fmt.Sprintf("%d %s", code, body)
			return code != http.StatusOK
		}) {
			t.Fatalf("%s: /healthz still answers %s 5s after its NATS user was revoked:\n%s", victim, last, procs[victim].Tail(3000))
		}
		t.Logf("%s: /healthz failed %s after the revocation (%s)", victim, time.Since(revoked).Round(time.Millisecond), last)

		var code int
		if !testkit.Poll(30*time.Second, 20*time.Millisecond, func() bool {
			var exited bool
			code, exited = procs[victim].ExitCode()
			return exited
		}) {
			t.Fatalf("%s: still running 30s after its NATS connection closed:\n%s", victim, procs[victim].Tail(3000))
		}
		if code <= 0 {
			t.Fatalf("%s exited with status %d, want a failure status:\n%s", victim, code, procs[victim].Tail(3000))
		}
		if out := procs[victim].Output(); !strings.Contains(out, "nats connection closed for good") {
			t.Errorf("%s does not say why it stopped:\n%s", victim, procs[victim].Tail(3000))
		}
		for _, other := range harness.Services[i+1:] {
			if code, body := probeHealthz(ops[other]); code != http.StatusOK || !procs[other].Running() {
				t.Errorf("%s was hit by %s's revocation: /healthz %d %s, running %v", other, victim, code, body, procs[other].Running())
			}
		}
	}
}

// probeHealthz answers what a liveness probe sees: the status code (0 when
// nothing answers) and the start of the body.
func probeHealthz(base string) (int, string) {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(base + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// revoke gives user's password in the server's configuration a new value
// that the service does not know, and makes the server reload it.
func revoke(t *testing.T, n *harness.NATS, user string) {
	t.Helper()
	conf, err := os.ReadFile(n.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	from := "password: $" + natsauth.PasswordVar(user)
	if !strings.Contains(string(conf), from) {
		t.Fatalf("%s does not read %s's password from $%s", n.ConfigFile, user, natsauth.PasswordVar(user))
	}
	n.Passwords[user] = "p" + harness.Random(16)
	conf = []byte(strings.Replace(string(conf), from, "password: "+strconv.Quote(n.Passwords[user]), 1))
	// The server was named on its command line, which a reload does not
	// read again; a reload must not rename it.
	conf = append([]byte("server_name: "+strconv.Quote(serverName(t, n))+"\n"), conf...)
	if err := os.WriteFile(n.ConfigFile, conf, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(n.Proc.Pid(), syscall.SIGHUP); err != nil {
		t.Fatalf("reload nats-server: %v", err)
	}
}

// serverName is the running server's name, from its monitoring endpoint.
func serverName(t *testing.T, n *harness.NATS) string {
	t.Helper()
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/varz", n.MonitorPort))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Name string `json:"server_name"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || v.Name == "" {
		t.Fatalf("/varz: server_name %q, %v", v.Name, err)
	}
	return v.Name
}
