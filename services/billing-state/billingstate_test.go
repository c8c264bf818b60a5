package billingstate

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	"github.com/launchready/launchready/pkg/stripeevent"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/services/billing-state/internal/grpcapi"
	"github.com/launchready/launchready/services/billing-state/internal/state"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/journey"
)

var base = time.Date(2025, 5, 1, 8, 0, 0, 0, time.UTC)

// TestJourneysAndFixturesThroughNATS runs every journey, shuffled with
// duplicates, and every fixture envelope through ingress's publisher, the
// stream and the service, and reads the results over gRPC.
func TestJourneysAndFixturesThroughNATS(t *testing.T) {
	h := start(t)
	want := map[string]journey.Step{}
	var evs []*billingv1.BillingEvent
	for name, build := range journey.Journeys {
		jb := journey.New(t, "cus_nats"+strings.ReplaceAll(name, " ", ""), base)
		steps := build(jb)
		want[jb.CustomerID] = steps[len(steps)-1]
		evs = append(evs, journey.Events(steps)...)
	}
	r := rand.New(rand.NewSource(7))
	for i := 0; i < 6; i++ {
		evs = append(evs, evs[r.Intn(len(evs))])
	}
	r.Shuffle(len(evs), func(i, j int) { evs[i], evs[j] = evs[j], evs[i] })
	h.publish(evs...)

	// Every fixture envelope, normalised as ingress does.
	dir := testkit.FixturesDir(t)
	envelopes := 0
	_ = filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".json") {
			return err
		}
		raw, rerr := os.ReadFile(p)
		if rerr != nil {
			t.Fatal(rerr)
		}
		ev, nerr := stripeevent.Normalize(raw)
		if nerr != nil {
			return nil // bare objects and data-only files
		}
		envelopes++
		h.publish(ev)
		return nil
	})

	for cus, step := range want {
		h.eventually(20*time.Second, "final status of "+cus, func() bool {
			st := h.statusOf(cus)
			return st != nil && st.GetStatus() == step.Status && st.GetEntitled() == step.Entitled &&
				st.GetDisputeOpen() == step.DisputeOpen && st.GetCancelAtPeriodEnd() == step.Cancel
		})
	}
	h.eventually(30*time.Second, "the consumer to drain", h.drained)
	dls, err := bus.ListDeadLetters(h.ctx, h.js, Durable, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(dls) != 0 {
		t.Fatalf("%d dead letters, first: %s %s", len(dls), dls[0].EventType, dls[0].Error)
	}
	if envelopes < 170 || h.counter("lr_billing_state_events_total", "outcome", "ignored") == 0 ||
		h.counter("lr_billing_state_events_total", "outcome", "applied") == 0 {
		t.Fatalf("%d envelopes; outcomes applied=%v ignored=%v", envelopes,
			h.counter("lr_billing_state_events_total", "outcome", "applied"), h.counter("lr_billing_state_events_total", "outcome", "ignored"))
	}
	// Duplicates were caught by the stream or by processed_events; either
	// way nothing applied twice.
	var dupAudits int
	if err := h.db.QueryRow(h.ctx, `SELECT count(*) FROM (SELECT event_id FROM billing.audit_log WHERE event_id <> ''
		GROUP BY event_id HAVING count(*) > 1) d`).Scan(&dupAudits); err != nil || dupAudits != 0 {
		t.Fatalf("events audited twice: %d %v", dupAudits, err)
	}
}

