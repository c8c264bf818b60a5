package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/launchready/launchready/pkg/bus"
	"github.com/launchready/launchready/pkg/config"
	"github.com/launchready/launchready/pkg/natsauth"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	billingv1 "github.com/launchready/launchready/proto/launchready/billing/v1"
	"github.com/launchready/launchready/test/testkit"
	"github.com/launchready/launchready/test/testkit/fakes"
)

// Random returns n random bytes as hex (crypto/rand): secrets, tokens and
// run tags are made fresh for every stack.
func Random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// NATS is a nats-server process (v2.15, built from the module) with
// JetStream on file storage, configured as compose and Kubernetes run it:
// the authorization block generated from pkg/natsauth (ConfigFile), every
// user's password from its environment variable, no anonymous access.
type NATS struct {
	Proc        *Proc
	Port        int
	MonitorPort int
	StoreDir    string
	// ConfigFile is the server's configuration: natsauth.ServerConfig().
	ConfigFile string
	// Passwords are the users' passwords, fresh for each server (for each
	// cluster, shared by its nodes).
	Passwords map[string]string
	// ServerName and ClusterPort are set for a node of a cluster.
	ServerName  string
	ClusterPort int
}

// StartNATS runs nats-server from bin on 127.0.0.1 with its store in
// storeDir and waits until JetStream is ready.
func StartNATS(t T, bin, storeDir string) *NATS {
	t.Helper()
	n := newNATS(t, storeDir, newPasswords())
	n.start(t, bin, "nats-server", "lr-e2e-"+strconv.Itoa(n.Port))
	n.WaitReady(t)
	return n
}

// StartNATSCluster runs size nats-server processes clustered over loopback
// (the cluster "lr-e2e", full mesh of routes), each with its own store
// under dir and the same users and passwords, and waits until every one
// reports JetStream ready. Node i is named ServerName(i) in JetStream's
// cluster info.
func StartNATSCluster(t T, bin, dir string, size int) []*NATS {
	t.Helper()
	pw := newPasswords()
	nodes := make([]*NATS, size)
	for i := range nodes {
		nodes[i] = newNATS(t, filepath.Join(dir, fmt.Sprintf("n%d", i+1)), pw)
		nodes[i].ClusterPort = FreePort(t)
	}
	for i, n := range nodes {
		var routes []string
		for j, o := range nodes {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", o.ClusterPort))
			}
		}
		n.ServerName = fmt.Sprintf("lr-c%d", i+1)
		n.start(t, bin, "nats-"+n.ServerName, n.ServerName,
			"--cluster_name", "lr-e2e", "--cluster", fmt.Sprintf("nats://127.0.0.1:%d", n.ClusterPort),
			"--routes", strings.Join(routes, ","))
	}
	// A node reports healthy only once the cluster has a JetStream meta
	// leader, which needs a quorum: wait for all after starting all.
	for _, n := range nodes {
		n.WaitReady(t)
	}
	return nodes
}

func newPasswords() map[string]string {
	pw := map[string]string{}
	for _, user := range natsauth.Names() {
		// A letter first: the configuration parser reads an all-digit
		// value as a number.
		pw[user] = "p" + Random(16)
	}
	return pw
}

func newNATS(t T, storeDir string, passwords map[string]string) *NATS {
	t.Helper()
	n := &NATS{Port: FreePort(t), MonitorPort: FreePort(t), StoreDir: storeDir, Passwords: passwords}
	n.ConfigFile = filepath.Join(t.TempDir(), "nats-auth.conf")
	if err := os.WriteFile(n.ConfigFile, []byte(natsauth.ServerConfig()), 0o600); err != nil {
		t.Fatalf("nats config: %v", err)
	}
	return n
}

func (n *NATS) start(t T, bin, procName, serverName string, extra ...string) {
	t.Helper()
	var env []string
	for _, user := range natsauth.Names() {
		env = append(env, natsauth.PasswordVar(user)+"="+n.Passwords[user])
	}
	args := append([]string{"-c", n.ConfigFile,
		"-a", "127.0.0.1", "-p", strconv.Itoa(n.Port), "-m", strconv.Itoa(n.MonitorPort),
		"-js", "-sd", n.StoreDir, "-n", serverName}, extra...)
	n.Proc = Start(t, procName, filepath.Join(bin, "nats-server"), env, args...)
}

