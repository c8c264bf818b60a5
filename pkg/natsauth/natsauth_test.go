package natsauth_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natsauth/natsauthtest"
	"github.com/launchready/launchready/pkg/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// consumerUsers are the services that run durables.
var consumerUsers = []string{natsauth.BillingState, natsauth.CRMSync, natsauth.SupportNotify}

// otherDurable is a durable that user does not own.
func otherDurable(user string) string {
	if user == natsauth.BillingState {
		return natsauth.CRMSync
	}
	return natsauth.BillingState
}

// Every user of the model, with the exact JetStream subjects its job needs,
// against a real server: each service does its whole job without one
// refusal, and every step outside it is refused by the server. The subtests
// run in order on one server; admin, which purges, comes last.
func TestPermissions(t *testing.T) {
	srv := natstest.Start(t)
	dial := func(user string) *natsauthtest.Client { return natsauthtest.Dial(t, srv.Conn(user)) }
	ingress := dial(natsauth.Ingress)
	reader := dial(natsauth.Reader)
	admin := dial(natsauth.Admin)
	pub := bus.NewPublisher(ingress.JS, nil)
	publish := func(t *testing.T, id, typ string) {
		t.Helper()
		if _, err := pub.PublishEvent(testCtx(t), &billingv1.BillingEvent{EventId: id, Type: typ, CustomerId: "cus_" + id}); err != nil {
			t.Fatalf("ingress publish %s: %v", id, err)
		}
	}

	t.Run("anonymous", func(t *testing.T) { natsauthtest.ExpectAnonymousRefused(t, srv.URL()) })

	t.Run("services wait for the provisioned streams", func(t *testing.T) {
		for _, user := range append([]string{natsauth.Ingress}, consumerUsers...) {
			nc, js, err := bus.Connect(testCtx(t), srv.Conn(user), user, logging.Discard())
			if err != nil {
				t.Fatalf("%s: %v", user, err)
			}
			if err := bus.EnsureStreams(testCtx(t), js, bus.StreamConfig{}); err != nil {
				t.Errorf("%s: EnsureStreams: %v", user, err)
			}
			nc.Close()
		}
	})

	t.Run(natsauth.Ingress, func(t *testing.T) {
		publish(t, "evt_ingress", "invoice.paid")
		if _, err := ingress.JS.Stream(testCtx(t), bus.StreamEvents); err != nil {
			t.Errorf("readiness reads BILLING_EVENTS: %v", err)
		}
		ingress.NoViolations(t)

		ingress.DeniedSubscribe(t, bus.EventsPrefix+">")
		ingress.DeniedSubscribe(t, "_INBOX.>")
		ingress.DeniedSubscribe(t, bus.InboxPrefix(natsauth.BillingState)+".>")
		ingress.DeniedPublish(t, bus.StatusSubject("cus_1"), []byte("x"))
		ingress.DeniedPublish(t, bus.DLQSubject(natsauth.BillingState), []byte("x"))
		ingress.DeniedPublish(t, bus.ReplaySubject(natsauth.BillingState, "invoice.paid"), []byte("x"))
		deniedJetStream(t, ingress, natsauth.Ingress)
	})

	for _, user := range consumerUsers {
		t.Run(user, func(t *testing.T) {
			c := dial(user)
			for _, d := range natsauth.Durables(user) {
				runDurable(t, c, reader, admin, d, publish)
			}
			// nats.go's other form of the create request, for a durable
			// with one filter subject: the subject carries the filter.
			first := natsauth.Durables(user)[0]
			if _, err := c.JS.CreateOrUpdateConsumer(testCtx(t), bus.StreamEvents, jetstream.ConsumerConfig{
				Durable: first, AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: bus.EventsPrefix + ">"}); err != nil {
				t.Errorf("%s: update with one filter subject: %v", first, err)
			}
			c.NoViolations(t)

			c.DeniedPublish(t, bus.EventSubject("invoice.paid"), []byte("forged"))
			c.DeniedPublish(t, bus.ReplaySubject(natsauth.Durables(user)[0], "invoice.paid"), []byte("forged"))
			c.DeniedPublish(t, bus.DLQSubject(otherDurable(user)), []byte("x"))
			other := otherDurable(user)
			c.DeniedCall(t, "$JS.API.CONSUMER.CREATE.BILLING_EVENTS."+other, func(ctx context.Context) error {
				_, err := c.JS.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{
					Durable: other, AckPolicy: jetstream.AckExplicitPolicy, FilterSubjects: bus.DefaultFilterSubjects(other)})
				return err
			})
			c.DeniedPublish(t, "$JS.API.CONSUMER.MSG.NEXT.BILLING_EVENTS."+other, []byte(`{"batch":1,"expires":1000000000}`))
			c.DeniedPublish(t, "$JS.ACK.BILLING_EVENTS."+other+".1.1.1.1700000000000000000.0", []byte("+ACK"))
			own := natsauth.Durables(user)[0]
			c.DeniedCall(t, "$JS.API.CONSUMER.CREATE.BILLING_DLQ."+own, func(ctx context.Context) error {
				_, err := c.JS.CreateOrUpdateConsumer(ctx, bus.StreamDLQ, jetstream.ConsumerConfig{Durable: own, AckPolicy: jetstream.AckExplicitPolicy})
				return err
			})
			c.DeniedCall(t, "$JS.API.CONSUMER.DELETE.BILLING_EVENTS."+own, func(ctx context.Context) error {
				return c.JS.DeleteConsumer(ctx, bus.StreamEvents, own)
			})
			c.DeniedSubscribe(t, bus.EventsPrefix+">")
			c.DeniedSubscribe(t, bus.DLQPrefix+">")
			c.DeniedSubscribe(t, bus.InboxPrefix(natsauth.Ingress)+".>")
			if user != natsauth.BillingState {
				c.DeniedSubscribe(t, bus.StatusPrefix+">")
				c.DeniedPublish(t, bus.StatusSubject("cus_1"), []byte("x"))
			}
			deniedJetStream(t, c, user)
		})
	}

	t.Run("billing-state status changes", func(t *testing.T) {
		c := dial(natsauth.BillingState)
		sub, err := c.NC.SubscribeSync(bus.StatusPrefix + ">")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := bus.NewPublisher(c.JS, nil).Publish(testCtx(t), bus.StatusSubject("cus_w"), "outbox-1", []byte("active"), nil); err != nil {
			t.Fatalf("outbox relay publish: %v", err)
		}
		if m, err := sub.NextMsg(10 * time.Second); err != nil || string(m.Data) != "active" {
			t.Fatalf("watch: %v %v", m, err)
		}
		c.NoViolations(t)
	})

	t.Run(natsauth.Backfill, func(t *testing.T) {
		c := dial(natsauth.Backfill)
		natsauthtest.CheckBackfill(t, c, "evt_backfill")
		deniedJetStream(t, c, natsauth.Backfill)
	})

	t.Run(natsauth.Reader, func(t *testing.T) {
		ctx := testCtx(t)
		for _, s := range []string{bus.StreamEvents, bus.StreamDLQ, bus.StreamStatus} {
			if _, err := reader.JS.Stream(ctx, s); err != nil {
				t.Errorf("stream info %s: %v", s, err)
			}
		}
		if _, err := reader.JS.Consumer(ctx, bus.StreamEvents, natsauth.BillingState); err != nil {
			t.Errorf("consumer info: %v", err)
		}
		events, err := reader.JS.Stream(ctx, bus.StreamEvents)
		if err != nil {
			t.Fatal(err)
		}
		names := events.ConsumerNames(ctx)
		var got []string
		for n := range names.Name() {
			got = append(got, n)
		}
		if names.Err() != nil || !slices.Contains(got, natsauth.CRMSync) {
			t.Errorf("consumer names %v: %v", got, names.Err())
		}
		readsState(t, reader)
		reader.NoViolations(t)
		reader.DeniedRequest(t, "$JS.API.STREAM.MSG.GET.BILLING_EVENTS", []byte(`{"seq":1}`))
		reader.DeniedSubscribe(t, bus.EventsPrefix+">")
		reader.DeniedPublish(t, bus.EventSubject("invoice.paid"), []byte("forged"))
		deniedJetStream(t, reader, natsauth.Reader)
	})

	// The console shows state and dead letters and replays one at a
	// time; it may not purge, nor speak for Stripe or a consumer.
	t.Run(natsauth.Console, func(t *testing.T) {
		ctx := testCtx(t)
		console := dial(natsauth.Console)
		readsState(t, console)
		dls, err := bus.ListDeadLetters(ctx, console.JS, "", 100)
		if err != nil || len(dls) != 4 {
			t.Fatalf("dead letters: %d %v, want one per durable", len(dls), err)
		}
		if _, err := bus.ReplayDeadLetter(ctx, console.JS, dls[0].Seq); err != nil {
			t.Fatalf("replay: %v", err)
		}
		console.NoViolations(t)
		console.DeniedRequest(t, "$JS.API.STREAM.PURGE."+bus.StreamDLQ, []byte(`{}`))
		console.DeniedRequest(t, "$JS.API.STREAM.MSG.GET.BILLING_EVENTS", []byte(`{"seq":1}`))
		console.DeniedPublish(t, bus.EventSubject("invoice.paid"), []byte("forged"))
		console.DeniedPublish(t, bus.DLQSubject(natsauth.CRMSync), []byte("forged"))
		console.DeniedSubscribe(t, bus.EventsPrefix+">")
		for _, st := range []string{bus.StreamEvents, bus.StreamDLQ} {
			console.DeniedRequest(t, "$JS.API.STREAM.DELETE."+st, nil)
		}
		console.DeniedCall(t, "$JS.API.CONSUMER.CREATE.BILLING_EVENTS.console", func(ctx context.Context) error {
			_, err := console.JS.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{Durable: "console", AckPolicy: jetstream.AckExplicitPolicy})
			return err
		})
	})

	t.Run("resync", func(t *testing.T) {
		natsauthtest.CheckResync(t, dial(natsauth.Console), map[string]*natsauthtest.Client{
			natsauth.CRMSync: dial(natsauth.CRMSync), natsauth.SupportNotify: dial(natsauth.SupportNotify)})
	})

	// Last: admin purges.
	t.Run(natsauth.Admin, func(t *testing.T) {
		ctx := testCtx(t)
		if err := bus.ProvisionStreams(ctx, admin.JS, bus.StreamConfig{MaxAge: 48 * time.Hour}); err != nil {
			t.Fatalf("provision: %v", err)
		}
		dls, err := bus.ListDeadLetters(ctx, admin.JS, "", 100)
		if err != nil || len(dls) != 3 {
			t.Fatalf("dead letters: %d %v, want one per durable but the one the console replayed", len(dls), err)
		}
		var wantLeft int
		for _, dl := range dls[1:] {
			if dl.Consumer != natsauth.CRMSync {
				wantLeft++
			}
		}
		if _, err := bus.ReplayDeadLetter(ctx, admin.JS, dls[0].Seq); err != nil {
			t.Fatalf("replay: %v", err)
		}
		dlq, err := admin.JS.Stream(ctx, bus.StreamDLQ)
		if err != nil {
			t.Fatal(err)
		}
		if err := dlq.Purge(ctx, jetstream.WithPurgeSubject(bus.DLQSubject(natsauth.CRMSync))); err != nil {
			t.Fatalf("purge: %v", err)
		}
		if left, err := bus.ListDeadLetters(ctx, admin.JS, "", 100); err != nil || len(left) != wantLeft {
			t.Fatalf("after replay and purge: %d dead letters (%v), want %d", len(left), err, wantLeft)
		}
		if err := admin.JS.DeleteConsumer(ctx, bus.StreamEvents, natsauth.CRMSync); err != nil {
			t.Fatalf("delete consumer: %v", err)
		}
		readsState(t, admin)
		// Tear down and make again: delete and create.
		if err := admin.JS.DeleteStream(ctx, bus.StreamStatus); err != nil {
			t.Fatalf("delete stream: %v", err)
		}
		if err := bus.ProvisionStreams(ctx, admin.JS, bus.StreamConfig{}); err != nil {
			t.Fatalf("provision after a delete: %v", err)
		}
		admin.NoViolations(t)

		// The admin operates the streams; it does not speak for Stripe.
		admin.DeniedPublish(t, bus.EventSubject("invoice.paid"), []byte("forged"))
		admin.DeniedSubscribe(t, bus.EventsPrefix+">")
		admin.DeniedCall(t, "$JS.API.CONSUMER.CREATE.BILLING_EVENTS.admin", func(ctx context.Context) error {
			_, err := admin.JS.CreateOrUpdateConsumer(ctx, bus.StreamEvents, jetstream.ConsumerConfig{Durable: "admin", AckPolicy: jetstream.AckExplicitPolicy})
			return err
		})
		admin.DeniedRequest(t, "$JS.API.STREAM.MSG.GET.BILLING_EVENTS", []byte(`{"seq":1}`))
		admin.DeniedCall(t, "$JS.API.STREAM.CREATE.OTHER", func(ctx context.Context) error {
			_, err := admin.JS.CreateStream(ctx, jetstream.StreamConfig{Name: "OTHER", Subjects: []string{"other.>"}})
			return err
		})
	})
}

