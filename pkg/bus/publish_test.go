package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
)

func TestEnsureStreamsIdempotent(t *testing.T) {
	b := setup(t) // ran EnsureStreams once
	ctx := testCtx(t)
	cfg := bus.StreamConfig{Replicas: 1, DuplicateWindow: time.Hour, MaxAge: 48 * time.Hour, Storage: jetstream.FileStorage}
	if err := bus.EnsureStreams(ctx, b.js, cfg); err != nil {
		t.Fatalf("second run: %v", err)
	}
	// Four services starting at once.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() { errs <- bus.EnsureStreams(ctx, b.js, cfg) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("concurrent run: %v", err)
		}
	}

	want := map[string]struct {
		subjects []string
		maxAge   time.Duration
		dup      time.Duration
	}{
		bus.StreamEvents: {[]string{"billing.events.>", "billing.replay.>"}, 48 * time.Hour, time.Hour},
		bus.StreamDLQ:    {[]string{"billing.dlq.>"}, 30 * 24 * time.Hour, time.Hour},
		bus.StreamStatus: {[]string{"billing.status.>"}, 7 * 24 * time.Hour, time.Hour},
	}
	for name, w := range want {
		st, err := b.js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		c := st.CachedInfo().Config
		if len(c.Subjects) != len(w.subjects) {
			t.Fatalf("%s subjects = %v, want %v", name, c.Subjects, w.subjects)
		}
		for i := range w.subjects {
			if c.Subjects[i] != w.subjects[i] {
				t.Fatalf("%s subjects = %v, want %v", name, c.Subjects, w.subjects)
			}
		}
		if c.MaxAge != w.maxAge || c.Duplicates != w.dup || c.Storage != jetstream.FileStorage ||
			c.Replicas != 1 || c.Discard != jetstream.DiscardOld {
			t.Fatalf("%s config = maxage %s dup %s storage %v replicas %d discard %v", name,
				c.MaxAge, c.Duplicates, c.Storage, c.Replicas, c.Discard)
		}
	}
}

func TestStreamConfigFromEnv(t *testing.T) {
	e := config.New(config.Map(nil))
	got := bus.StreamConfigFromEnv(e)
	if e.Err() != nil {
		t.Fatal(e.Err())
	}
	if got.Replicas != 1 || got.DuplicateWindow != 2*time.Hour || got.MaxAge != 720*time.Hour || got.Storage != jetstream.FileStorage {
		t.Fatalf("defaults = %+v", got)
	}

	e = config.New(config.Map(map[string]string{
		"NATS_STREAM_REPLICAS": "3", "NATS_DUPLICATE_WINDOW": "10m", "NATS_MAX_AGE": "24h", "NATS_STORAGE": "memory",
	}))
	got = bus.StreamConfigFromEnv(e)
	if e.Err() != nil {
		t.Fatal(e.Err())
	}
	if got.Replicas != 3 || got.DuplicateWindow != 10*time.Minute || got.MaxAge != 24*time.Hour || got.Storage != jetstream.MemoryStorage {
		t.Fatalf("overrides = %+v", got)
	}

	e = config.New(config.Map(map[string]string{"NATS_STORAGE": "tape", "NATS_STREAM_REPLICAS": "0", "NATS_MAX_AGE": "soon"}))
	bus.StreamConfigFromEnv(e)
	if e.Err() == nil {
		t.Fatal("bad values accepted")
	}
}

func TestPublishEventDeduplicates(t *testing.T) {
	b := setup(t)
	ev := event("evt_dup_1", "invoice.paid", "cus_1")
	first := b.publish(t, ev)
	if first.Duplicate || first.Seq != 1 {
		t.Fatalf("first publish = %+v", first)
	}
	second := b.publish(t, ev)
	if !second.Duplicate || second.Seq != first.Seq {
		t.Fatalf("second publish = %+v, want duplicate of seq %d", second, first.Seq)
	}
	if n := streamMsgs(t, b.js, bus.StreamEvents); n != 1 {
		t.Fatalf("stream holds %d messages, want 1", n)
	}

	st, err := b.js.Stream(testCtx(t), bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	m, err := st.GetMsg(testCtx(t), 1)
	if err != nil {
		t.Fatal(err)
	}
	if m.Subject != "billing.events.invoice.paid" || m.Header.Get("Nats-Msg-Id") != "evt_dup_1" {
		t.Fatalf("stored subject %q msg id %q", m.Subject, m.Header.Get("Nats-Msg-Id"))
	}
	var got billingv1.BillingEvent
	if err := proto.Unmarshal(m.Data, &got); err != nil || got.CustomerId != "cus_1" {
		t.Fatalf("payload = %v (%v)", &got, err)
	}
}

func TestPublishEventMarksItsSource(t *testing.T) {
	b := setup(t)
	webhook := event("evt_src_webhook", "invoice.paid", "cus_1")
	fromAPI := event("evt_src_api", "invoice.paid", "cus_1")
	fromAPI.Source = billingv1.EventSource_EVENT_SOURCE_API
	snapshot := event("snap_src_1", "customer.subscription.updated", "cus_1")
	snapshot.Source = billingv1.EventSource_EVENT_SOURCE_SNAPSHOT
	st, err := b.js.Stream(testCtx(t), bus.StreamEvents)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ev   *billingv1.BillingEvent
		want string
	}{{webhook, ""}, {fromAPI, "api"}, {snapshot, "snapshot"}} {
		res := b.publish(t, c.ev)
		m, err := st.GetMsg(testCtx(t), res.Seq)
		if err != nil {
			t.Fatal(err)
		}
		if got := m.Header.Get(bus.HeaderSource); got != c.want {
			t.Fatalf("%s: %s = %q, want %q", c.ev.EventId, bus.HeaderSource, got, c.want)
		}
	}
}

