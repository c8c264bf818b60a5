package pg_test

import (
	"context"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
)

func TestMigrateRunsEachFileOnceEvenConcurrently(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	migrations := fstest.MapFS{
		"0001_init.sql":  {Data: []byte(`CREATE TABLE things (id int PRIMARY KEY);`)},
		"0002_more.sql":  {Data: []byte(`INSERT INTO things VALUES (1);`)},
		"notes.txt":      {Data: []byte(`not a migration`)},
		"0003_again.sql": {Data: []byte(`INSERT INTO things VALUES (2);`)},
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- pg.Migrate(ctx, pool, "demo", migrations)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("migrate: %v", err)
		}
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM demo.things`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("rows = %d, want 2 (each migration once)", n)
	}
	var applied []string
	rows, _ := pool.Query(ctx, `SELECT name FROM demo.schema_migrations ORDER BY name`)
	applied, err = pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(applied, ",") != "0001_init.sql,0002_more.sql,0003_again.sql" {
		t.Fatalf("applied = %v", applied)
	}
}

func TestMigrateFailureLeavesNoHalfApplied(t *testing.T) {
	ctx := context.Background()
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	bad := fstest.MapFS{"0001_bad.sql": {Data: []byte(`CREATE TABLE a (id int); SELECT no_such_function();`)}}
	if err := pg.Migrate(ctx, pool, "demo", bad); err == nil {
		t.Fatal("broken migration succeeded")
	}
	var exists bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('demo.a') IS NOT NULL`).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatal("table from a failed migration was left behind")
	}
}

func TestMigrateDirAppliesTheFilesOfItsDirectoryOnly(t *testing.T) {
	ctx := context.Background()
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	files := fstest.MapFS{
		"migrations/0001_init.sql": {Data: []byte(`CREATE TABLE kept (id int);`)},
		"0001_elsewhere.sql":       {Data: []byte(`CREATE TABLE stray (id int);`)},
	}
	if err := pg.MigrateDir(ctx, pool, "demo", files, "migrations"); err != nil {
		t.Fatal(err)
	}
	var kept, stray bool
	if err := pool.QueryRow(ctx, `SELECT to_regclass('demo.kept') IS NOT NULL, to_regclass('demo.stray') IS NOT NULL`).Scan(&kept, &stray); err != nil {
		t.Fatal(err)
	}
	if !kept || stray {
		t.Fatalf("kept table %v, stray table %v; want only the migrations/ file applied", kept, stray)
	}
}

func TestEnsureDatabaseCreatesOnceAndOpenHidesPassword(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	// Point at a sibling name that does not exist yet.
	fresh := strings.Replace(url, "/lrtest_", "/lrtest_ensure_", 1)
	if err := pg.EnsureDatabase(ctx, fresh); err != nil {
		t.Fatal(err)
	}
	if err := pg.EnsureDatabase(ctx, fresh); err != nil {
		t.Fatalf("second EnsureDatabase: %v", err)
	}
	conn, err := pgx.Connect(ctx, fresh)
	if err != nil {
		t.Fatalf("connect to created database: %v", err)
	}
	conn.Close(ctx)
	admin, err := pgx.Connect(ctx, pgtest.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	name := fresh[strings.LastIndex(fresh, "/")+1:]
	if i := strings.Index(name, "?"); i >= 0 {
		name = name[:i]
	}
	if _, err := admin.Exec(ctx, "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
		t.Fatal(err)
	}

	_, err = pg.Open(ctx, "postgres://user:hunter2-secret@[bad")
	if err == nil || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("Open error = %v; want an error without the password", err)
	}
}

