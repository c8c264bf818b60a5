package security

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natsauth/natsauthtest"
	"github.com/launchready/launchready/test/harness"
)

// natsProduction runs the nats-server binary with the configuration
// compose and Kubernetes run (the committed deploy/nats/auth.conf, checked
// here to be the file the server reads) and the streams provisioned by the
// admin user, as the provisioning Job does.
func natsProduction(t *testing.T) *harness.NATS {
	t.Helper()
	n := harness.StartNATS(t, harness.Binaries(t), filepath.Join(t.TempDir(), "jetstream"))
	root, err := harness.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	committed, err := os.ReadFile(filepath.Join(root, "deploy", "nats", "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	running, err := os.ReadFile(n.ConfigFile)
	if err != nil {
		t.Fatal(err)
	}
	if string(committed) != string(running) {
		t.Fatal("the server under test does not run deploy/nats/auth.conf; run go generate ./pkg/natsauth")
	}
	n.Provision(t, bus.StreamConfig{Replicas: 1})
	return n
}

// natsAnonymousSession speaks the NATS protocol without credentials: it
// sends CONNECT and then line, and returns what the server answered before
// it closed the connection.
func natsAnonymousSession(t *testing.T, n *harness.NATS, line string) string {
	t.Helper()
	conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.Port), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(20 * time.Second)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(conn)
	info, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(info, "INFO ") {
		t.Fatalf("no INFO from the server: %q %v", info, err)
	}
	if !strings.Contains(info, `"auth_required":true`) {
		t.Errorf("the server does not announce that it requires authentication: %s", info)
	}
	if _, err := conn.Write([]byte("CONNECT {\"verbose\":false,\"pedantic\":false,\"name\":\"stranger\"}\r\n" + line + "PING\r\n")); err != nil {
		t.Fatal(err)
	}
	var got strings.Builder
	for {
		l, err := r.ReadString('\n')
		got.WriteString(l)
		if err != nil {
			return got.String() // closed by the server
		}
		if strings.HasPrefix(l, "PONG") {
			t.Fatalf("the server answered an anonymous client's PING, so it accepted the session: %q", got.String())
		}
	}
}

// natsStreamMsgs counts the messages in stream, as the admin user.
func natsStreamMsgs(t *testing.T, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// The NATS holes of the incident, against the real server binary as it is
// configured in production: nobody gets in without credentials, no service
// user can forge an event, read what is not its own, or destroy what it did
// not make; only the admin purges.
func TestNATSLeastPrivilege(t *testing.T) {
	n := natsProduction(t)
	dial := func(user string) *natsauthtest.Client { return natsauthtest.Dial(t, n.Conn(user)) }
	admin := dial(natsauth.Admin)
	ingress := dial(natsauth.Ingress)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// An event waiting for billing-state in its own durable: what a
	// stranger would want to read.
	billingState := dial(natsauth.BillingState)
	if _, err := billingState.JS.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{
		Durable: natsauth.BillingState, AckPolicy: jetstream.AckExplicitPolicy,
		FilterSubjects: bus.DefaultFilterSubjects(natsauth.BillingState)}); err != nil {
		t.Fatalf("billing-state creates its own durable: %v", err)
	}
	if _, err := bus.NewPublisher(ingress.JS, nil).PublishEvent(ctx, &billingv1.BillingEvent{
		EventId: "evt_sec_1", Type: "invoice.paid", CustomerId: "cus_Sec1", Email: "payer@example.com"}); err != nil {
		t.Fatalf("ingress publishes a verified event: %v", err)
	}
	stored := natsStreamMsgs(t, admin.JS, bus.StreamEvents)

	t.Run("anonymous", func(t *testing.T) {
		natsauthtest.ExpectAnonymousRefused(t, n.URL())
		for what, line := range map[string]string{
			"publish":   "PUB billing.events.invoice.paid 6\r\nforged\r\n",
			"subscribe": "SUB billing.events.> 1\r\n",
			"purge":     "PUB $JS.API.STREAM.PURGE.BILLING_DLQ 0\r\n\r\n",
		} {
			if got := natsAnonymousSession(t, n, line); !strings.Contains(got, "-ERR 'Authorization Violation'") {
				t.Errorf("anonymous %s: the server answered %q, want its authorization violation", what, got)
			}
		}
		if got := natsStreamMsgs(t, admin.JS, bus.StreamEvents); got != stored {
			t.Errorf("BILLING_EVENTS holds %d messages after the anonymous attempts, %d before", got, stored)
		}
	})

	t.Run("ingress cannot read events", func(t *testing.T) {
		ingress.DeniedSubscribe(t, bus.EventsPrefix+">")
		ingress.DeniedSubscribe(t, "_INBOX.>")
		ingress.DeniedCall(t, "$JS.API.CONSUMER.CREATE.BILLING_EVENTS.ingress", func(ctx context.Context) error {
			_, err := ingress.JS.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{Durable: "ingress", AckPolicy: jetstream.AckExplicitPolicy})
			return err
		})
	})

	for _, user := range []string{natsauth.CRMSync, natsauth.SupportNotify} {
		t.Run(user+" stays in its lane", func(t *testing.T) {
			c := dial(user)
			c.DeniedPublish(t, bus.EventSubject("invoice.paid"), []byte("forged"))
			c.DeniedPublish(t, bus.EventSubject("customer.subscription.created"), []byte("forged"))
			// Another durable: neither its messages nor its acks.
			c.DeniedRequest(t, "$JS.API.CONSUMER.MSG.NEXT.BILLING_EVENTS.billing-state", []byte(`{"batch":1}`))
			c.DeniedCall(t, "$JS.API.CONSUMER.INFO.BILLING_EVENTS.billing-state", func(ctx context.Context) error {
				_, err := c.JS.Consumer(ctx, bus.StreamEvents, natsauth.BillingState)
				return err
			})
			for _, s := range []string{bus.StreamEvents, bus.StreamDLQ} {
				c.DeniedRequest(t, "$JS.API.STREAM.PURGE."+s, nil)
			}
			c.DeniedCall(t, "$JS.API.STREAM.DELETE.BILLING_DLQ", func(ctx context.Context) error {
				return c.JS.DeleteStream(ctx, bus.StreamDLQ)
			})
			for _, d := range []string{natsauth.BillingState, user} {
				c.DeniedCall(t, "$JS.API.CONSUMER.DELETE.BILLING_EVENTS."+d, func(ctx context.Context) error {
					return c.JS.DeleteConsumer(ctx, bus.StreamEvents, d)
				})
			}
			c.DeniedSubscribe(t, bus.EventsPrefix+">")
		})
	}

	// A staff resync reaches the consumer it names and only that one; the
	// consumer answers through the console's inbox and cannot listen on
	// another's subject nor forge a request.
	t.Run("resync subjects are each consumer's own", func(t *testing.T) {
		natsauthtest.CheckResync(t, dial(natsauth.Console), map[string]*natsauthtest.Client{
			natsauth.CRMSync: dial(natsauth.CRMSync), natsauth.SupportNotify: dial(natsauth.SupportNotify)})
	})

	t.Run("billing-state publishes status, not events", func(t *testing.T) {
		c := dial(natsauth.BillingState)
		c.DeniedPublish(t, bus.EventSubject("invoice.paid"), []byte("forged"))
		c.DeniedPublish(t, bus.EventSubject("customer.subscription.deleted"), []byte("forged"))
		if got := natsStreamMsgs(t, admin.JS, bus.StreamEvents); got != stored {
			t.Errorf("BILLING_EVENTS holds %d messages after billing-state's attempts, %d before", got, stored)
		}
	})

	t.Run("the event was there to take, and is billing-state's alone", func(t *testing.T) {
		cons, err := billingState.JS.Consumer(ctx, bus.StreamEvents, natsauth.BillingState)
		if err != nil {
			t.Fatal(err)
		}
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if err := m.Ack(); err != nil {
				t.Fatal(err)
			}
		}
		if got != 1 {
			t.Fatalf("billing-state fetched %d messages from its durable, want the event", got)
		}
		billingState.NoViolations(t)
	})

	t.Run("backfill only publishes events", func(t *testing.T) {
		natsauthtest.CheckBackfill(t, dial(natsauth.Backfill), "evt_sec_backfill")
	})

	t.Run("the admin purges", func(t *testing.T) {
		// Only a consumer stores its own dead letters.
		admin.DeniedCall(t, bus.DLQSubject(natsauth.CRMSync), func(ctx context.Context) error {
			_, err := admin.JS.Publish(ctx, bus.DLQSubject(natsauth.CRMSync), []byte("x"))
			return err
		})
		crm := dial(natsauth.CRMSync)
		if _, err := crm.JS.Publish(ctx, bus.DLQSubject(natsauth.CRMSync), []byte("gave up")); err != nil {
			t.Fatalf("crm-sync stores its own dead letter: %v", err)
		}
		n, err := bus.PurgeDeadLetters(ctx, admin.JS, natsauth.CRMSync)
		if err != nil || n != 1 {
			t.Fatalf("admin purge: %d, %v", n, err)
		}
		if got := natsStreamMsgs(t, admin.JS, bus.StreamDLQ); got != 0 {
			t.Fatalf("BILLING_DLQ holds %d after the purge", got)
		}
		// The admin runs the streams; it does not speak for Stripe.
		admin.DeniedPublish(t, bus.EventSubject("invoice.paid"), []byte("forged"))
	})
}
