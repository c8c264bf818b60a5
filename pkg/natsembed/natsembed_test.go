package natsembed_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/launchready/launchready/pkg/natsembed"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestStartServesJetStream(t *testing.T) {
	var logs syncBuffer
	srv, err := natsembed.Start(natsembed.Options{
		Port:       -1,
		StoreDir:   t.TempDir(),
		ServerName: "embed-test",
		Logger:     slog.New(slog.NewJSONHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	}()
	if !strings.HasPrefix(srv.ClientURL(), "nats://127.0.0.1:") {
		t.Fatalf("default host should be loopback, got %s", srv.ClientURL())
	}

	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := js.AccountInfo(ctx)
	if err != nil {
		t.Fatalf("JetStream not available: %v", err)
	}
	if info.Streams != 0 {
		t.Fatalf("fresh store has %d streams", info.Streams)
	}
	if !strings.Contains(logs.String(), "nats-server") {
		t.Fatalf("server notices should reach the given logger, got %q", logs.String())
	}
}

func TestStartSilentByDefault(t *testing.T) {
	// The server would write to stderr if it logged; capture it.
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	orig := os.Stderr
	os.Stderr = w
	srv, err := natsembed.Start(natsembed.Options{Port: -1, StoreDir: t.TempDir()})
	if err == nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
	os.Stderr = orig
	w.Close()
	out, _ := io.ReadAll(r)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 0 {
		t.Fatalf("server wrote to stderr without a logger: %q", out)
	}
}
