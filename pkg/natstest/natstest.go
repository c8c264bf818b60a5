// Package natstest runs a real NATS server with JetStream for a test: on
// 127.0.0.1, a random port, and a store in t.TempDir(). Restart brings the
// server back on the same port with the same store, so a test can stage an
// outage and check that nothing acked was lost.
package natstest

import (
	"fmt"
	"net"
	"sync"
	"testing"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/launchready/launchready/pkg/natsembed"
)

// Server is an embedded server owned by one test.
type Server struct {
	t        testing.TB
	storeDir string

	mu   sync.Mutex
	srv  *server.Server
	port int
}

// Start starts a server and shuts it down when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, storeDir: t.TempDir(), port: -1}
	if err := s.start(); err != nil {
		t.Fatalf("natstest: %v", err)
	}
	t.Cleanup(s.Shutdown)
	return s
}

func (s *Server) start() error {
	srv, err := natsembed.Start(natsembed.Options{
		Host:       "127.0.0.1",
		Port:       s.port,
		StoreDir:   s.storeDir,
		ServerName: "natstest",
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

// Restart starts the server again on the same port with the same store, so
// streams and their messages survive. A running server is shut down first.
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