// TestCrashBetweenCommitAndAck commits an event, then drops the
// connection before the ack, as a process killed at that moment would.
// JetStream redelivers it; processed_events makes the second delivery a
// no-op.
func TestCrashBetweenCommitAndAck(t *testing.T) {
	h := start(t)
	h.stop() // the service's own consumer stays out of the way
	store := state.New(h.db, state.Options{Policy: h.cfg.Policy})
	if err := state.Migrate(h.ctx, h.db); err != nil {
		t.Fatal(err)
	}
	jb := journey.New(t, "cus_Crash1", base)
	ev := jb.Subscription("customer.subscription.created", 0, "sub_Crash1", "active", false, nil)

	cfg := h.cfg.withDefaults()
	cfg.Consumer.AckWait = time.Second
	ncA, jsA, err := bus.Connect(h.ctx, h.nats.Conn(natsauth.BillingState), "crashing", nil)
	if err != nil {
		t.Fatal(err)
	}
	committed := make(chan struct{})
	inner := batchHandler(store, newMetrics(prometheusRegistry()), cfg, cfg.Logger)
	crashing := bus.NewBatchConsumer(jsA, cfg.Consumer, func(ctx context.Context, ds []*bus.Delivery) []error {
		errs := inner(ctx, ds)
		ncA.Close() // the process dies: no ack ever leaves
		close(committed)
		return errs
	}, bus.ConsumerOptions{DrainTimeout: time.Second})
	ctxA, cancelA := context.WithCancel(h.ctx)
	doneA := make(chan struct{})
	go func() { defer close(doneA); _ = crashing.Run(ctxA) }()
	h.publish(ev)
	select {
	case <-committed:
	case <-h.ctx.Done():
		t.Fatal("first delivery never arrived")
	}
	cancelA()
	<-doneA

	reg := prometheusRegistry()
	m := newMetrics(reg)
	var deliveries atomic.Int64
	again := make(chan uint64, 1)
	_, jsB := h.natsAs(natsauth.BillingState)
	restarted := bus.NewBatchConsumer(jsB, cfg.Consumer, func(ctx context.Context, ds []*bus.Delivery) []error {
		deliveries.Add(int64(len(ds)))
		errs := batchHandler(store, m, cfg, cfg.Logger)(ctx, ds)
		select {
		case again <- ds[0].Delivered:
		default:
		}
		return errs
	}, bus.ConsumerOptions{})
	ctxB, cancelB := context.WithCancel(h.ctx)
	doneB := make(chan struct{})
	go func() { defer close(doneB); _ = restarted.Run(ctxB) }()
	defer func() { cancelB(); <-doneB }()
	select {
	case n := <-again:
		if n < 2 {
			t.Fatalf("redelivery count %d, want >= 2", n)
		}
	case <-h.ctx.Done():
		t.Fatal("the unacked event was not redelivered")
	}
	if got := m.events.WithLabelValues("duplicate"); counterValue(got) != 1 {
		t.Fatalf("duplicate outcomes = %v, want 1", counterValue(got))
	}
	var audits int
	if err := h.db.QueryRow(h.ctx, `SELECT count(*) FROM billing.audit_log WHERE event_id = $1`, ev.GetEventId()).Scan(&audits); err != nil || audits != 1 {
		t.Fatalf("audit rows for the event: %d %v; want exactly one apply", audits, err)
	}
}