// URL is the client URL; it stays the same across restarts.
func (n *NATS) URL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.Port) }

// Conn is how user connects: its name and password.
func (n *NATS) Conn(user string) bus.ConnConfig {
	return bus.ConnConfig{URL: n.URL(), User: user, Password: config.Secret(n.Passwords[user])}
}

// Env is Conn as a process's environment, as a deployment gives it to a
// service: NATS_URL, NATS_USER and NATS_PASSWORD.
func (n *NATS) Env(user string) map[string]string {
	return map[string]string{"NATS_URL": n.URL(), "NATS_USER": user, "NATS_PASSWORD": n.Passwords[user]}
}

// Provision makes the streams as the admin user, as the provisioning Job
// does before the services start.
func (n *NATS) Provision(t T, cfg bus.StreamConfig) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := bus.Provision(ctx, n.Conn(natsauth.Admin), cfg, nil); err != nil {
		t.Fatalf("provision: %v", err)
	}
}

// WaitReady waits for /healthz (JetStream included).
func (n *NATS) WaitReady(t T) {
	t.Helper()
	if err := n.waitReady(); err != nil {
		t.Fatalf("%v", err)
	}
}

func (n *NATS) waitReady() error {
	return PollHTTP(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.MonitorPort), 60*time.Second, n.Proc)
}

// Pause stops the server with SIGSTOP, as a node that hangs (a long GC
// pause, a stalled disk, a VM frozen by its host): its sockets stay open
// and say nothing. Resume it with Continue.
func (n *NATS) Pause() error { return syscall.Kill(n.Proc.Pid(), syscall.SIGSTOP) }

// Continue resumes a paused server (SIGCONT).
func (n *NATS) Continue() error { return syscall.Kill(n.Proc.Pid(), syscall.SIGCONT) }

// KillAndRestart kills the server (SIGKILL), starts it again on the same
// ports and store after down, and waits until JetStream is ready.
func (n *NATS) KillAndRestart(down time.Duration) error {
	n.Proc.Kill()
	time.Sleep(down) // the length of the outage, not a wait for a condition
	if err := n.Proc.Resume(); err != nil {
		return err
	}
	return n.waitReady()
}

// Restart stops the server gracefully (SIGTERM), starts it again on the
// same port with the same store, and waits until JetStream is ready. It is
// safe to call from any goroutine.
func (n *NATS) Restart() error {
	n.Proc.Stop()
	if err := n.Proc.Resume(); err != nil {
		return err
	}
	return n.waitReady()
}

// StackOptions shapes a Stack.
type StackOptions struct {
	// Services to start, in order (default: all four).
	Services []string
	// Env is added to every service's environment (CONSUMER_*, ...).
	Env map[string]string
	// ServiceEnv is added to one service's environment.
	ServiceEnv map[string]map[string]string
	// Supervise restarts services that exit on their own, as a container
	// runtime would.
	Supervise bool
	// LogLevel of the services (default "info").
	LogLevel string
	// Nice lowers a service's CPU priority (nice(1) increments, 1-19),
	// as a shared box runs background work.
	Nice map[string]int
	// NATSNodes > 1 runs a cluster of that many nats-servers with the
	// streams replicated on every node (NATS_STREAM_REPLICAS); each
	// service process gets every node's URL, starting with a different
	// node for each replica.
	NATSNodes int
	// Replicas runs that many processes of each service (default 1). The
	// first replica of a service is Procs[name], the others
	// Procs[name+"-2"], ...; all are in ReplicasOf[name].
	Replicas int
}

