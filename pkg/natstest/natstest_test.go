package natstest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRestartKeepsStreams(t *testing.T) {
	srv := natstest.StartOpen(t)
	url := srv.URL()

	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(20*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "t.a", []byte("one")); err != nil {
		t.Fatal(err)
	}

	srv.Shutdown()
	if srv.Server() != nil {
		t.Fatal("Server() should be nil while shut down")
	}
	srv.Restart()
	if got := srv.URL(); got != url {
		t.Fatalf("URL changed across restart: %s != %s", got, url)
	}

	// The client reconnects on its own; poll until the stream answers. Each
	// attempt is short because a request written just as the old connection
	// died is lost and would otherwise wait for the whole deadline.
	var st jetstream.Stream
	for {
		actx, acancel := context.WithTimeout(ctx, 500*time.Millisecond)
		st, err = js.Stream(actx, "T")
		acancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("stream not back after restart: %v", err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
	msg, err := st.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data) != "one" {
		t.Fatalf("message after restart = %q", msg.Data)
	}
	if _, err := st.GetMsg(ctx, 2); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Fatalf("want exactly one message, GetMsg(2) err = %v", err)
	}
}

// The default server is production's: no anonymous client, every user of
// the model with its own key, the streams already made by the admin user.
// A restart keeps all of it.
func TestStartAuthenticatesAndProvisions(t *testing.T) {
	srv := natstest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	check := func() {
		t.Helper()
		if nc, err := nats.Connect(srv.URL(), nats.NoReconnect()); err == nil {
			nc.Close()
			t.Fatal("an anonymous client connected")
		} else if !errors.Is(err, nats.ErrAuthorization) {
			t.Fatalf("anonymous connect: %v, want an authorization violation", err)
		}
		nc, js, err := bus.Connect(ctx, srv.Conn(natsauth.Reader), "natstest-reader", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		for _, name := range []string{bus.StreamEvents, bus.StreamDLQ, bus.StreamStatus} {
			if _, err := js.Stream(ctx, name); err != nil {
				t.Errorf("stream %s: %v", name, err)
			}
		}
	}
	check()
	srv.Restart()
	check()

	env := srv.Env(natsauth.Ingress)
	if env["NATS_URL"] != srv.URL() || env["NATS_USER"] != natsauth.Ingress || env["NATS_NKEY"] != srv.NKeyFile(natsauth.Ingress) {
		t.Errorf("Env(ingress) = %v", env)
	}
}