// TestPostgresOutage makes the service's database refuse connections,
// checks that events are nak'd meanwhile, and that all of them are applied
// once it is back.
func TestPostgresOutage(t *testing.T) {
	h := start(t)
	jb := journey.New(t, "cus_Outage1", base)
	steps := journey.SubscriptionLifecycle(jb)
	h.publish(steps[0].Events...)
	h.eventually(10*time.Second, "first event", func() bool { return h.statusOf(jb.CustomerID) != nil })

	admin, err := pgxConnectAdmin(h)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(h.ctx, `ALTER DATABASE `+h.dbName+` ALLOW_CONNECTIONS false`); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if _, err := admin.Exec(context.Background(), `ALTER DATABASE `+h.dbName+` ALLOW_CONNECTIONS true`); err != nil {
				t.Errorf("restore database: %v", err)
			}
		}
	}
	defer restore()
	if _, err := admin.Exec(h.ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()`, h.dbName); err != nil {
		t.Fatal(err)
	}
	naksBefore := h.counter("lr_consumer_deliveries_total", "outcome", "nak")
	pending := journey.Events(steps[1:])
	h.publish(pending...)
	// Events are nak'd until their last delivery, which then waits for
	// Postgres instead of becoming a dead letter. The customer's events all
	// go to one worker, which waits with them.
	h.eventually(20*time.Second, "naks, then the worker holding an event", func() bool {
		return h.counter("lr_consumer_deliveries_total", "outcome", "nak") >= naksBefore+3 &&
			h.counter("lr_billing_state_events_total", "outcome", "hold") >= 1
	})
	if n := h.counter("lr_consumer_deliveries_total", "outcome", "dead_letter"); n != 0 {
		t.Fatalf("%v dead letters during the outage", n)
	}
	restore()
	last := steps[len(steps)-1]
	h.eventually(20*time.Second, "every event applied after the outage", func() bool {
		st := h.statusOf(jb.CustomerID)
		return st != nil && st.GetStatus() == last.Status
	})
	h.eventually(20*time.Second, "the consumer to drain", h.drained)
	var applied int
	if err := h.db.QueryRow(h.ctx, `SELECT count(*) FROM billing.processed_events WHERE customer_id = $1 AND outcome IN ('applied', 'stale')`,
		jb.CustomerID).Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if want := len(journey.Events(steps)); applied != want {
		t.Fatalf("%d events recorded, want %d: something was lost", applied, want)
	}
}

// TestDeadLetters: a poison message goes to the DLQ on its first delivery;
// an event that keeps failing goes there after MaxDeliver; replaying it
// once the cause is fixed applies it.
func TestDeadLetters(t *testing.T) {
	h := start(t)
	// Poison: not a BillingEvent at all.
	if _, err := h.pub.Publish(h.ctx, bus.EventSubject("customer.subscription.updated"), "poison-1", []byte{0xff, 0xff, 0xff}, nil); err != nil {
		t.Fatal(err)
	}
	// Malformed: a BillingEvent the service can never apply.
	bad, _ := proto.Marshal(&billingv1.BillingEvent{EventId: "evt_bad1", Type: "customer.subscription.updated",
		ObjectType: "subscription", CustomerId: "cus_Bad1"})
	if _, err := h.pub.Publish(h.ctx, bus.EventSubject("customer.subscription.updated"), "evt_bad1", bad, nil); err != nil {
		t.Fatal(err)
	}
	h.eventually(10*time.Second, "two dead letters", func() bool {
		dls, err := bus.ListDeadLetters(h.ctx, h.js, Durable, 10)
		return err == nil && len(dls) == 2
	})
	dls, _ := bus.ListDeadLetters(h.ctx, h.js, Durable, 10)
	for _, dl := range dls {
		if dl.Delivered != 1 {
			t.Errorf("%s dead-lettered after %d deliveries, want 1", dl.EventID, dl.Delivered)
		}
	}

	// Always failing: the database refuses this event until the trigger goes.
	jb := journey.New(t, "cus_Fail1", base)
	ev := jb.Subscription("customer.subscription.created", 0, "sub_Fail1", "trialing", false, nil)
	if _, err := h.db.Exec(h.ctx, fmt.Sprintf(`CREATE FUNCTION billing.test_refuse() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN IF NEW.event_id = '%s' THEN RAISE EXCEPTION 'refused for the test'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER test_refuse BEFORE INSERT ON billing.processed_events FOR EACH ROW EXECUTE FUNCTION billing.test_refuse();`,
		ev.GetEventId())); err != nil {
		t.Fatal(err)
	}
	h.publish(ev)
	var failed bus.DeadLetter
	h.eventually(15*time.Second, "the failing event in the DLQ", func() bool {
		dls, _ := bus.ListDeadLetters(h.ctx, h.js, Durable, 10)
		for _, dl := range dls {
			if dl.EventID == ev.GetEventId() {
				failed = dl
				return true
			}
		}
		return false
	})
	if failed.Delivered != uint64(h.cfg.Consumer.MaxDeliver) {
		t.Fatalf("dead-lettered after %d deliveries, want MaxDeliver=%d", failed.Delivered, h.cfg.Consumer.MaxDeliver)
	}
	if !strings.Contains(failed.Error, "refused for the test") {
		t.Errorf("dead letter error %q", failed.Error)
	}
	if st := h.statusOf(jb.CustomerID); st != nil {
		t.Fatalf("failing event left state behind: %v", st)
	}
	if _, err := h.db.Exec(h.ctx, `DROP TRIGGER test_refuse ON billing.processed_events`); err != nil {
		t.Fatal(err)
	}
	if _, err := bus.ReplayDeadLetter(h.ctx, h.js, failed.Seq); err != nil {
		t.Fatal(err)
	}
	h.eventually(10*time.Second, "the replayed event applied", func() bool {
		st := h.statusOf(jb.CustomerID)
		return st != nil && st.GetStatus() == billingv1.BillingStatus_BILLING_STATUS_TRIALING
	})
}

func TestGRPC(t *testing.T) {
	h := start(t)
	jb := journey.New(t, "cus_Grpc1", base)
	steps := journey.SubscriptionLifecycle(jb)
	h.publish(journey.Events(steps[:3])...)
	h.eventually(10*time.Second, "active", func() bool {
		st := h.statusOf(jb.CustomerID)
		return st != nil && st.GetStatus() == billingv1.BillingStatus_BILLING_STATUS_ACTIVE
	})
	h.eventually(10*time.Second, "the consumer to drain", h.drained)
	read, admin := h.as(h.readToken), h.as(h.adminToken)
	byID := &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: jb.CustomerID}}

	t.Run("calls read through the API pool", func(t *testing.T) {
		before := h.counter("lr_db_pool_acquires_total", "pool", "billing-state-api")
		for range 5 {
			if _, err := h.client.GetCustomerStatus(read, byID); err != nil {
				t.Fatal(err)
			}
		}
		if got := h.counter("lr_db_pool_acquires_total", "pool", "billing-state-api") - before; got < 5 {
			t.Errorf("API pool: %v acquires for 5 calls", got)
		}
	})

	t.Run("get by id, user id and email", func(t *testing.T) {
		for _, req := range []*billingv1.GetCustomerStatusRequest{
			byID,
			{Lookup: &billingv1.GetCustomerStatusRequest_UserId{UserId: jb.UserID()}},
			{Lookup: &billingv1.GetCustomerStatusRequest_Email{Email: strings.ToUpper(jb.Email())}},
		} {
			st, err := h.client.GetCustomerStatus(read, req)
			if err != nil || st.GetCustomerId() != jb.CustomerID || !st.GetEntitled() {
				t.Fatalf("%v: %v %v", req, st, err)
			}
		}
	})
	t.Run("admin token may read", func(t *testing.T) {
		if _, err := h.client.GetCustomerStatus(admin, byID); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("errors", func(t *testing.T) {
		cases := []struct {
			name string
			call func() error
			code codes.Code
		}{
			{"no token", func() error { _, err := h.client.GetCustomerStatus(h.ctx, byID); return err }, codes.Unauthenticated},
			{"unknown token", func() error { _, err := h.client.GetCustomerStatus(h.as(randomToken(t)), byID); return err }, codes.Unauthenticated},
			{"not bearer", func() error {
				_, err := h.client.GetCustomerStatus(metadataCtx(h.ctx, "Basic "+h.readToken), byID)
				return err
			}, codes.Unauthenticated},
			{"unknown token on watch", func() error {
				s, err := h.client.WatchCustomerStatus(h.as(randomToken(t)), &billingv1.WatchCustomerStatusRequest{CustomerId: jb.CustomerID})
				if err != nil {
					return err
				}
				_, err = s.Recv()
				return err
			}, codes.Unauthenticated},
			{"unknown token on list", func() error {
				_, err := h.client.ListCustomerEvents(h.as(randomToken(t)), &billingv1.ListCustomerEventsRequest{CustomerId: jb.CustomerID})
				return err
			}, codes.Unauthenticated},
			{"read token reconciles", func() error {
				_, err := h.client.ReconcileCustomer(read, &billingv1.ReconcileCustomerRequest{CustomerId: jb.CustomerID})
				return err
			}, codes.PermissionDenied},
			{"no token reconciles", func() error {
				_, err := h.client.ReconcileCustomer(h.ctx, &billingv1.ReconcileCustomerRequest{CustomerId: jb.CustomerID})
				return err
			}, codes.Unauthenticated},
			{"empty lookup", func() error {
				_, err := h.client.GetCustomerStatus(read, &billingv1.GetCustomerStatusRequest{})
				return err
			}, codes.InvalidArgument},
			{"blank customer id", func() error {
				_, err := h.client.GetCustomerStatus(read, &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: "  "}})
				return err
			}, codes.InvalidArgument},
			{"unknown customer", func() error {
				_, err := h.client.GetCustomerStatus(read, &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: "cus_nobody"}})
				return err
			}, codes.NotFound},
			{"unknown user", func() error {
				_, err := h.client.GetCustomerStatus(read, &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_UserId{UserId: "user_nobody"}})
				return err
			}, codes.NotFound},
			{"unknown email", func() error {
				_, err := h.client.GetCustomerStatus(read, &billingv1.GetCustomerStatusRequest{Lookup: &billingv1.GetCustomerStatusRequest_Email{Email: "nobody@example.com"}})
				return err
			}, codes.NotFound},
			{"list unknown customer", func() error {
				_, err := h.client.ListCustomerEvents(read, &billingv1.ListCustomerEventsRequest{CustomerId: "cus_nobody"})
				return err
			}, codes.NotFound},
			{"list without customer", func() error {
				_, err := h.client.ListCustomerEvents(read, &billingv1.ListCustomerEventsRequest{})
				return err
			}, codes.InvalidArgument},
			{"list bad token", func() error {
				_, err := h.client.ListCustomerEvents(read, &billingv1.ListCustomerEventsRequest{CustomerId: jb.CustomerID, PageToken: "not-a-cursor"})
				return err
			}, codes.InvalidArgument},
			{"list negative size", func() error {
				_, err := h.client.ListCustomerEvents(read, &billingv1.ListCustomerEventsRequest{CustomerId: jb.CustomerID, PageSize: -1})
				return err
			}, codes.InvalidArgument},
			{"reconcile unknown customer", func() error {
				_, err := h.client.ReconcileCustomer(admin, &billingv1.ReconcileCustomerRequest{CustomerId: "cus_nobody"})
				return err
			}, codes.NotFound},
			{"reconcile without customer", func() error {
				_, err := h.client.ReconcileCustomer(admin, &billingv1.ReconcileCustomerRequest{})
				return err
			}, codes.InvalidArgument},
			{"watch without customer", func() error {
				s, err := h.client.WatchCustomerStatus(read, &billingv1.WatchCustomerStatusRequest{})
				if err != nil {
					return err
				}
				_, err = s.Recv()
				return err
			}, codes.InvalidArgument},
			{"watch wildcard", func() error {
				s, err := h.client.WatchCustomerStatus(read, &billingv1.WatchCustomerStatusRequest{CustomerId: "cus_>"})
				if err != nil {
					return err
				}
				_, err = s.Recv()
				return err
			}, codes.InvalidArgument},
		}
		for _, c := range cases {
			err := c.call()
			if status.Code(err) != c.code {
				t.Errorf("%s: %v, want %s", c.name, err, c.code)
			}
		}
	})
	t.Run("list events paginates newest first", func(t *testing.T) {
		var ids []int64
		tok := ""
		for page := 0; page < 10; page++ {
			resp, err := h.client.ListCustomerEvents(read, &billingv1.ListCustomerEventsRequest{CustomerId: jb.CustomerID, PageSize: 2, PageToken: tok})
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range resp.GetEvents() {
				ids = append(ids, e.GetId())
				if e.GetActor() != "stripe" || e.GetAfter() == nil || e.GetEventId() == "" {
					t.Errorf("event %v", e)
				}
			}
			if tok = resp.GetNextPageToken(); tok == "" {
				break
			}
		}
		if len(ids) != len(journey.Events(steps[:3])) {
			t.Fatalf("ids %v", ids)
		}
		for i := 1; i < len(ids); i++ {
			if ids[i] >= ids[i-1] {
				t.Fatalf("not newest first: %v", ids)
			}
		}
		resp, err := h.client.ListCustomerEvents(read, &billingv1.ListCustomerEventsRequest{CustomerId: jb.CustomerID, PageSize: 100000})
		if err != nil || len(resp.GetEvents()) != len(ids) || resp.GetNextPageToken() != "" {
			t.Fatalf("oversized page: %d events, token %q, %v", len(resp.GetEvents()), resp.GetNextPageToken(), err)
		}
	})
	t.Run("watch sees a change within a second", func(t *testing.T) {
		wctx, cancel := context.WithCancel(read)
		stream, err := h.client.WatchCustomerStatus(wctx, &billingv1.WatchCustomerStatusRequest{CustomerId: jb.CustomerID})
		if err != nil {
			t.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil || first.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_ACTIVE {
			t.Fatalf("current status first: %v %v", first, err)
		}
		published := time.Now()
		h.publish(steps[3].Events...) // payment failed: past_due
		got := make(chan *billingv1.CustomerStatus, 4)
		go func() {
			for {
				st, err := stream.Recv()
				if err != nil {
					close(got)
					return
				}
				got <- st
			}
		}()
		deadline := time.After(time.Second)
	wait:
		for {
			select {
			case st := <-got:
				if st.GetStatus() == billingv1.BillingStatus_BILLING_STATUS_PAST_DUE {
					t.Logf("change seen %s after publish", time.Since(published))
					break wait
				}
			case <-deadline:
				t.Fatal("no past_due change within 1s of publish")
			}
		}
		cancel()
		for range got { // the stream ends once the client cancels
		}
	})
	t.Run("watch skips a late copy of a change it already showed", func(t *testing.T) {
		// The relay may publish a change after the watcher's first read
		// already showed it, with an older last_event_id (later events that
		// changed nothing a watcher sees moved it on).
		cp := journey.New(t, "cus_Copy1", base)
		h.publish(cp.Subscription("customer.subscription.created", 0, "sub_Copy1", "active", false, nil))
		h.eventually(10*time.Second, "cus_Copy1 active", func() bool {
			st := h.statusOf(cp.CustomerID)
			return st != nil && st.GetStatus() == billingv1.BillingStatus_BILLING_STATUS_ACTIVE
		})
		wctx, cancel := context.WithCancel(read)
		defer cancel()
		stream, err := h.client.WatchCustomerStatus(wctx, &billingv1.WatchCustomerStatusRequest{CustomerId: cp.CustomerID})
		if err != nil {
			t.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil || first.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_ACTIVE {
			t.Fatalf("first: %v %v", first, err)
		}
		late := proto.Clone(first).(*billingv1.CustomerStatus)
		late.LastEventId = "evt_earlier"
		body, err := proto.Marshal(late)
		if err != nil {
			t.Fatal(err)
		}
		// A late copy, as a second relay would publish it.
		_, relay := h.natsAs(natsauth.BillingState)
		if _, err := relay.Publish(h.ctx, bus.StatusSubject(cp.CustomerID), body); err != nil {
			t.Fatal(err)
		}
		h.publish(cp.Subscription("customer.subscription.updated", 10, "sub_Copy1", "past_due", false, map[string]any{"status": "active"}))
		next, err := stream.Recv()
		if err != nil || next.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_PAST_DUE {
			t.Fatalf("after a late copy of the current status, watch sent %v %v; want the past_due change", next, err)
		}
	})
	t.Run("watch a customer not seen yet", func(t *testing.T) {
		wctx, cancel := context.WithCancel(read)
		defer cancel()
		stream, err := h.client.WatchCustomerStatus(wctx, &billingv1.WatchCustomerStatusRequest{CustomerId: "cus_Later1"})
		if err != nil {
			t.Fatal(err)
		}
		first, err := stream.Recv()
		if err != nil || first.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_NONE {
			t.Fatalf("first: %v %v", first, err)
		}
		later := journey.New(t, "cus_Later1", base)
		h.publish(later.Subscription("customer.subscription.created", 0, "sub_Later1", "trialing", false, nil))
		next, err := stream.Recv()
		if err != nil || next.GetStatus() != billingv1.BillingStatus_BILLING_STATUS_TRIALING {
			t.Fatalf("next: %v %v", next, err)
		}
	})
	t.Run("reconcile by admin is audited with the token name", func(t *testing.T) {
		st, err := h.client.ReconcileCustomer(admin, &billingv1.ReconcileCustomerRequest{CustomerId: jb.CustomerID})
		if err != nil || st.GetNeedsReconciliation() {
			t.Fatalf("%v %v", st, err)
		}
		resp, err := h.client.ListCustomerEvents(read, &billingv1.ListCustomerEventsRequest{CustomerId: jb.CustomerID, PageSize: 1})
		if err != nil || resp.GetEvents()[0].GetActor() != "ops" || resp.GetEvents()[0].GetAction() != "reconcile" {
			t.Fatalf("%v %v", resp, err)
		}
	})
	t.Run("health and reflection", func(t *testing.T) {
		hc := healthpb.NewHealthClient(h.conn)
		h.eventually(5*time.Second, "SERVING", func() bool {
			r, err := hc.Check(h.ctx, &healthpb.HealthCheckRequest{Service: "launchready.billing.v1.BillingStatusService"})
			return err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING
		})
		rs, err := reflectionpb.NewServerReflectionClient(h.conn).ServerReflectionInfo(h.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil {
			t.Fatal(err)
		}
		resp, err := rs.Recv()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.GetName())
		}
		if !strings.Contains(strings.Join(names, ","), "launchready.billing.v1.BillingStatusService") {
			t.Fatalf("reflection lists %v", names)
		}
		_ = rs.CloseSend()
	})
	t.Run("ops endpoints", func(t *testing.T) {
		resp, err := http.Get("http://" + h.addrs["http"] + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("/readyz %d", resp.StatusCode)
		}
		resp, err = http.Get("http://" + h.addrs["http"] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for _, name := range []string{"lr_billing_state_events_total", "lr_billing_state_apply_seconds", "lr_billing_state_outbox_lag_seconds",
			"lr_billing_state_outbox_pending", "lr_consumer_deliveries_total", "lr_billing_state_unresolved_events",
			`lr_db_pool_max_connections{pool="billing-state"}`, `lr_db_pool_max_connections{pool="billing-state-api"} 4`,
			"lr_billing_state_watch_streams", "lr_billing_state_watch_refused_total"} {
			if !strings.Contains(string(body), name) {
				t.Errorf("/metrics lacks %s", name)
			}
		}
	})
}

// TestInternalErrorsDoNotLeak closes the service's database under it: the
// answer is a bare Internal, never the driver's message.
func TestInternalErrorsDoNotLeak(t *testing.T) {
	h := start(t)
	admin, err := pgxConnectAdmin(h)
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(context.Background())
	if _, err := admin.Exec(h.ctx, `ALTER DATABASE `+h.dbName+` ALLOW_CONNECTIONS false`); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_, _ = admin.Exec(context.Background(), `ALTER DATABASE `+h.dbName+` ALLOW_CONNECTIONS true`)
	}()
	if _, err := admin.Exec(h.ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, h.dbName); err != nil {
		t.Fatal(err)
	}
	_, err = h.client.GetCustomerStatus(h.as(h.readToken), &billingv1.GetCustomerStatusRequest{
		Lookup: &billingv1.GetCustomerStatusRequest_CustomerId{CustomerId: "cus_x"}})
	if status.Code(err) != codes.Internal || status.Convert(err).Message() != "internal error" {
		t.Fatalf("got %v", err)
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Parallel()
	cfg, err := ConfigFromEnv(config.Map(map[string]string{}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.GRPCAddr != ":9090" || cfg.HTTPAddr != ":8081" || !cfg.Policy.PastDueEntitled || cfg.Consumer.Durable != Durable ||
		cfg.StripeAPIRate != 20 || cfg.DriftCheckInterval != 6*time.Hour || cfg.EndpointCheckInterval != time.Hour || cfg.PublicWebhookURL != "" || cfg.Tokens.Len() != 0 || cfg.NATSURL.URL != nats.DefaultURL || !cfg.AsyncCommit ||
		cfg.OutboxRetention != 24*time.Hour {
		t.Fatalf("defaults: %+v", cfg)
	}
	if want := (grpcapi.Config{MaxStreams: 1000, MaxWatchPerToken: 1000, UnaryTimeout: 5 * time.Second, DBMaxConns: 4}); cfg.GRPC != want {
		t.Fatalf("gRPC defaults: %+v, want %+v", cfg.GRPC, want)
	}
	tok := randomToken(t)
	cfg, err = ConfigFromEnv(config.Map(map[string]string{
		"PAST_DUE_ENTITLED": "false", "STATUS_API_TOKENS": "mobile=" + tok + ":read", "GRPC_ADDR": ":9999",
		"STRIPE_API_KEY": "sk_test_" + tok, "STRIPE_API_RATE": "2.5", "ASYNC_COMMIT": "false", "OUTBOX_RETENTION": "2h",
		"ENDPOINT_CHECK_INTERVAL": "15m", "PUBLIC_WEBHOOK_URL": "https://hooks.example.com/stripe",
		"GRPC_MAX_STREAMS": "64", "GRPC_MAX_WATCH_PER_TOKEN": "3", "GRPC_UNARY_TIMEOUT": "750ms", "GRPC_DB_MAX_CONNS": "2",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Policy.PastDueEntitled || cfg.Tokens.Len() != 1 || cfg.GRPCAddr != ":9999" || cfg.StripeAPIRate != 2.5 || cfg.AsyncCommit ||
		cfg.OutboxRetention != 2*time.Hour || cfg.EndpointCheckInterval != 15*time.Minute || cfg.PublicWebhookURL != "https://hooks.example.com/stripe" {
		t.Fatalf("%+v", cfg)
	}
	if want := (grpcapi.Config{MaxStreams: 64, MaxWatchPerToken: 3, UnaryTimeout: 750 * time.Millisecond, DBMaxConns: 2}); cfg.GRPC != want {
		t.Fatalf("gRPC settings: %+v, want %+v", cfg.GRPC, want)
	}
	if dump := fmt.Sprintf("%+v %v", cfg, cfg.Tokens); strings.Contains(dump, tok) {
		t.Fatal("config prints a token or key")
	}
	_, err = ConfigFromEnv(config.Map(map[string]string{
		"STATUS_API_TOKENS": "mobile=" + tok + ":write", "PAST_DUE_ENTITLED": "maybe", "STRIPE_API_RATE": "0",
		"OUTBOX_RETENTION": "0s", "ENDPOINT_CHECK_INTERVAL": "-1h",
	}))
	if err == nil || !strings.Contains(err.Error(), "write") || !strings.Contains(err.Error(), "PAST_DUE_ENTITLED") ||
		!strings.Contains(err.Error(), "STRIPE_API_RATE") || !strings.Contains(err.Error(), "OUTBOX_RETENTION") ||
		!strings.Contains(err.Error(), "ENDPOINT_CHECK_INTERVAL") || strings.Contains(err.Error(), tok) {
		t.Fatalf("errors: %v", err)
	}
	// A live key where STRIPE_LIVEMODE says test is refused at start,
	// without the key in the error; a test key is accepted.
	live := "sk_live_" + strings.Repeat("7", 24)
	_, err = ConfigFromEnv(config.Map(map[string]string{"STATUS_API_TOKENS": "mobile=" + tok + ":read", "STRIPE_API_KEY": live, "STRIPE_LIVEMODE": "test"}))
	if err == nil || !strings.Contains(err.Error(), "STRIPE_API_KEY") || !strings.Contains(err.Error(), "STRIPE_LIVEMODE=test") || strings.Contains(err.Error(), live) {
		t.Fatalf("a live key in test mode: %v", err)
	}
	if c, err := ConfigFromEnv(config.Map(map[string]string{"STATUS_API_TOKENS": "mobile=" + tok + ":read", "STRIPE_API_KEY": "sk_test_" + strings.Repeat("7", 24), "STRIPE_LIVEMODE": "test"})); err != nil || c.StripeLivemode != "test" {
		t.Fatalf("a test key in test mode: %v", err)
	}
	short := tok[:31]
	_, err = ConfigFromEnv(config.Map(map[string]string{
		"STATUS_API_TOKENS": "mobile=" + short + ":read", "GRPC_TLS_CERT": "/nonexistent/cert.pem",
		"GRPC_MAX_STREAMS": "0", "GRPC_MAX_WATCH_PER_TOKEN": "-1", "GRPC_UNARY_TIMEOUT": "0s", "GRPC_DB_MAX_CONNS": "0",
	}))
	for _, want := range []string{`token of "mobile" is shorter than 32 characters`, "GRPC_TLS_CERT and GRPC_TLS_KEY", "GRPC_MAX_STREAMS",
		"GRPC_MAX_WATCH_PER_TOKEN", "GRPC_UNARY_TIMEOUT", "GRPC_DB_MAX_CONNS"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q: %v", want, err)
		}
	}
	if err != nil && strings.Contains(err.Error(), short) {
		t.Fatalf("the error echoes the token: %v", err)
	}
}

// TestStartsBeforeNATS starts the service while NATS is down: the ops
// server answers at once, /readyz says NATS is missing, and the service
// becomes ready when NATS comes up.
func TestStartsBeforeNATS(t *testing.T) {
	t.Parallel()
	ns := natstest.Start(t)
	ns.Shutdown()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	httpAddr := ln.Addr().String()
	ln.Close()
	cfg, _, _ := testConfig(t, ns.Conn(natsauth.BillingState), pgtest.NewDatabase(t))
	cfg.HTTPAddr = httpAddr
	ready := make(chan map[string]string, 1)
	cfg.Ready = func(a map[string]string) { ready <- a }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + httpAddr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	deadline := time.Now().Add(10 * time.Second)
	for code, _ := get("/healthz"); code != http.StatusOK; code, _ = get("/healthz") {
		if time.Now().After(deadline) {
			t.Fatal("/healthz never answered while NATS was down")
		}
		select {
		case <-time.After(10 * time.Millisecond):
		case err := <-done:
			t.Fatalf("Run ended: %v", err)
		}
	}
	if code, body := get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "nats") {
		t.Fatalf("/readyz without NATS: %d %s", code, body)
	}
	ns.Restart()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run ended: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("not ready after NATS came up")
	}
	if code, body := get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz with NATS: %d %s", code, body)
	}
}

// TestJourneyStepsThroughNATS publishes each journey step by step and
// checks the status and entitlement gRPC reports after every step.
func TestJourneyStepsThroughNATS(t *testing.T) {
	h := start(t)
	for name, build := range journey.Journeys {
		jb := journey.New(t, "cus_step"+strings.ReplaceAll(name, " ", ""), base)
		for _, step := range build(jb) {
			h.publish(step.Events...)
			h.eventually(10*time.Second, name+": "+step.Name, func() bool {
				st := h.statusOf(jb.CustomerID)
				return st != nil && st.GetStatus() == step.Status && st.GetEntitled() == step.Entitled &&
					st.GetDisputeOpen() == step.DisputeOpen && st.GetCancelAtPeriodEnd() == step.Cancel
			})
			h.eventually(10*time.Second, "the consumer to drain", h.drained)
			// Drained: the step is fully applied and must still hold.
			st := h.statusOf(jb.CustomerID)
			if st.GetStatus() != step.Status || st.GetEntitled() != step.Entitled || st.GetNeedsReconciliation() {
				t.Fatalf("%s after %q: %v", name, step.Name, st)
			}
		}
	}
}

// The status page, the portal allow-list and the display settings are
// read, and a half-configured page refuses to start.
func TestConfigFromEnvCustomerFacing(t *testing.T) {
	t.Parallel()
	secret := randomToken(t)
	cfg, err := ConfigFromEnv(config.Map(map[string]string{
		"STATUS_PAGE_ADDR": ":8090", "STATUS_PAGE_URL": "https://status.example.com", "STATUS_LINK_SECRETS": secret,
		"STATUS_LINK_MAX_TTL": "1h", "STATUS_STALE_AFTER": "2m", "PORTAL_RETURN_URLS": "https://app.example.com/billing/",
	}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StatusPageAddr != ":8090" || len(cfg.StatusLinkSecrets) != 1 || cfg.StatusLinkMaxTTL != time.Hour ||
		cfg.StaleAfter != 2*time.Minute || cfg.ReturnURLs.Len() != 1 || cfg.Catalogues == nil {
		t.Fatalf("%+v", cfg)
	}
	if strings.Contains(fmt.Sprint(cfg.LogValue()), secret) {
		t.Fatal("the settings log shows a link secret")
	}
	for _, env := range []map[string]string{
		{"STATUS_PAGE_ADDR": ":8090"},
		{"STATUS_PAGE_ADDR": ":8090", "STATUS_PAGE_URL": "http://status.example.com", "STATUS_LINK_SECRETS": secret},
		{"STATUS_PAGE_ADDR": ":8090", "STATUS_PAGE_URL": "https://status.example.com", "STATUS_LINK_SECRETS": "short"},
		{"PORTAL_RETURN_URLS": "http://app.example.com/"},
		{"STATUS_STALE_AFTER": "0s"},
	} {
		if _, err := ConfigFromEnv(config.Map(env)); err == nil || strings.Contains(err.Error(), secret) {
			t.Errorf("%v: %v", env, err)
		}
	}
}