// Stack is the whole system as separate processes: nats-server, the
// services, a fresh Postgres database, and fake HubSpot, Zendesk and
// Slack.
type Stack struct {
	T   T
	Bin string

	DatabaseURL  string
	DatabaseName string
	// NATS is the server, or the first node of the cluster (Nodes).
	NATS  *NATS
	Nodes []*NATS
	Procs map[string]*Proc
	// ReplicasOf names each service's processes (keys of Procs and Ops),
	// first replica first.
	ReplicasOf map[string][]string
	// WebhookURLs are every ingress replica's webhook URLs; WebhookURL
	// is the first, and Drivers[i] posts to WebhookURLs[i].
	WebhookURLs []string
	Drivers     []*Driver
	// Ops is each service's /healthz /readyz /metrics base URL.
	Ops        map[string]string
	WebhookURL string
	GRPCAddr   string
	// Secret is the webhook signing secret (whsec_...), Token the gRPC
	// bearer token (role read); both fresh per stack.
	Secret string
	Token  string

	HubSpot *fakes.HubSpot
	Zendesk *fakes.Zendesk
	Slack   *fakes.Slack
	// HubSpotToken is the private app token the fake HubSpot accepts.
	HubSpotToken string

	DB *pgxpool.Pool
	// NC and JS are the admin's: stream and consumer state, dead letters.
	NC *nats.Conn
	JS jetstream.JetStream
	// Backfill publishes events straight to the stream, as the backfill
	// user (what `launchready backfill` does beside webhooks).
	Backfill jetstream.JetStream
	Driver   *Driver

	grpcConn *grpc.ClientConn
	Status   billingv1.BillingStatusServiceClient
	opts     StackOptions
}

// StartStack builds the binaries (once) and starts everything, then waits
// until every service reports ready.
func StartStack(t T, o StackOptions) *Stack {
	t.Helper()
	start := time.Now()
	if len(o.Services) == 0 {
		o.Services = Services
	}
	if o.LogLevel == "" {
		o.LogLevel = "info"
	}
	if o.Replicas < 1 {
		o.Replicas = 1
	}
	s := &Stack{T: t, Bin: Binaries(t), Procs: map[string]*Proc{}, Ops: map[string]string{}, ReplicasOf: map[string][]string{}, opts: o,
		Secret: "whsec_" + Random(24), Token: "tok_" + Random(24)}
	s.DatabaseURL = NewDatabase(t)
	u, err := url.Parse(s.DatabaseURL)
	if err != nil {
		t.Fatalf("database url: %v", err)
	}
	s.DatabaseName = strings.TrimPrefix(u.Path, "/")

	// Third parties.
	hubToken := "pat-" + Random(16)
	s.HubSpotToken = hubToken
	s.HubSpot = fakes.NewHubSpot(hubToken)
	t.Cleanup(s.HubSpot.Close)
	zdEmail, zdToken := "ops@example.com", Random(16)
	s.Zendesk = fakes.NewZendesk(zdEmail, zdToken)
	t.Cleanup(s.Zendesk.Close)
	s.Slack = fakes.NewSlack("/services/T" + Random(4) + "/B" + Random(4) + "/" + Random(12))
	t.Cleanup(s.Slack.Close)

	// Broker, and the streams made by the provisioning step.
	replicas := 1
	if o.NATSNodes > 1 {
		s.Nodes = StartNATSCluster(t, s.Bin, filepath.Join(t.TempDir(), "jetstream"), o.NATSNodes)
		replicas = min(o.NATSNodes, 5)
	} else {
		s.Nodes = []*NATS{StartNATS(t, s.Bin, filepath.Join(t.TempDir(), "jetstream"))}
	}
	s.NATS = s.Nodes[0]
	s.NATS.Provision(t, bus.StreamConfig{Replicas: replicas})

	// Services, each as its own NATS user.
	common := map[string]string{
		"DATABASE_URL":                s.DatabaseURL,
		"LOG_LEVEL":                   o.LogLevel,
		"NATS_STREAM_REPLICAS":        strconv.Itoa(replicas),
		"OTEL_EXPORTER_OTLP_ENDPOINT": "",
	}
	for r := range o.Replicas {
		s.startReplicas(o, common, r, hubToken, zdEmail, zdToken)
	}
	for _, name := range o.Services {
		for _, proc := range s.ReplicasOf[name] {
			WaitHTTP(t, s.Ops[proc]+"/readyz", 90*time.Second, s.Procs[proc])
		}
	}
	s.WebhookURL = s.WebhookURLs[0]
	for _, u := range s.WebhookURLs {
		s.Drivers = append(s.Drivers, NewDriver(u, s.Secret))
	}
	s.finishStart(t, o, start)
	return s
}

