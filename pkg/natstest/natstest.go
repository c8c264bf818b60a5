// Package natstest runs a real NATS server with JetStream for a test: on
// 127.0.0.1, a random port, and a store in t.TempDir(). By default it runs
// as production does: every user of pkg/natsauth with an nkey of its own
// and the model's permissions, no anonymous access, and the streams made by
// the admin user, so a service under test meets the same refusals it would
// meet in production. Restart brings the server back on the same port with
// the same store and users, so a test can stage an outage and check that
// nothing acked was lost.
package natstest

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/natsembed"
)

// Observer is a user only test servers have: the test's own eyes on
// JetStream (every API call, reading stored messages included) and nothing
// else, so a test can inspect what a service did without the service's
// user being any wider than in production.
const Observer = "test-observer"

// Server is an embedded server owned by one test.
type Server struct {
	t        testing.TB
	storeDir string
	// keyDir holds each user's nkey seed; empty for an open server.
	keyDir string
	users  []*server.NkeyUser

	mu   sync.Mutex
	srv  *server.Server
	port int
}

// Start starts a server with authentication and the streams provisioned
// (default settings), and shuts it down when the test ends. Clients connect
// as a user of the model: Conn for bus.Connect, Env for a service's
// environment.
func Start(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	s := &Server{t: t, storeDir: filepath.Join(dir, "jetstream"), keyDir: filepath.Join(dir, "nkeys"), port: -1}
	logins, err := natsauth.NKeyFiles(s.keyDir)
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	if _, s.users, err = natsauth.ServerUsers(logins); err != nil {
		t.Fatalf("natstest: %v", err)
	}
	observer, err := natsauth.LoadOrCreateNKey(natsauth.NKeyFile(s.keyDir, Observer))
	if err != nil {
		t.Fatalf("natstest: %v", err)
	}
	s.users = append(s.users, &server.NkeyUser{Nkey: observer, Permissions: &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{"$JS.API.>"}},
		Subscribe: &server.SubjectPermission{Allow: []string{bus.InboxPrefix(Observer) + ".>"}},
	}})
	s.begin()
	s.Provision(bus.StreamConfig{})
	return s
}

// StartOpen starts a server without authentication and without streams:
// any client may do anything. It is for tests of the bus library itself,
// whose consumers have names no user of the model has.
func StartOpen(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, storeDir: t.TempDir(), port: -1}
	s.begin()
	return s
}

func (s *Server) begin() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("natstest: %v", err)
	}
	s.t.Cleanup(s.Shutdown)
}

func (s *Server) start() error {
	srv, err := natsembed.Start(natsembed.Options{
		Host:       "127.0.0.1",
		Port:       s.port,
		StoreDir:   s.storeDir,
		ServerName: "natstest",
		NKeys:      s.users,
	})
	if err != nil {
		return err
	}
	addr, ok := srv.Addr().(*net.TCPAddr)
	if !ok {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("unexpected listener address %v", srv.Addr())
	}
	// Later restarts reuse the port so that clients reconnect to the same URL.
	s.port = addr.Port
	s.srv = srv
	return nil
}

// URL is the client URL, e.g. nats://127.0.0.1:41234. It stays the same
// across restarts.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("nats://127.0.0.1:%d", s.port)
}

// Conn is how user connects: the URL, its name and, on a server with
// authentication, its nkey.
func (s *Server) Conn(user string) bus.ConnConfig {
	c := bus.ConnConfig{URL: s.URL(), User: user}
	if s.keyDir != "" {
		c.NKeyFile = s.NKeyFile(user)
	}
	return c
}

// Env is Conn as a service's environment: NATS_URL, NATS_USER and NATS_NKEY.
func (s *Server) Env(user string) map[string]string {
	c := s.Conn(user)
	env := map[string]string{"NATS_URL": c.URL, "NATS_USER": c.User}
	if c.NKeyFile != "" {
		env["NATS_NKEY"] = c.NKeyFile
	}
	return env
}

// NKeyFile is the file holding user's nkey seed ("" on an open server).
func (s *Server) NKeyFile(user string) string {
	if s.keyDir == "" {
		return ""
	}
	if _, ok := natsauth.Lookup(user); !ok && user != Observer {
		s.t.Fatalf("natstest: %q is not a user of pkg/natsauth", user)
	}
	return natsauth.NKeyFile(s.keyDir, user)
}

// Provision creates or updates the streams with cfg, as the admin user, as
// `launchready provision` does.
func (s *Server) Provision(cfg bus.StreamConfig) {
	s.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := bus.Provision(ctx, s.Conn(natsauth.Admin), cfg, nil); err != nil {
		s.t.Fatalf("natstest: %v", err)
	}
}

// StoreDir is where JetStream keeps its files.
func (s *Server) StoreDir() string { return s.storeDir }

// Server is the running server, or nil while it is shut down.
func (s *Server) Server() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// Shutdown stops the server and waits until it has stopped. Clients see a
// disconnect and start reconnecting. Calling it twice is harmless.
func (s *Server) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil {
		return
	}
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
	s.srv = nil
}

// Restart starts the server again on the same port with the same store and
// users, so streams and their messages survive. A running server is shut
// down first.
func (s *Server) Restart() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
	if err := s.start(); err != nil {
		s.t.Fatalf("natstest restart: %v", err)
	}
}
