package pgtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Server is a Postgres server of the test's own, for what a shared server
// must not suffer: crashes, settings of its own. It runs the installed
// server binaries (PG_BIN, else the newest /usr/lib/postgresql/*/bin) and,
// when the test runs as root, as the postgres user, since Postgres refuses
// to run as root. It is stopped and removed when the test ends.
type Server struct {
	t    testing.TB
	bin  string
	data string
	log  string
	port int
	// as runs a server binary as the user who owns the data directory.
	as []string
}

// StartServer initialises a cluster with settings added to its
// postgresql.conf and starts it on a free loopback port.
func StartServer(t testing.TB, settings map[string]string) *Server {
	t.Helper()
	bin, err := serverBin()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	dir, err := os.MkdirTemp("", "pgtest-server-")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{t: t, bin: bin, data: filepath.Join(dir, "data"), log: filepath.Join(dir, "server.log")}
	t.Cleanup(func() {
		_, _ = s.pgctl("-m", "immediate", "stop") // may be stopped already
		_ = os.RemoveAll(dir)
	})
	if err := os.Mkdir(s.data, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("pgtest: running as root needs a postgres user to run the server: %v", err)
		}
		if err := os.Chmod(dir, 0o755); err != nil { // #nosec G302 -- the postgres user the server runs as must reach its data directory
			t.Fatal(err)
		}
		for _, p := range []string{dir, s.data} {
			if out, err := exec.Command("chown", u.Uid+":"+u.Gid, p).CombinedOutput(); err != nil { // #nosec G204 -- chown of the test's own temporary directories
				t.Fatalf("pgtest: chown %s: %v: %s", p, err, out)
			}
		}
		s.as = []string{"runuser", "-u", "postgres", "--"}
	}
	if out, err := s.run("initdb", "-D", s.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"); err != nil {
		t.Fatalf("pgtest: initdb: %v: %s", err, out)
	}
	s.port = freePort(t)
	conf := fmt.Sprintf("listen_addresses = '127.0.0.1'\nport = %d\nunix_socket_directories = ''\n", s.port)
	keys := make([]string, 0, len(settings))
	for k := range settings {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		conf += fmt.Sprintf("%s = '%s'\n", k, settings[k])
	}
	f, err := os.OpenFile(filepath.Join(s.data, "postgresql.conf"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.WriteString(conf)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	return s
}

// URL is the address of database db on the server.
func (s *Server) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", s.port, db)
}

// Start starts the server and waits until it accepts connections; after a
// Crash it first replays the WAL, as Postgres does after any crash.
func (s *Server) Start() {
	s.t.Helper()
	if out, err := s.pgctl("-w", "-t", "60", "-l", s.log, "start"); err != nil {
		logText, _ := os.ReadFile(s.log)
		s.t.Fatalf("pgtest: start server: %v: %s\n%s", err, out, logText)
	}
}

// Crash stops the server the way a power cut or a kill -9 would, as far
// as Postgres can tell: every process exits at once, nothing is flushed,
// and what was only in its WAL buffers is gone.
func (s *Server) Crash() {
	s.t.Helper()
	if out, err := s.pgctl("-m", "immediate", "stop"); err != nil {
		s.t.Fatalf("pgtest: crash server: %v: %s", err, out)
	}
}

func (s *Server) pgctl(args ...string) ([]byte, error) {
	return s.run("pg_ctl", append([]string{"-D", s.data}, args...)...)
}

func (s *Server) run(name string, args ...string) ([]byte, error) {
	argv := append(append([]string(nil), s.as...), filepath.Join(s.bin, name))
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...) // #nosec G204 -- runs initdb and pg_ctl from the located Postgres bin directory
	cmd.Dir = os.TempDir()
	return cmd.CombinedOutput()
}

// serverBin finds the directory of initdb and pg_ctl.
func serverBin() (string, error) {
	if b := os.Getenv("PG_BIN"); b != "" {
		return b, nil
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	var found []string
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			found = append(found, d)
		}
	}
	if len(found) == 0 {
		if p, err := exec.LookPath("initdb"); err == nil {
			return filepath.Dir(p), nil
		}
		return "", fmt.Errorf("no Postgres server binaries (initdb): install postgresql or set PG_BIN")
	}
	// The newest version: compare the numbers, not the strings.
	sort.Slice(found, func(i, j int) bool { return versionOf(found[i]) < versionOf(found[j]) })
	return found[len(found)-1], nil
}

func versionOf(bin string) int {
	v := filepath.Base(filepath.Dir(bin))
	n := 0
	for _, c := range strings.Split(v, ".")[0] {
		if c < '0' || c > '9' {
			return 0
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