// startReplicas starts replica r (from 0) of every service.
func (s *Stack) startReplicas(o StackOptions, common map[string]string, r int, hubToken, zdEmail, zdToken string) {
	t := s.T
	t.Helper()
	per := map[string]map[string]string{
		"ingress": {
			"INGRESS_ADDR":          fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
			"HTTP_ADDR":             fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
			"STRIPE_WEBHOOK_SECRET": s.Secret,
		},
		"billing-state": {
			"GRPC_ADDR":         fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
			"HTTP_ADDR":         fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
			"STATUS_API_TOKENS": "e2e=" + s.Token + ":read",
		},
		"crm-sync": {
			"HTTP_ADDR":        fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
			"CRM_PROVIDER":     "hubspot",
			"HUBSPOT_TOKEN":    hubToken,
			"HUBSPOT_BASE_URL": s.HubSpot.URL(),
			// The fake has no portal limit unless a test sets one; the
			// client's own limiter must not be what a test measures.
			"CRM_RATE_LIMIT":  "100000",
			"CRM_RATE_WINDOW": "1s",
		},
		"support-notify": {
			"HTTP_ADDR":         fmt.Sprintf("127.0.0.1:%d", FreePort(t)),
			"SUPPORT_PROVIDER":  "zendesk",
			"ZENDESK_BASE_URL":  s.Zendesk.URL(),
			"ZENDESK_EMAIL":     zdEmail,
			"ZENDESK_API_TOKEN": zdToken,
			"ALERT_PROVIDER":    "slack",
			"SLACK_WEBHOOK_URL": s.Slack.URL(),
		},
	}
	s.WebhookURLs = append(s.WebhookURLs, "http://"+per["ingress"]["INGRESS_ADDR"]+"/webhooks/stripe")
	if r == 0 {
		s.GRPCAddr = per["billing-state"]["GRPC_ADDR"]
	}
	for _, name := range o.Services {
		proc := name
		if r > 0 {
			proc = name + "-" + strconv.Itoa(r+1)
		}
		env := map[string]string{}
		for k, v := range common {
			env[k] = v
		}
		for k, v := range per[name] {
			env[k] = v
		}
		for k, v := range s.NATS.Env(name) {
			env[k] = v
		}
		if len(s.Nodes) > 1 {
			env["NATS_URL"] = s.clusterURL(r)
		}
		for k, v := range o.Env {
			env[k] = v
		}
		for k, v := range o.ServiceEnv[name] {
			env[k] = v
		}
		if name == "ingress" {
			delete(env, "DATABASE_URL") // ingress holds no database
		}
		s.Ops[proc] = "http://" + env["HTTP_ADDR"]
		var p *Proc
		if n := o.Nice[name]; n > 0 {
			// nice(1) execs the service: the pid is the service's, and
			// every thread the Go runtime starts inherits the priority.
			p = Start(t, proc, "nice", envList(env), "-n", strconv.Itoa(n), filepath.Join(s.Bin, name))
		} else {
			p = Start(t, proc, filepath.Join(s.Bin, name), envList(env))
		}
		if o.Supervise {
			p.Supervise()
		}
		s.Procs[proc] = p
		s.ReplicasOf[name] = append(s.ReplicasOf[name], proc)
	}
}

// Conn is how user connects to the stack's NATS: every node's URL, its
// name and password.
func (s *Stack) Conn(user string) bus.ConnConfig {
	c := s.NATS.Conn(user)
	c.URL = s.clusterURL(0)
	return c
}

// clusterURL lists every node's URL, starting with node r mod size, so
// that replicas spread over the nodes.
func (s *Stack) clusterURL(r int) string {
	urls := make([]string, len(s.Nodes))
	for i := range s.Nodes {
		urls[i] = s.Nodes[(r+i)%len(s.Nodes)].URL()
	}
	return strings.Join(urls, ",")
}