func TestPublishRejectsBadEvents(t *testing.T) {
	b := setup(t)
	for name, ev := range map[string]*billingv1.BillingEvent{
		"nil":        nil,
		"no id":      event("", "invoice.paid", ""),
		"no type":    event("evt_1", "", ""),
		"wildcard":   event("evt_1", "invoice.*", ""),
		"whitespace": event("evt_1", "invoice paid", ""),
	} {
		_, err := b.pub.PublishEvent(testCtx(t), ev)
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
		if errors.Is(err, bus.ErrUnavailable) {
			t.Errorf("%s: a bad event is not an outage: %v", name, err)
		}
	}
	if n := streamMsgs(t, b.js, bus.StreamEvents); n != 0 {
		t.Fatalf("stream holds %d messages after refusals", n)
	}
}

func TestPublishUnavailableWhileServerDown(t *testing.T) {
	b := setup(t)
	b.publish(t, event("evt_before", "customer.created", "cus_1"))

	b.srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	_, err := b.pub.PublishEvent(ctx, event("evt_during", "customer.created", "cus_1"))
	cancel()
	if !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("publish with the server down: err = %v, want ErrUnavailable", err)
	}

	b.srv.Restart()
	// The client reconnects by itself; retry as ingress's caller (Stripe) would.
	var res bus.PubResult
	testkit.Eventually(t, 20*time.Second, "publish after restart", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		defer cancel()
		res, err = b.pub.PublishEvent(ctx, event("evt_during", "customer.created", "cus_1"))
		return err == nil
	})
	if res.Duplicate || res.Seq != 2 {
		t.Fatalf("publish after restart = %+v, want seq 2", res)
	}
	// The message acked before the outage survived it.
	if again := b.publish(t, event("evt_before", "customer.created", "cus_1")); !again.Duplicate || again.Seq != 1 {
		t.Fatalf("evt_before after restart = %+v, want duplicate of seq 1", again)
	}
	if n := streamMsgs(t, b.js, bus.StreamEvents); n != 2 {
		t.Fatalf("stream holds %d messages, want 2", n)
	}
}

func TestConnectGivesUpWithContext(t *testing.T) {
	srv := setup(t).srv
	url := srv.URL()
	srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	nc, _, err := bus.Connect(ctx, bus.ConnConfig{URL: url}, "down", nil)
	if !errors.Is(err, bus.ErrUnavailable) {
		t.Fatalf("Connect to a stopped server: err = %v", err)
	}
	if nc != nil {
		t.Fatal("connection returned with an error")
	}
}

func TestPublishGeneric(t *testing.T) {
	b := setup(t)
	hdr := map[string][]string{"Lr-Kind": {"status"}}
	res, err := b.pub.Publish(testCtx(t), bus.StatusSubject("cus_9"), "outbox-1", []byte("x"), hdr)
	if err != nil || res.Duplicate {
		t.Fatalf("publish = %+v, %v", res, err)
	}
	res, err = b.pub.Publish(testCtx(t), bus.StatusSubject("cus_9"), "outbox-1", []byte("x"), nil)
	if err != nil || !res.Duplicate {
		t.Fatalf("republish = %+v, %v; want duplicate", res, err)
	}
	if n := streamMsgs(t, b.js, bus.StreamStatus); n != 1 {
		t.Fatalf("status stream holds %d", n)
	}
}

