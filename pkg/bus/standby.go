package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// StandbySubject is the subject an event published to subject (under
// billing.) takes in BILLING_EVENTS_STANDBY.
func StandbySubject(subject string) string {
	return StandbyPrefix + strings.TrimPrefix(subject, "billing.")
}

// SeparateStandbyLeader makes sure BILLING_EVENTS and its standby are not
// led from the same node: the standby is there to take events while the
// events stream's leader is being replaced, which it cannot do when the
// same node's death takes both leaders. When they share a leader it asks
// the standby's to step down, and a follower on another node takes over
// (an election that costs the standby well under a second and the events
// stream nothing). It reports whether it asked. Where either stream is
// missing, or has no leader right now, there is nothing to do yet.
func SeparateStandbyLeader(ctx context.Context, js jetstream.JetStream) (bool, error) {
	leader := func(name string) (string, error) {
		st, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("stream %s: %w", name, wrapUnavailable(err))
		}
		if ci := st.CachedInfo().Cluster; ci != nil {
			return ci.Leader, nil
		}
		return "", nil
	}
	events, err := leader(StreamEvents)
	if err != nil {
		return false, err
	}
	standby, err := leader(StreamStandby)
	if err != nil {
		return false, err
	}
	if events == "" || standby != events {
		return false, nil
	}
	reply, err := js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+StreamStandby, nil)
	if err != nil {
		return false, fmt.Errorf("step down %s's leader: %w", StreamStandby, wrapUnavailable(err))
	}
	var resp struct {
		Success bool `json:"success"`
		Error   *struct {
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return false, fmt.Errorf("step down %s's leader: %w", StreamStandby, err)
	}
	if !resp.Success {
		desc := "refused"
		if resp.Error != nil {
			desc = resp.Error.Description
		}
		return false, fmt.Errorf("step down %s's leader: %s", StreamStandby, desc)
	}
	return true, nil
}

// KeepStandbyApart runs SeparateStandbyLeader every interval (with jitter,
// so that two ingress replicas rarely ask at once) until ctx ends. A
// failover moves the events stream's leader to one of the surviving nodes,
// which may be the standby's; the next check moves the standby away again.
// A failed check is logged and tried again at the next tick. When standby
// is the connection the standby's attempts go through (WithStandby), each
// check also moves it to another server when it shares js's (after a
// reconnect, say).
func KeepStandbyApart(ctx context.Context, js jetstream.JetStream, standby *nats.Conn, interval time.Duration, log *slog.Logger) {
	for {
		wait := interval/2 + rand.N(interval/2+1) // #nosec G404 -- jitter needs spread, not unpredictability
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if standby != nil && SeparateConnections(js.Conn(), standby) {
			log.Info("moved the standby connection to another server", "server", standby.ConnectedServerName())
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		moved, err := SeparateStandbyLeader(cctx, js)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil:
			log.Warn("cannot check the standby stream's leader", "stream", StreamStandby, "error", Redact(err.Error()))
		case moved:
			log.Info("moved the standby stream's leader off the events stream's node", "stream", StreamStandby)
		}
	}
}

// SeparateConnections makes other reconnect to another server when it is
// connected to the same one as nc and the cluster has another to offer;
// it reports whether it asked. A reconnect picks the next server of the
// pool, never the current one.
func SeparateConnections(nc, other *nats.Conn) bool {
	if !nc.IsConnected() || !other.IsConnected() || len(other.Servers()) < 2 {
		return false
	}
	if nc.ConnectedServerId() != other.ConnectedServerId() {
		return false
	}
	return other.ForceReconnect() == nil
}

// standbyMsg is m addressed to the standby stream: the same data and
// headers (Nats-Msg-Id included), under StandbySubject.
func standbyMsg(m *nats.Msg) *nats.Msg {
	return &nats.Msg{Subject: StandbySubject(m.Subject), Data: m.Data, Header: m.Header}
}