// NodeNamed returns the cluster node whose server name is name, or nil.
func (s *Stack) NodeNamed(name string) *NATS {
	for _, n := range s.Nodes {
		if n.ServerName == name {
			return n
		}
	}
	return nil
}

// StreamLeader returns the node leading stream, as JetStream reports it.
func (s *Stack) StreamLeader(stream string) (*NATS, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := s.JS.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	if info.Cluster == nil || s.NodeNamed(info.Cluster.Leader) == nil {
		return nil, fmt.Errorf("stream %s: no leader among the nodes (%+v)", stream, info.Cluster)
	}
	return s.NodeNamed(info.Cluster.Leader), nil
}

// finishStart connects the test-side clients.
func (s *Stack) finishStart(t T, o StackOptions, start time.Time) {
	t.Helper()
	// Test-side clients.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pc, err := pgxpool.ParseConfig(s.DatabaseURL)
	if err != nil {
		t.Fatalf("test pool: %v", err)
	}
	pc.MaxConns = 4 // the services need the server's connections more
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		t.Fatalf("test pool: %v", err)
	}
	t.Cleanup(pool.Close)
	s.DB = pool
	nc, js, err := bus.Connect(ctx, s.Conn(natsauth.Admin), "e2e-observer", nil)
	if err != nil {
		t.Fatalf("test nats: %v", err)
	}
	t.Cleanup(nc.Close)
	s.NC, s.JS = nc, js
	bnc, bjs, err := bus.Connect(ctx, s.Conn(natsauth.Backfill), "e2e-backfill", nil)
	if err != nil {
		t.Fatalf("test nats: %v", err)
	}
	t.Cleanup(bnc.Close)
	s.Backfill = bjs
	s.Driver = s.Drivers[0]
	if contains(o.Services, "billing-state") {
		conn, err := grpc.NewClient(s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(bearer(s.Token)))
		if err != nil {
			t.Fatalf("grpc client: %v", err)
		}
		t.Cleanup(func() { _ = conn.Close() })
		s.grpcConn = conn
		s.Status = billingv1.NewBillingStatusServiceClient(conn)
	}
	t.Logf("harness: stack up in %s (db %s, nats %s, ingress %s, grpc %s)",
		time.Since(start).Round(time.Millisecond), s.DatabaseName, s.clusterURL(0), strings.Join(s.WebhookURLs, ","), s.GRPCAddr)
}

func envList(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+m[k])
	}
	return out
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// bearer sends the token on every call; plaintext is fine on loopback.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return false }

// WaitReady waits until name answers /readyz again (after a restart).
func (s *Stack) WaitReady(name string, timeout time.Duration) {
	s.T.Helper()
	WaitHTTP(s.T, s.Ops[name]+"/readyz", timeout)
}

// ReadyErr polls name's /readyz; safe from any goroutine.
func (s *Stack) ReadyErr(name string, timeout time.Duration) error {
	return PollHTTP(s.Ops[name]+"/readyz", timeout)
}

// NewDatabase returns the URL of a fresh, empty database on the test
// Postgres server, dropped at cleanup. Tests get it from pgtest; the load
// benchmark, which is not a test, from the same recipe here.
func NewDatabase(t T) string {
	t.Helper()
	if tb, ok := t.(testing.TB); ok {
		return pgtest.NewDatabase(tb)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	base := pgtest.BaseURL()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("postgres unreachable at %s: %v", base, err)
	}
	defer conn.Close(ctx)
	name := "lrbench_" + Random(6)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if c, err := pgx.Connect(ctx, base); err == nil {
			_, _ = c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			_ = c.Close(ctx)
		}
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatalf("parse base URL: %v", err)
	}
	u.Path = "/" + name
	return u.String()
}

// CutDatabase makes the stack's database refuse connections and ends every
// session on it, without touching the shared server or other databases.
func (s *Stack) CutDatabase() error {
	return adminExec(fmt.Sprintf("ALTER DATABASE %s WITH ALLOW_CONNECTIONS false", pgx.Identifier{s.DatabaseName}.Sanitize()),
		"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '"+s.DatabaseName+"' AND pid <> pg_backend_pid()")
}