func TestIsUnavailable(t *testing.T) {
	if pg.IsUnavailable(nil) || pg.IsUnavailable(pgx.ErrNoRows) {
		t.Fatal("nil and ErrNoRows are not outages")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pool, err := pg.Open(ctx, "postgres://postgres@127.0.0.1:1/none?sslmode=disable&connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	err = pool.Ping(ctx)
	if !pg.IsUnavailable(err) {
		t.Fatalf("refused connection not classed as unavailable: %v", err)
	}
}

func TestIsUnavailableWhenDatabaseRefusesConnections(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	name := url[strings.LastIndex(url, "/")+1:]
	if i := strings.Index(name, "?"); i >= 0 {
		name = name[:i]
	}
	admin, err := pgx.Connect(ctx, pgtest.BaseURL())
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	if _, err := admin.Exec(ctx, "ALTER DATABASE "+name+" WITH ALLOW_CONNECTIONS false"); err != nil {
		t.Fatal(err)
	}
	defer admin.Exec(ctx, "ALTER DATABASE "+name+" WITH ALLOW_CONNECTIONS true") //nolint:errcheck
	_, err = pgx.Connect(ctx, url)
	if err == nil {
		t.Fatal("connected to a database that refuses connections")
	}
	if !pg.IsUnavailable(err) {
		t.Fatalf("refusing database not classed as unavailable: %v", err)
	}
}

// sessionSetting opens a pool on url (plus extra URL parameters) with opt
// and reads one expression of its session's settings.
func sessionSetting(t *testing.T, url, extra string, opt pg.Option, expr string) string {
	t.Helper()
	ctx := context.Background()
	if extra != "" {
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		url += sep + extra
	}
	pool, err := pg.Open(ctx, url, opt)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var got string
	if err := pool.QueryRow(ctx, `SELECT `+expr).Scan(&got); err != nil {
		t.Fatal(err)
	}
	return got
}

func TestWithApplicationNameNamesSessionsUnlessTheURLDoes(t *testing.T) {
	url := pgtest.NewDatabase(t)
	const expr = `current_setting('application_name')`
	if got := sessionSetting(t, url, "", pg.WithApplicationName("billing-state"), expr); got != "billing-state" {
		t.Fatalf("application_name = %q, want billing-state", got)
	}
	if got := sessionSetting(t, url, "application_name=ops", pg.WithApplicationName("billing-state"), expr); got != "ops" {
		t.Fatalf("application_name = %q, want the URL's own ops", got)
	}
}

func TestWithIndexPlansAppliesUnlessTheURLSetsThem(t *testing.T) {
	url := pgtest.NewDatabase(t)
	const expr = `current_setting('plan_cache_mode') || ' ' || current_setting('enable_seqscan') || ' ' || current_setting('jit')`
	if got := sessionSetting(t, url, "", pg.WithIndexPlans(), expr); got != "force_generic_plan off off" {
		t.Fatalf("plan_cache_mode, enable_seqscan, jit = %s; want force_generic_plan off off", got)
	}
	if got := sessionSetting(t, url, "plan_cache_mode=auto&enable_seqscan=on&jit=on", pg.WithIndexPlans(), expr); got != "auto on on" {
		t.Fatalf("plan_cache_mode, enable_seqscan, jit = %s; want the URL's auto on on", got)
	}
}

func TestWithAsyncCommitAppliesUnlessTheURLSetsIt(t *testing.T) {
	url := pgtest.NewDatabase(t)
	const expr = `current_setting('synchronous_commit')`
	if got := sessionSetting(t, url, "", pg.WithAsyncCommit(), expr); got != "off" {
		t.Fatalf("synchronous_commit = %s; want off", got)
	}
	if got := sessionSetting(t, url, "synchronous_commit=on", pg.WithAsyncCommit(), expr); got != "on" {
		t.Fatalf("synchronous_commit = %s; want the URL's on", got)
	}
}

func TestPoolMetricsCountWaitedAcquires(t *testing.T) {
	ctx := context.Background()
	pool, err := pg.Open(ctx, pgtest.NewDatabase(t), pg.WithMaxConns(1))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	reg := prometheus.NewRegistry()
	if err := pg.RegisterPoolMetrics(reg, pool, "billing-state"); err != nil {
		t.Fatal(err)
	}
	held, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		c, err := pool.Acquire(ctx) // waits: the only connection is held
		if err == nil {
			c.Release()
		}
		got <- err
	}()
	waitForQueuedAcquire(t)
	// The waiter is queued. Hold the connection for a known time (this is the
	// wait under test, not a guess that something happened) so the
	// acquire-seconds counter has a lower bound to check.
	const hold = 50 * time.Millisecond
	time.Sleep(hold)
	held.Release()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	err = testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP lr_db_pool_acquires_total Connections taken from the pool.
# TYPE lr_db_pool_acquires_total counter
lr_db_pool_acquires_total{pool="billing-state"} 2
# HELP lr_db_pool_acquires_waited_total Acquires that found no idle connection and waited for one to be released or opened.
# TYPE lr_db_pool_acquires_waited_total counter
lr_db_pool_acquires_waited_total{pool="billing-state"} 2
# HELP lr_db_pool_connections Pool connections by state: idle, in_use, opening.
# TYPE lr_db_pool_connections gauge
lr_db_pool_connections{pool="billing-state",state="idle"} 1
lr_db_pool_connections{pool="billing-state",state="in_use"} 0
lr_db_pool_connections{pool="billing-state",state="opening"} 0
# HELP lr_db_pool_max_connections The pool's size limit.
# TYPE lr_db_pool_max_connections gauge
lr_db_pool_max_connections{pool="billing-state"} 1
`), "lr_db_pool_acquires_total", "lr_db_pool_acquires_waited_total", "lr_db_pool_connections", "lr_db_pool_max_connections")
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "lr_db_pool_acquire_seconds_total" {
			if v := mf.GetMetric()[0].GetCounter().GetValue(); v < hold.Seconds() {
				t.Fatalf("acquire seconds %v, want at least the %v wait", v, hold)
			}
			return
		}
	}
	t.Fatal("no lr_db_pool_acquire_seconds_total")
}

// waitForQueuedAcquire polls until a goroutine is parked in the pool's
// acquire semaphore. The pool's statistics count an acquire only once it
// returns, so a waiter still in line shows only in the goroutine's state.
func waitForQueuedAcquire(t *testing.T) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(10 * time.Second)
	for {
		stacks := string(buf[:runtime.Stack(buf, true)])
		for _, g := range strings.Split(stacks, "\n\n") {
			header, _, _ := strings.Cut(g, "\n")
			if strings.Contains(header, "[select") && strings.Contains(g, "semaphore.(*Weighted).Acquire") {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no Acquire queued for the held connection within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}
