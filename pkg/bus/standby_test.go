package bus_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/logging"
	"github.com/launchready/launchready/pkg/natstest"
	"github.com/launchready/launchready/test/testkit"
)

// TestPublishUsesTheStandbyWhileTheEventsStreamHasNoLeader: while
// BILLING_EVENTS answers nothing (here it does not exist yet; in a cluster,
// its leader's node died and the election takes 4 to 9 s), a publisher
// WithStandby stores each event in the standby at its second attempt. When
// BILLING_EVENTS is back, it takes every one of them from the standby under
// its billing.events subject, and an event it also got directly is kept
// once. The same ack times under a real SIGKILL of a node are measured by
// test/cluster.
func TestPublishUsesTheStandbyWhileTheEventsStreamHasNoLeader(t *testing.T) {
	srv := natstest.StartOpen(t)
	ctx := testCtx(t)
	nc, js, err := bus.Connect(ctx, bus.ConnConfig{URL: srv.URL()}, "bus-standby", logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	// The replicated definitions, on one server.
	var events, standby jetstream.StreamConfig
	for _, sc := range bus.StreamConfigs(bus.StreamConfig{Replicas: 3, Storage: jetstream.FileStorage}) {
		sc.Replicas = 1
		switch sc.Name {
		case bus.StreamEvents:
			events = sc
		case bus.StreamStandby:
			standby = sc
		}
	}
	if len(events.Sources) != 1 || events.Sources[0].Name != bus.StreamStandby {
		t.Fatalf("BILLING_EVENTS does not source the standby: %+v", events.Sources)
	}
	if _, err := js.CreateStream(ctx, standby); err != nil {
		t.Fatal(err)
	}

	// The standby's attempts go through a second connection, as ingress's do.
	nc2, js2, err := bus.Connect(ctx, bus.ConnConfig{URL: srv.URL()}, "bus-standby-2", logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc2.Close)
	reg := prometheus.NewRegistry()
	pub := bus.NewPublisher(js, nil, bus.WithStandby(js2), bus.WithPublisherRegistry(reg))
	const n = 5
	for i := range n {
		start := time.Now()
		if _, err := pub.PublishEvent(ctx, event(fmt.Sprintf("evt_sb_%d", i), "invoice.payment_failed", "cus_sb")); err != nil {
			t.Fatalf("publish %d with no events stream: %v", i, err)
		}
		// No responders comes back at once: the standby is the second try.
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("publish %d took %s", i, d)
		}
	}
	if got := metricValue(t, reg, "lr_publish_standby_total"); got != n {
		t.Errorf("lr_publish_standby_total = %v, want %d", got, n)
	}
	// A publisher without the standby still fails: nothing stores it.
	short, cancel := context.WithTimeout(ctx, time.Second)
	_, err = bus.NewPublisher(js, nil).PublishEvent(short, event("evt_sb_plain", "invoice.paid", "cus_sb"))
	cancel()
	if err == nil {
		t.Fatal("a publisher without the standby stored an event with no events stream")
	}

	if _, err := js.CreateStream(ctx, events); err != nil {
		t.Fatal(err)
	}
	// evt_sb_0 again, straight into BILLING_EVENTS, as a first attempt
	// that did land late would be: it is not stored twice.
	if _, err := pub.PublishEvent(ctx, event("evt_sb_0", "invoice.payment_failed", "cus_sb")); err != nil {
		t.Fatal(err)
	}
	var got map[string]int
	testkit.Eventually(t, 20*time.Second, "the standby's events in BILLING_EVENTS", func() bool {
		got = idsIn(t, js, bus.StreamEvents)
		return len(got) == n
	})
	for i := range n {
		if id := fmt.Sprintf("evt_sb_%d", i); got[id] != 1 {
			t.Errorf("BILLING_EVENTS holds %s %d times", id, got[id])
		}
	}
}

// TestProvisioningKeepsTheStandbyLedApart: after provisioning, and after a
// node loss moves a leader, SeparateStandbyLeader puts the two streams'
// leaders on different nodes.
func TestProvisioningKeepsTheStandbyLedApart(t *testing.T) {
	b := setupCluster(t)
	apart(t, b)
	// Make them collide: step the standby down until it lands on the
	// events stream's node, then separate them again.
	events := b.c.StreamLeader(bus.StreamEvents, 10*time.Second)
	testkit.Eventually(t, 60*time.Second, "the standby led from the events stream's node", func() bool {
		if b.c.StreamLeader(bus.StreamStandby, 10*time.Second) == events {
			return true
		}
		_, _ = b.ncs[0].Request("$JS.API.STREAM.LEADER.STEPDOWN."+bus.StreamStandby, nil, 5*time.Second)
		return false
	})
	moved, err := bus.SeparateStandbyLeader(testCtx(t), b.jss[0])
	if err != nil || !moved {
		t.Fatalf("SeparateStandbyLeader with both led from node %d: moved %v, %v", events, moved, err)
	}
	apart(t, b)
}

// TestSeparateConnectionsMovesTheSecondToAnotherServer: the standby's
// connection, on the same server as the publisher's, is moved to another.
func TestSeparateConnectionsMovesTheSecondToAnotherServer(t *testing.T) {
	b := setupCluster(t)
	first := b.ncs[0]
	same := -1
	for i := range b.c.Len() {
		if first.ConnectedUrl() == b.c.URL(i) {
			same = i
		}
	}
	if same < 0 {
		t.Fatalf("connection 0 is on %s, none of the cluster's URLs", first.ConnectedUrl())
	}
	// Only that server's URL: the others come from the cluster's INFO.
	nc, _, err := bus.Connect(testCtx(t), bus.ConnConfig{URL: b.c.URL(same)}, "bus-standby-conn", logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if nc.ConnectedServerId() != first.ConnectedServerId() {
		t.Fatalf("the second connection is on %s, not on the first's %s", nc.ConnectedServerName(), first.ConnectedServerName())
	}
	testkit.Eventually(t, 10*time.Second, "the cluster's other servers known", func() bool { return len(nc.Servers()) >= 2 })
	if !bus.SeparateConnections(first, nc) {
		t.Fatal("SeparateConnections left both connections on one server")
	}
	testkit.Eventually(t, 30*time.Second, "the second connection on another server", func() bool {
		return nc.IsConnected() && nc.ConnectedServerId() != first.ConnectedServerId()
	})
	if bus.SeparateConnections(first, nc) {
		t.Error("SeparateConnections moved a connection that was already on another server")
	}
}

// apart waits until the two streams are led from different nodes, asking
// SeparateStandbyLeader as ingress does.
func apart(t *testing.T, b *clusterBundle) {
	t.Helper()
	testkit.Eventually(t, 60*time.Second, "the standby led apart from the events stream", func() bool {
		ev := b.c.StreamLeader(bus.StreamEvents, 10*time.Second)
		sb := b.c.StreamLeader(bus.StreamStandby, 10*time.Second)
		if ev != sb {
			return true
		}
		_, _ = bus.SeparateStandbyLeader(testCtx(t), b.jss[0])
		return false
	})
}

// idsIn counts each Nats-Msg-Id stored in stream, checking that every
// message is under billing.events.
func idsIn(t *testing.T, js jetstream.JetStream, stream string) map[string]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return nil
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil
	}
	out := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue // deleted or not yet readable
		}
		if !strings.HasPrefix(m.Subject, bus.EventsPrefix) {
			t.Errorf("message %d is under %s, not %s", seq, m.Subject, bus.EventsPrefix)
		}
		out[nats.Header(m.Header).Get(jetstream.MsgIDHeader)]++
	}
	return out
}
