package natstest

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a JetStream cluster of embedded servers owned by one test,
// clustered over loopback, without authentication (like StartOpen): for
// tests of how clients live through leader elections and node losses.
// Each node keeps its ports and its store across Shutdown and Restart, so a
// restarted node rejoins as itself.
type Cluster struct {
	t     testing.TB
	name  string
	mu    sync.Mutex
	nodes []*clusterNode
}

type clusterNode struct {
	name       string
	storeDir   string
	clientPort int
	routePort  int
	srv        *server.Server
}

// StartCluster starts n clustered servers with JetStream and waits until
// JetStream has a meta leader; they are shut down when the test ends.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: a cluster of %d servers", n)
	}
	dir := t.TempDir()
	c := &Cluster{t: t, name: "natstest"}
	ports := freePorts(t, 2*n)
	for i := range n {
		c.nodes = append(c.nodes, &clusterNode{
			name:       fmt.Sprintf("n%d", i+1),
			storeDir:   filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			clientPort: ports[2*i],
			routePort:  ports[2*i+1],
		})
	}
	t.Cleanup(c.shutdownAll)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range c.nodes {
		wg.Go(func() { errs[i] = c.start(i) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("natstest cluster: %v", err)
		}
	}
	c.WaitMetaLeader(30 * time.Second)
	return c
}

// freePorts reserves n distinct loopback ports and releases them for the
// servers to bind; routes must know every port before any server starts.
func freePorts(t testing.TB, n int) []int {
	t.Helper()
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			_ = ln.Close()
		}
	}()
	ports := make([]int, n)
	for i := range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("natstest: %v", err)
		}
		lns = append(lns, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports
}

func (c *Cluster) start(i int) error {
	c.mu.Lock()
	node := c.nodes[i]
	var routes []*url.URL
	for j, other := range c.nodes {
		if j != i {
			routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", other.routePort)})
		}
	}
	c.mu.Unlock()
	opts := &server.Options{
		ServerName: node.name,
		Host:       "127.0.0.1",
		Port:       node.clientPort,
		JetStream:  true,
		StoreDir:   node.storeDir,
		NoSigs:     true,
		NoLog:      true,
		Cluster: server.ClusterOpts{
			Name: c.name,
			Host: "127.0.0.1",
			Port: node.routePort,
		},
		Routes: routes,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("%s: %w", node.name, err)
	}
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("%s: not ready for connections", node.name)
	}
	c.mu.Lock()
	node.srv = srv
	c.mu.Unlock()
	return nil
}

// Len is the number of nodes.
func (c *Cluster) Len() int { return len(c.nodes) }

// URL is node i's client URL; it stays the same across restarts.
func (c *Cluster) URL(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.nodes[i].clientPort)
}

// URLs lists every node's client URL, comma-separated, as NATS_URL takes
// them; first is put first so that a client starts on that node.
func (c *Cluster) URLs(first int) string {
	urls := []string{c.URL(first)}
	for i := range c.nodes {
		if i != first {
			urls = append(urls, c.URL(i))
		}
	}
	return strings.Join(urls, ",")
}

// Server is node i's running server, or nil while it is shut down.
func (c *Cluster) Server(i int) *server.Server {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i].srv
}

// Shutdown stops node i, as a node loss: its clients reconnect elsewhere
// and the others elect new leaders for what it led.
func (c *Cluster) Shutdown(i int) {
	c.mu.Lock()
	srv := c.nodes[i].srv
	c.nodes[i].srv = nil
	c.mu.Unlock()
	if srv != nil {
		srv.Shutdown()
		srv.WaitForShutdown()
	}
}

// Restart starts node i again with its ports and store.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	c.Shutdown(i)
	if err := c.start(i); err != nil {
		c.t.Fatalf("natstest cluster restart: %v", err)
	}
}

func (c *Cluster) shutdownAll() {
	for i := range c.nodes {
		c.Shutdown(i)
	}
}

// WaitMetaLeader waits until some node knows a JetStream meta leader.
func (c *Cluster) WaitMetaLeader(within time.Duration) {
	c.t.Helper()
	c.waitFor(within, "a JetStream meta leader", func(s *server.Server) bool {
		return s.JetStreamIsLeader()
	})
}

// StreamLeader returns the node leading stream (in the default account),
// waiting up to within for one to be elected.
func (c *Cluster) StreamLeader(stream string, within time.Duration) int {
	c.t.Helper()
	return c.waitFor(within, "a leader of stream "+stream, func(s *server.Server) bool {
		return s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream)
	})
}

// ConsumerLeader returns the node leading durable on stream, waiting up to
// within for one to be elected.
func (c *Cluster) ConsumerLeader(stream, durable string, within time.Duration) int {
	c.t.Helper()
	return c.waitFor(within, "a leader of consumer "+durable, func(s *server.Server) bool {
		return s.JetStreamIsConsumerLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream, durable)
	})
}

// waitFor returns the first running node for which is holds, polling until
// within has passed.
func (c *Cluster) waitFor(within time.Duration, what string, is func(*server.Server) bool) int {
	c.t.Helper()
	deadline := time.Now().Add(within)
	for {
		for i := range c.nodes {
			if s := c.Server(i); s != nil && is(s) {
				return i
			}
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("natstest cluster: no %s after %s", what, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