// readsState lists what the operator tools read: account, streams and
// their consumers, names and full info.
func readsState(t *testing.T, c *natsauthtest.Client) {
	t.Helper()
	ctx := testCtx(t)
	if _, err := c.JS.AccountInfo(ctx); err != nil {
		t.Errorf("%s: account info: %v", c.User, err)
	}
	names := c.JS.StreamNames(ctx)
	n := 0
	for range names.Name() {
		n++
	}
	if names.Err() != nil || n != 3 {
		t.Errorf("%s: %d stream names (%v), want 3", c.User, n, names.Err())
	}
	infos := c.JS.ListStreams(ctx)
	n = 0
	for range infos.Info() {
		n++
	}
	if infos.Err() != nil || n != 3 {
		t.Errorf("%s: %d streams listed (%v), want 3", c.User, n, infos.Err())
	}
	st, err := c.JS.Stream(ctx, bus.StreamEvents)
	if err != nil {
		t.Fatalf("%s: %v", c.User, err)
	}
	cons := st.ListConsumers(ctx)
	n = 0
	for range cons.Info() {
		n++
	}
	if cons.Err() != nil || n == 0 {
		t.Errorf("%s: %d consumers listed (%v)", c.User, n, cons.Err())
	}
}

// deniedJetStream is what no user but admin may do to the streams: purge,
// delete, or redefine them.
func deniedJetStream(t *testing.T, c *natsauthtest.Client, user string) {
	t.Helper()
	for _, s := range []string{bus.StreamEvents, bus.StreamDLQ} {
		for _, op := range []string{"PURGE", "DELETE"} {
			c.DeniedRequest(t, "$JS.API.STREAM."+op+"."+s, nil)
		}
	}
	c.DeniedCall(t, "$JS.API.STREAM.UPDATE.BILLING_EVENTS", func(ctx context.Context) error {
		_, err := c.JS.UpdateStream(ctx, jetstream.StreamConfig{Name: bus.StreamEvents, Subjects: []string{">"}})
		return err
	})
	c.DeniedRequest(t, "$JS.API.STREAM.MSG.GET.BILLING_DLQ", []byte(`{"seq":1}`))
	if user != natsauth.Ingress && !slices.Contains(consumerUsers, user) {
		return
	}
	own := user
	if ds := natsauth.Durables(user); len(ds) > 0 {
		own = ds[0]
	}
	c.DeniedCall(t, "$JS.API.CONSUMER.DELETE.BILLING_DLQ."+own, func(ctx context.Context) error {
		return c.JS.DeleteConsumer(ctx, bus.StreamDLQ, own)
	})
}