func TestPublishAllStoresInOrderAndDeduplicates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	var msgs []bus.Message
	for i := range 50 {
		msgs = append(msgs, bus.Message{Subject: bus.StatusSubject("cus_All1"), MsgID: fmt.Sprintf("outbox-%d", i), Data: []byte{byte(i)}})
	}
	res, err := b.pub.PublishAll(ctx, msgs)
	if err != nil || len(res) != len(msgs) {
		t.Fatalf("PublishAll: %d results, %v", len(res), err)
	}
	for i := 1; i < len(res); i++ {
		if res[i].Seq <= res[i-1].Seq || res[i].Duplicate {
			t.Fatalf("result %d: %+v after %+v; want stored in order", i, res[i], res[i-1])
		}
	}
	again, err := b.pub.PublishAll(ctx, msgs[:10])
	if err != nil || len(again) != 10 {
		t.Fatalf("again: %d results, %v", len(again), err)
	}
	for i, r := range again {
		if !r.Duplicate || r.Seq != res[i].Seq {
			t.Fatalf("republished %d: %+v, want a duplicate of seq %d", i, r, res[i].Seq)
		}
	}
	if n := streamMsgs(t, b.js, bus.StreamStatus); n != 50 {
		t.Fatalf("stream holds %d, want 50", n)
	}
}

func TestPublishAllReportsTheStoredPrefix(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	msgs := []bus.Message{
		{Subject: bus.StatusSubject("cus_All2"), MsgID: "outbox-1", Data: []byte("a")},
		{Subject: "nowhere.no.stream", MsgID: "outbox-2", Data: []byte("b")},
		{Subject: bus.StatusSubject("cus_All2"), MsgID: "outbox-3", Data: []byte("c")},
	}
	res, err := b.pub.PublishAll(ctx, msgs)
	if err == nil || len(res) != 1 {
		t.Fatalf("PublishAll = %d results, %v; want the first stored and the second's error", len(res), err)
	}
	if !strings.Contains(err.Error(), "outbox-2") {
		t.Fatalf("error %q does not name the message", err)
	}
}

// The webhook attack of issue 16: a 5,000-byte event type used to reach the
// server as a subject and close the connection for good.
func TestPublishRefusesUnsafeSubjectsAndKeepsItsConnection(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testCtx(t)
	long := strings.Repeat("a", 5000)
	_, err := b.pub.PublishEvent(ctx, event("evt_long", long, "cus_1"))
	if !errors.Is(err, bus.ErrInvalidSubject) || errors.Is(err, bus.ErrUnavailable) || len(err.Error()) > 200 {
		t.Fatalf("PublishEvent with a 5000-byte type: %.200v", err)
	}
	for name, subject := range map[string]string{
		"5000 bytes":  bus.StatusSubject(long),
		"wildcard":    bus.StatusSubject("*"),
		"control":     bus.StatusSubject("cus\x00"),
		"empty token": "billing.status..cus_1",
	} {
		if _, err := b.pub.Publish(ctx, subject, "", []byte("x"), nil); !errors.Is(err, bus.ErrInvalidSubject) || errors.Is(err, bus.ErrUnavailable) {
			t.Errorf("Publish %s: %.200v", name, err)
		}
	}
	res, err := b.pub.PublishAll(ctx, []bus.Message{
		{Subject: bus.StatusSubject("cus_ok"), MsgID: "outbox-1", Data: []byte("a")},
		{Subject: bus.StatusSubject(long), MsgID: "outbox-2", Data: []byte("b")},
		{Subject: bus.StatusSubject("cus_ok"), MsgID: "outbox-3", Data: []byte("c")},
	})
	if len(res) != 1 || !errors.Is(err, bus.ErrInvalidSubject) || !strings.Contains(err.Error(), "outbox-2") {
		t.Fatalf("PublishAll with a 5000-byte subject second: %d stored, %.200v", len(res), err)
	}
	if n := streamMsgs(t, b.js, bus.StreamStatus); n != 1 {
		t.Fatalf("status stream holds %d messages, want only the one before the refusal", n)
	}

	// The longest subject the checks allow is stored, and the connection
	// the refusals went through is still the one in use.
	longest := strings.Repeat("a", bus.MaxSubjectBytes-len(bus.EventsPrefix)-bus.MaxSubjectTokenBytes-1) + "." + strings.Repeat("b", bus.MaxSubjectTokenBytes)
	if _, err := b.pub.PublishEvent(ctx, event("evt_longest", longest, "cus_1")); err != nil {
		t.Fatalf("a %d-byte subject: %v", len(bus.EventSubject(longest)), err)
	}
	if !b.nc.IsConnected() || b.nc.Stats().Reconnects != 0 {
		t.Fatalf("connection after the refusals: connected %v, reconnects %d", b.nc.IsConnected(), b.nc.Stats().Reconnects)
	}
}
