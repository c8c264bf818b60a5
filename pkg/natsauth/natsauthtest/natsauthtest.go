// Package natsauthtest checks what a NATS user may and may not do, the way
// the server says it: a refusal is proven by the server's permissions
// violation naming the subject, never by a message that merely did not
// come. It is shared by pkg/natsauth's tests against the embedded server
// and the process-level tests against a nats-server binary.
package natsauthtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/resync"
)

// verdictWait bounds the wait for the server's answer to one action. A
// violation arrives within a round trip; the margin is for a loaded box.
const verdictWait = 10 * time.Second

// Client is a connection as one user that records every permissions
// violation the server reports to it.
type Client struct {
	User string
	NC   *nats.Conn
	JS   jetstream.JetStream

	mu         sync.Mutex
	violations []string
	changed    chan struct{}
}

// Dial connects as cc says, with the credentials and private inbox of
// cc.User, and closes the connection when the test ends.
func Dial(t testing.TB, cc bus.ConnConfig) *Client {
	t.Helper()
	c := &Client{User: cc.User, changed: make(chan struct{})}
	opts, err := cc.Options()
	if err != nil {
		t.Fatalf("%s: %v", cc.User, err)
	}
	opts = append(opts, nats.Name("natsauthtest-"+cc.User), nats.NoReconnect(), nats.PermissionErrOnSubscribe(true),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			if errors.Is(err, nats.ErrPermissionViolation) {
				c.record(err.Error())
			}
		}))
	nc, err := nats.Connect(cc.URL, opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", cc.User, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	c.NC, c.JS = nc, js
	return c
}

func (c *Client) record(v string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.violations = append(c.violations, v)
	close(c.changed)
	c.changed = make(chan struct{})
}

// Violations returns every violation reported so far.
func (c *Client) Violations() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.violations...)
}

// waitViolation waits for the server's violation of kind ("Publish" or
// "Subscription") on subject, counting only those after the first skip.
func (c *Client) waitViolation(kind, subject string, skip int) error {
	want := fmt.Sprintf("Permissions Violation for %s to %q", kind, subject)
	deadline := time.NewTimer(verdictWait)
	defer deadline.Stop()
	for {
		c.mu.Lock()
		for _, v := range c.violations[skip:] {
			if strings.Contains(v, want) {
				c.mu.Unlock()
				return nil
			}
		}
		changed := c.changed
		c.mu.Unlock()
		select {
		case <-changed:
		case <-deadline.C:
			return fmt.Errorf("no %q from the server within %s (violations seen: %v)", want, verdictWait, c.Violations())
		}
	}
}

func (c *Client) seen() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.violations)
}

// DeniedPublish publishes to subject and requires the server to refuse it.
func (c *Client) DeniedPublish(t testing.TB, subject string, data []byte) {
	t.Helper()
	skip := c.seen()
	if err := c.NC.Publish(subject, data); err != nil {
		t.Fatalf("%s: publish %s: %v", c.User, subject, err)
	}
	if err := c.NC.Flush(); err != nil {
		t.Fatalf("%s: flush: %v", c.User, err)
	}
	if err := c.waitViolation("Publish", subject, skip); err != nil {
		t.Errorf("%s may publish to %s: %v", c.User, subject, err)
	}
}

// DeniedSubscribe subscribes to subject and requires the server to refuse
// it; the subscription then reports the violation instead of a message.
func (c *Client) DeniedSubscribe(t testing.TB, subject string) {
	t.Helper()
	skip := c.seen()
	sub, err := c.NC.SubscribeSync(subject)
	if err != nil {
		t.Fatalf("%s: subscribe %s: %v", c.User, subject, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := c.NC.Flush(); err != nil {
		t.Fatalf("%s: flush: %v", c.User, err)
	}
	if err := c.waitViolation("Subscription", subject, skip); err != nil {
		t.Errorf("%s may subscribe to %s: %v", c.User, subject, err)
		return
	}
	if _, err := sub.NextMsg(verdictWait); !errors.Is(err, nats.ErrPermissionViolation) {
		t.Errorf("%s: refused subscription to %s answered %v, want the permissions violation", c.User, subject, err)
	}
}

// DeniedCall runs a JetStream call that must publish to the API subject
// subject, and requires the server to refuse that publish and the call to
// fail. The call is not waited out to its timeout: once the violation
// arrives its context is cancelled.
func (c *Client) DeniedCall(t testing.TB, subject string, call func(ctx context.Context) error) {
	t.Helper()
	skip := c.seen()
	ctx, cancel := context.WithTimeout(context.Background(), 2*verdictWait)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- call(ctx) }()
	if err := c.waitViolation("Publish", subject, skip); err != nil {
		t.Errorf("%s may call %s: %v", c.User, subject, err)
	}
	cancel()
	if err := <-done; err == nil {
		t.Errorf("%s: the call on %s succeeded after the server refused it", c.User, subject)
	}
}

// DeniedRequest sends a request to subject (a JetStream API subject, say)
// and requires the server to refuse it.
func (c *Client) DeniedRequest(t testing.TB, subject string, body []byte) {
	t.Helper()
	c.DeniedCall(t, subject, func(ctx context.Context) error {
		_, err := c.NC.RequestWithContext(ctx, subject, body)
		return err
	})
}

// CheckBackfill requires c, as the backfill user, to publish an event with
// its PubAck and to be refused everything else it might try: reading
// events, stream state, statuses, replays, purges.
func CheckBackfill(t testing.TB, c *Client, eventID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*verdictWait)
	defer cancel()
	if _, err := bus.NewPublisher(c.JS, nil).PublishEvent(ctx, &billingv1.BillingEvent{EventId: eventID, Type: "invoice.paid"}); err != nil {
		t.Fatalf("%s: publish an event: %v", c.User, err)
	}
	c.NoViolations(t)
	c.DeniedSubscribe(t, bus.EventsPrefix+">")
	c.DeniedPublish(t, bus.StatusSubject("cus_"+eventID), []byte("x"))
	c.DeniedPublish(t, bus.ReplaySubject("billing-state", "invoice.paid"), []byte("x"))
	c.DeniedCall(t, "$JS.API.STREAM.INFO."+bus.StreamEvents, func(ctx context.Context) error {
		_, err := c.JS.Stream(ctx, bus.StreamEvents)
		return err
	})
	c.DeniedRequest(t, "$JS.API.STREAM.PURGE."+bus.StreamEvents, nil)
	c.DeniedCall(t, "$JS.API.CONSUMER.CREATE."+bus.StreamEvents+".backfill", func(ctx context.Context) error {
		_, err := c.JS.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{Durable: "backfill", AckPolicy: jetstream.AckExplicitPolicy})
		return err
	})
}

