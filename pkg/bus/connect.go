package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/launchready/launchready/pkg/config"
)

// Connect dials NATS and returns the connection and its JetStream handle.
// The client reconnects forever with jittered waits, so a broker restart
// costs an outage, never a process restart. Connect blocks until the first
// connection is up or ctx ends; bound ctx to bound the wait.
//
// While disconnected, publishes fail at once instead of being buffered:
// ingress answers 503 straight away, and a publish the caller was told had
// failed can never reach the stream later behind its back.
func Connect(ctx context.Context, url, clientName string, log *slog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "nats", "client", clientName)
	nc, err := nats.Connect(url,
		nats.Name(clientName),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.ReconnectBufSize(-1),
		// Notice a dead peer within ~30 s instead of the 4 minutes of the
		// defaults, which matters for half-open connections after a node loss.
		nats.PingInterval(10*time.Second),
		nats.MaxPingsOutstanding(3),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "error", Redact(err.Error()))
				return
			}
			log.Info("nats disconnected")
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ConnectHandler(func(c *nats.Conn) {
			log.Info("nats connected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(*nats.Conn) { log.Info("nats connection closed") }),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			log.Warn("nats async error", "subject", subj, "error", Redact(err.Error()))
		}),
	)
	if err != nil {
		return nil, nil, fmt.Errorf("connect nats %s: %w", config.MaskURL(url), err)
	}
	if err := waitConnected(ctx, nc); err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("connect nats %s: %w", config.MaskURL(url), err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, fmt.Errorf("jetstream: %w", err)
	}
	return nc, js, nil
}

func waitConnected(ctx context.Context, nc *nats.Conn) error {
	ch := nc.StatusChanged(nats.CONNECTED, nats.CLOSED)
	defer nc.RemoveStatusListener(ch)
	for !nc.IsConnected() {
		if nc.IsClosed() {
			return errors.Join(ErrUnavailable, nats.ErrConnectionClosed)
		}
		select {
		case <-ctx.Done():
			return errors.Join(ErrUnavailable, ctx.Err())
		case st := <-ch:
			if st == nats.CLOSED {
				return errors.Join(ErrUnavailable, nats.ErrConnectionClosed)
			}
		}
	}
	return nil
}
