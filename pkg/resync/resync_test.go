package resync_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/resync"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func connect(t *testing.T, url string) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

var good = resync.Request{RequestID: "rsy_0123456789", CustomerID: "cus_A", Actor: "support@example.com", Reason: "customer asked"}

func TestRequestValidate(t *testing.T) {
	if err := good.Validate(); err != nil {
		t.Fatalf("a good request: %v", err)
	}
	for name, change := range map[string]func(*resync.Request){
		"short id":          func(r *resync.Request) { r.RequestID = "abc" },
		"id with a dot":     func(r *resync.Request) { r.RequestID = "rsy.0123456789" },
		"no customer":       func(r *resync.Request) { r.CustomerID = "" },
		"customer wildcard": func(r *resync.Request) { r.CustomerID = "cus_>" },
		"no actor":          func(r *resync.Request) { r.Actor = "" },
		"blank reason":      func(r *resync.Request) { r.Reason = "  " },
	} {
		r := good
		change(&r)
		if r.Validate() == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// A request reaches the handler once and its reply comes back; a
// malformed one is refused without reaching it; a request whose reply
// subject is not an inbox gets no answer at all; and with nobody serving,
// or a handler too slow, Ask says which.
func TestServeAndAsk(t *testing.T) {
	srv := natstest.StartOpen(t)
	server, client := connect(t, srv.URL()), connect(t, srv.URL())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if _, err := resync.Ask(ctx, client, "crm-sync", good); !errors.Is(err, resync.ErrNoResponder) {
		t.Fatalf("nobody serving: %v, want %v", err, resync.ErrNoResponder)
	}

	calls := make(chan resync.Request, 10)
	release := make(chan struct{})
	s, err := resync.Serve(server, "crm-sync", 20*time.Second, nil, func(ctx context.Context, req resync.Request) resync.Reply {
		calls <- req
		if req.RequestID == "rsy_slow_request" {
			select {
			case <-release:
			case <-ctx.Done():
			}
		}
		return resync.Reply{Outcome: resync.OutcomeResent, Detail: "1 contact"}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		close(release)
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	}()
	if err := server.Flush(); err != nil {
		t.Fatal(err)
	}

	rep, err := resync.Ask(ctx, client, "crm-sync", good)
	if err != nil || rep.Outcome != resync.OutcomeResent || rep.RequestID != good.RequestID || rep.Consumer != "crm-sync" || rep.At.IsZero() {
		t.Fatalf("reply %+v, %v", rep, err)
	}
	if got := <-calls; got != good {
		t.Fatalf("handler got %+v", got)
	}

	// Malformed: refused by the server side, the handler never runs.
	msg, err := client.RequestWithContext(ctx, resync.Subject("crm-sync"), []byte(`{"request_id":"x"}`))
	if err != nil {
		t.Fatal(err)
	}
	var refused resync.Reply
	if err := json.Unmarshal(msg.Data, &refused); err != nil || refused.Outcome != resync.OutcomeRefused {
		t.Fatalf("malformed request: %s %v", msg.Data, err)
	}

	// A reply subject outside the inboxes: dropped before the handler.
	watch, err := client.SubscribeSync("billing.events.invoice.paid")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(good)
	if err := client.PublishRequest(resync.Subject("crm-sync"), "billing.events.invoice.paid", body); err != nil {
		t.Fatal(err)
	}
	// A request after it on the same connection is handled after it was
	// seen, so once this one is answered the forged one was dropped.
	second := good
	second.RequestID = "rsy_after_forged"
	if _, err := resync.Ask(ctx, client, "crm-sync", second); err != nil {
		t.Fatal(err)
	}
	if got := <-calls; got.RequestID != second.RequestID {
		t.Fatalf("the request with a forged reply subject reached the handler: %+v", got)
	}
	if m, err := watch.NextMsg(100 * time.Millisecond); err == nil {
		t.Fatalf("a reply went to %s: %s", m.Subject, m.Data)
	}

	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	slow := good
	slow.RequestID = "rsy_slow_request"
	if _, err := resync.Ask(short, client, "crm-sync", slow); !errors.Is(err, resync.ErrTimeout) {
		t.Fatalf("slow handler: %v, want %v", err, resync.ErrTimeout)
	}
}
