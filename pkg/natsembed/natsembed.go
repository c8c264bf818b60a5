// Package natsembed runs a NATS server with JetStream inside the current
// process, for `launchready dev` and for tests. Production runs a real
// nats-server cluster; this package exists so one binary can bring the whole
// system up without any other process.
package natsembed

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// readyTimeout bounds how long Start waits for the listener and JetStream
// (which may have to recover a large store) before giving up.
const readyTimeout = 30 * time.Second

// Options configures the embedded server.
type Options struct {
	// Host to listen on; empty means 127.0.0.1, so a dev machine does not
	// expose its broker to its network by accident.
	Host string
	// Port to listen on: 0 means the NATS default 4222, -1 a random free port.
	Port int
	// StoreDir holds JetStream's files. Empty means the server's default
	// under os.TempDir(), shared by every embedded server on the machine:
	// set it.
	StoreDir string
	// ServerName names the server in logs and JetStream metadata.
	ServerName string
	// Logger receives the server's notices, warnings and errors. Nil keeps
	// the server silent.
	Logger *slog.Logger
	// Users and NKeys, when either is set, are the only clients the server
	// lets in, each with its own permissions (pkg/natsauth builds them).
	// With neither, any client may connect and do anything: only for a
	// benchmark or a library test that needs no users.
	Users []*server.User
	NKeys []*server.NkeyUser
}

// Start starts the server and waits until it accepts connections with
// JetStream ready. The caller owns the server and must Shutdown it.
func Start(o Options) (*server.Server, error) {
	host := o.Host
	if host == "" {
		host = "127.0.0.1"
	}
	name := o.ServerName
	if name == "" {
		name = "launchready-embedded"
	}
	opts := &server.Options{
		ServerName: name,
		Host:       host,
		Port:       o.Port,
		JetStream:  true,
		StoreDir:   o.StoreDir,
		// The host process owns signals; the server must not react to them.
		NoSigs: true,
		NoLog:  o.Logger == nil,
		Users:  o.Users,
		Nkeys:  o.NKeys,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats server: %w", err)
	}
	if o.Logger != nil {
		srv.SetLoggerV2(slogLogger{o.Logger}, false, false, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("nats server: not ready for connections after " + readyTimeout.String())
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("nats server: JetStream did not start")
	}
	return srv, nil
}

// slogLogger routes the server's log lines to slog. Debug and trace lines
// are dropped: they are per-message and would drown everything else.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Noticef(format string, v ...any) {
	s.l.Info(fmt.Sprintf(format, v...), "component", "nats-server")
}

func (s slogLogger) Warnf(format string, v ...any) {
	s.l.Warn(fmt.Sprintf(format, v...), "component", "nats-server")
}

func (s slogLogger) Fatalf(format string, v ...any) {
	s.l.Error(fmt.Sprintf(format, v...), "component", "nats-server", "fatal", true)
}

func (s slogLogger) Errorf(format string, v ...any) {
	s.l.Error(fmt.Sprintf(format, v...), "component", "nats-server")
}

func (slogLogger) Debugf(string, ...any) {}
func (slogLogger) Tracef(string, ...any) {}