// RestoreDatabase lets connections in again.
func (s *Stack) RestoreDatabase() error {
	return adminExec(fmt.Sprintf("ALTER DATABASE %s WITH ALLOW_CONNECTIONS true", pgx.Identifier{s.DatabaseName}.Sanitize()))
}

func adminExec(stmts ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, pgtest.BaseURL())
	if err != nil {
		return fmt.Errorf("admin connect: %w", err)
	}
	defer conn.Close(ctx)
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	return nil
}

// Count runs a count(*) style query against the stack's database.
func (s *Stack) Count(query string, args ...any) int {
	s.T.Helper()
	n, err := s.CountErr(query, args...)
	if err != nil {
		s.T.Fatalf("%s: %v", query, err)
	}
	return n
}

// CountErr is Count returning the error.
func (s *Stack) CountErr(query string, args ...any) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var n int
	err := s.DB.QueryRow(ctx, query, args...).Scan(&n)
	return n, err
}

// Strings runs a query returning one text column.
func (s *Stack) Strings(query string, args ...any) []string {
	s.T.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows, err := s.DB.Query(ctx, query, args...)
	if err != nil {
		s.T.Fatalf("%s: %v", query, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		s.T.Fatalf("%s: %v", query, err)
	}
	return out
}

// TableExists reports whether schema.table exists yet (services migrate
// their schema at start).
func (s *Stack) TableExists(qualified string) bool {
	n, err := s.CountErr(`SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname || '.' || tablename = $1`, qualified)
	return err == nil && n == 1
}

// StreamMsgs is the number of messages in stream.
func (s *Stack) StreamMsgs(stream string) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := s.JS.Stream(ctx, stream)
	if err != nil {
		return 0, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// ConsumerBacklog is what the durable still has to finish: messages not
// yet delivered plus those delivered and not acked.
func (s *Stack) ConsumerBacklog(durable string) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := s.JS.Consumer(ctx, bus.StreamEvents, durable)
	if err != nil {
		return 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending) + uint64(info.NumRedelivered), nil // #nosec G115 -- JetStream counts are never negative
}

// Durables are the consumers the four services run.
var Durables = []string{"billing-state", "crm-sync", "support-notify", "support-notify-alerts"}

// WaitDrained waits until every durable has acked everything in the
// stream, i.e. the system is quiet.
func (s *Stack) WaitDrained(timeout time.Duration, durables ...string) {
	s.T.Helper()
	if len(durables) == 0 {
		durables = Durables
	}
	var last string
	ok := testkit.Poll(timeout, 100*time.Millisecond, func() bool {
		for _, d := range durables {
			n, err := s.ConsumerBacklog(d)
			if err != nil || n > 0 {
				last = fmt.Sprintf("%s backlog %d (%v)", d, n, err)
				return false
			}
		}
		return true
	})
	if !ok {
		s.T.Fatalf("consumers not drained within %s: %s", timeout, last)
	}
}

// MetricSum adds up every sample of the metric name that proc's /metrics
// shows (all label sets).
func (s *Stack) MetricSum(proc, name string) (float64, error) {
	body, err := s.metrics(proc)
	if err != nil {
		return 0, err
	}
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			return 0, fmt.Errorf("%s: %q: %w", name, line, err)
		}
		sum += v
	}
	return sum, nil
}

// MetricValue reads one series, written as /metrics shows it
// (`name{label="value"}`), from proc's /metrics; a series not shown is an
// error.
func (s *Stack) MetricValue(proc, series string) (float64, error) {
	body, err := s.metrics(proc)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, series+" ") {
			return strconv.ParseFloat(strings.TrimSpace(strings.TrimPrefix(line, series)), 64)
		}
	}
	return 0, fmt.Errorf("%s: no series %s", proc, series)
}

// metrics fetches proc's /metrics.
func (s *Stack) metrics(proc string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(s.Ops[proc] + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}
