// Package stripemock runs stripe-mock, Stripe's own offline mock of its
// API, for tests that talk to "Stripe" through stripe-go. `make test`
// installs it into the repository's bin/ (it is a pinned go install); a
// test that needs it fails, rather than skips, when it is missing.
package stripemock

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startTimeout bounds how long stripe-mock may take to start listening.
const startTimeout = time.Minute

// Version is the stripe-mock the Makefile installs.
const Version = "v0.203.0"

// Start runs stripe-mock on a loopback port of its own choosing until the
// test ends and returns its base URL (for STRIPE_API_BASE).
func Start(t testing.TB) string {
	t.Helper()
	bin := find()
	if bin == "" {
		t.Fatalf("stripe-mock not found (STRIPE_MOCK, PATH, bin/ of the repository): `make test` installs it, "+
			"or go install github.com/stripe/stripe-mock@%s", Version)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "-http-addr", "127.0.0.1:0", "-https-addr", "127.0.0.1:0") // #nosec G204 -- the pinned stripe-mock binary, with fixed arguments, in tests
	out, err := cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start stripe-mock: %v", err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		const prefix = "Listening for HTTP at address: "
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, prefix) {
				addr <- strings.TrimPrefix(line, prefix)
			}
		}
	}()
	// stripe-mock loads Stripe's whole OpenAPI specification before it
	// listens: seconds on an idle machine, and well over 15 s when several
	// start at once on a busy CI runner.
	select {
	case a := <-addr:
		return "http://" + a
	case <-time.After(startTimeout):
		t.Fatalf("stripe-mock did not report its HTTP address within %s", startTimeout)
		return ""
	}
}

func find() string {
	if p := os.Getenv("STRIPE_MOCK"); p != "" {
		return p
	}
	if p, err := exec.LookPath("stripe-mock"); err == nil {
		return p
	}
	// Outside make: the bin/ beside the go.work this test runs under.
	out, err := exec.Command("go", "env", "GOWORK").Output()
	work := strings.TrimSpace(string(out))
	if err != nil || work == "" || work == "off" {
		return ""
	}
	p := filepath.Join(filepath.Dir(work), "bin", "stripe-mock")
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}