// runDurable runs durable d the way its service does, through the bus
// runner, over c's connection: it creates the durable, pulls, acks one
// event and dead-letters another, and reports its backlog.
func runDurable(t *testing.T, c, reader, admin *natsauthtest.Client, d string, publish func(*testing.T, string, string)) {
	t.Helper()
	ok, poison := "evt_ok_"+d, "evt_poison_"+d
	publish(t, ok, "invoice.paid")
	publish(t, poison, "invoice.payment_failed")

	var mu sync.Mutex
	seen := map[string]bool{}
	reg := prometheus.NewRegistry()
	cfg := bus.ConsumerConfig{Durable: d, Concurrency: 2, MaxDeliver: 2, AckWait: 5 * time.Second,
		BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond}
	if strings.HasSuffix(d, "-alerts") {
		// support-notify's durables filter by type.
		cfg.FilterSubjects = bus.TypeFilterSubjects(d, []string{"invoice.paid", "invoice.payment_failed"})
	}
	cons := bus.NewConsumer(c.JS, cfg, func(_ context.Context, dl *bus.Delivery) error {
		mu.Lock()
		seen[dl.Event.GetEventId()] = true
		mu.Unlock()
		if dl.Event.GetEventId() == poison {
			return bus.Permanent(errors.New("poison"))
		}
		return nil
	}, bus.ConsumerOptions{Logger: logging.Discard(), Registry: reg})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cons.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("%s: Run: %v", d, err)
		}
	}()

	testkit.Eventually(t, 30*time.Second, d+" handled both events and settled", func() bool {
		mu.Lock()
		both := seen[ok] && seen[poison]
		mu.Unlock()
		if !both {
			return false
		}
		info, err := (func() (*jetstream.ConsumerInfo, error) {
			cons, err := reader.JS.Consumer(testCtx(t), bus.StreamEvents, d)
			if err != nil {
				return nil, err
			}
			return cons.Info(testCtx(t))
		})()
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	})
	dls, err := bus.ListDeadLetters(testCtx(t), admin.JS, d, 10)
	if err != nil || len(dls) != 1 || dls[0].EventID != poison {
		t.Errorf("%s: dead letters %+v (%v), want %s", d, dls, err, poison)
	}
	// lr_consumer_pending and lr_dlq_depth read the consumer's info and its
	// dead-letter count: both must be allowed.
	testkit.Eventually(t, 20*time.Second, d+" backlog metrics", func() bool {
		mfs, err := reg.Gather()
		if err != nil {
			return false
		}
		found := 0
		for _, mf := range mfs {
			if mf.GetName() == "lr_consumer_pending" || mf.GetName() == "lr_dlq_depth" {
				found++
			}
		}
		return found == 2
	})
}