// NoViolations fails the test if the server refused anything so far: for
// a client that did only what its user may do.
func (c *Client) NoViolations(t testing.TB) {
	t.Helper()
	if v := c.Violations(); len(v) > 0 {
		t.Errorf("%s was refused: %v", c.User, v)
	}
}

// ExpectAnonymousRefused requires the server at url to refuse a client
// without credentials at connect time.
func ExpectAnonymousRefused(t testing.TB, url string) {
	t.Helper()
	nc, err := nats.Connect(url, nats.NoReconnect(), nats.Timeout(verdictWait))
	if err == nil {
		nc.Close()
		t.Fatalf("an anonymous client connected to %s", url)
	}
	if !errors.Is(err, nats.ErrAuthorization) {
		t.Fatalf("anonymous connect to %s: %v, want the server's authorization violation", url, err)
	}
}

// CheckResync requires each responder (a client of a user that answers
// resyncs, by user name) to take requests on its own resync subject and
// answer the console through the console's inbox, and to be refused
// another's subject and a forged request; and the console to be refused
// listening in on the requests. Once nobody serves, the console hears
// that no process answered.
func CheckResync(t testing.TB, console *Client, responders map[string]*Client) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*verdictWait)
	defer cancel()
	for user, c := range responders {
		d := natsauth.ResyncDurable(user)
		if d == "" {
			t.Fatalf("%s answers no resync", user)
		}
		srv, err := resync.Serve(c.NC, d, verdictWait, nil, func(_ context.Context, req resync.Request) resync.Reply {
			return resync.Reply{Outcome: resync.OutcomeResent, Detail: "for " + req.CustomerID + " by " + user}
		})
		if err != nil {
			t.Fatalf("%s: serve resyncs: %v", user, err)
		}
		if err := c.NC.Flush(); err != nil {
			t.Fatal(err)
		}
		rep, err := resync.Ask(ctx, console.NC, d, resync.Request{RequestID: "rsy_" + user, CustomerID: "cus_Resync",
			Actor: "support@example.com", Reason: "customer asked"})
		if err != nil {
			t.Errorf("console asks %s: %v", d, err)
		} else if rep.Consumer != d || rep.Outcome != resync.OutcomeResent || rep.Detail != "for cus_Resync by "+user || rep.RequestID != "rsy_"+user {
			t.Errorf("console asks %s: reply %+v", d, rep)
		}
		if err := srv.Stop(); err != nil {
			t.Errorf("%s: stop: %v", user, err)
		}
		c.NoViolations(t)
		c.DeniedPublish(t, resync.Subject(d), []byte(`{}`))
		for other := range responders {
			if od := natsauth.ResyncDurable(other); od != d {
				c.DeniedSubscribe(t, resync.Subject(od))
				c.DeniedPublish(t, resync.Subject(od), []byte(`{}`))
			}
		}
		c.DeniedSubscribe(t, resync.Prefix+">")
		if _, err := resync.Ask(ctx, console.NC, d, resync.Request{RequestID: "rsy_gone_" + user, CustomerID: "cus_Resync",
			Actor: "support@example.com", Reason: "customer asked"}); !errors.Is(err, resync.ErrNoResponder) {
			t.Errorf("console asks %s with nobody serving: %v, want %v", d, err, resync.ErrNoResponder)
		}
	}
	console.NoViolations(t)
	console.DeniedSubscribe(t, resync.Prefix+">")
}