// The written server configuration is the model: the pinned nats-server
// parses it, with each password from its variable, into exactly the users
// and permissions the embedded server runs with.
func TestServerConfigIsTheModel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "auth.conf")
	if err := os.WriteFile(path, []byte(natsauth.ServerConfig()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range natsauth.Names() {
		t.Setenv(natsauth.PasswordVar(name), "pw-"+name)
	}
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		t.Fatalf("nats-server rejects the generated configuration: %v", err)
	}
	if opts.NoAuthUser != "" || len(opts.Nkeys) != 0 || opts.Authorization != "" {
		t.Errorf("configuration lets someone in without a user: no_auth_user=%q token=%v", opts.NoAuthUser, opts.Authorization != "")
	}
	var logins []natsauth.Login
	for _, name := range natsauth.Names() {
		logins = append(logins, natsauth.Login{User: name, Password: "pw-" + name})
	}
	want, _, err := natsauth.ServerUsers(logins)
	if err != nil {
		t.Fatal(err)
	}
	if got, exp := describe(opts.Users), describe(want); got != exp {
		t.Errorf("configured users:\n%s\nwant:\n%s", got, exp)
	}

	// Without a password's variable the server does not start at all,
	// rather than starting with a user nobody can log in as.
	if err := os.Unsetenv(natsauth.PasswordVar(natsauth.Ingress)); err != nil {
		t.Fatal(err)
	}
	if _, err := server.ProcessConfigFile(path); err == nil || !strings.Contains(err.Error(), natsauth.PasswordVar(natsauth.Ingress)) {
		t.Errorf("a missing password variable: %v", err)
	}
}

func describe(users []*server.User) string {
	var lines []string
	for _, u := range users {
		resp := "none"
		if r := u.Permissions.Response; r != nil {
			resp = fmt.Sprintf("%d/%s", r.MaxMsgs, r.Expires)
		}
		lines = append(lines, fmt.Sprintf("%s %s pub=%v sub=%v resp=%s", u.Username, u.Password,
			u.Permissions.Publish.Allow, u.Permissions.Subscribe.Allow, resp))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// Every nkey lives in its own 0600 file, survives a second call unchanged,
// and a damaged one is an error, not a new key.
func TestNKeyFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	first, err := natsauth.NKeyFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != len(natsauth.Names()) {
		t.Fatalf("%d logins for %d users", len(first), len(natsauth.Names()))
	}
	for _, l := range first {
		fi, err := os.Stat(natsauth.NKeyFile(dir, l.User))
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: seed file %v mode %v, want 0600", l.User, err, fi.Mode().Perm())
		}
		if !strings.HasPrefix(l.NKey, "U") || l.Password != "" {
			t.Errorf("%s: login %+v, want a user public key", l.User, l)
		}
	}
	again, err := natsauth.NKeyFiles(dir)
	if err != nil || fmt.Sprint(again) != fmt.Sprint(first) {
		t.Fatalf("second call changed the keys: %v", err)
	}
	if err := os.WriteFile(natsauth.NKeyFile(dir, natsauth.Admin), []byte("not a seed\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := natsauth.NKeyFiles(dir); err == nil {
		t.Fatal("a damaged seed was accepted or replaced")
	}
}

// Every user's inbox is its own, and nobody may subscribe to all inboxes.
func TestInboxesArePrivate(t *testing.T) {
	for _, u := range natsauth.Users() {
		for _, s := range u.Subscribe {
			if strings.HasPrefix(s, "_INBOX") && s != bus.InboxPrefix(u.Name)+".>" {
				t.Errorf("%s may subscribe to %s", u.Name, s)
			}
		}
		if !slices.Contains(u.Subscribe, bus.InboxPrefix(u.Name)+".>") {
			t.Errorf("%s has no inbox of its own", u.Name)
		}
	}
}
