package console_test

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/launchready/launchready/pkg/pg"
	"github.com/launchready/launchready/pkg/pg/pgtest"
	billingstate "github.com/launchready/launchready/services/billing-state"
	"github.com/launchready/launchready/services/console/internal/store"
	crmsync "github.com/launchready/launchready/services/crm-sync"
	supportnotify "github.com/launchready/launchready/services/support-notify"
)

// serviceSchemas are the schemas the console reads and must never write.
var serviceSchemas = []func() (string, fs.FS){billingstate.Schema, crmsync.Schema, supportnotify.Schema}

// migrateServices applies every service's migrations to the database at
// url, as each service does when it starts.
func migrateServices(t *testing.T, url string) {
	t.Helper()
	pool, err := pg.Open(t.Context(), url, pg.WithMaxConns(2))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, s := range serviceSchemas {
		name, files := s()
		if err := pg.MigrateShared(t.Context(), pool, name, files); err != nil {
			t.Fatal(err)
		}
	}
	if err := store.Migrate(t.Context(), pool); err != nil {
		t.Fatal(err)
	}
}

// The console's reader pool (pg.WithRole(pg.ConsoleReaderRole), as Run
// opens it) reads every service's schema and cannot change any of them,
// even though its login owns them all.
func TestReaderSelectsAndIsRefusedEveryWrite(t *testing.T) {
	url := pgtest.NewDatabase(t)
	migrateServices(t, url)
	ctx := t.Context()
	reader, err := pg.Open(ctx, url, pg.WithMaxConns(2), pg.WithRole(pg.ConsoleReaderRole))
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()

	var role string
	if err := reader.QueryRow(ctx, `SELECT current_user`).Scan(&role); err != nil || role != pg.ConsoleReaderRole {
		t.Fatalf("the reader runs as %q (%v), want %s", role, err, pg.ConsoleReaderRole)
	}
	for _, table := range []string{"crm.processed_events", "crm.customers", "support.processed_events", "billing.customers", "billing.processed_events"} {
		var n int
		if err := reader.QueryRow(ctx, `SELECT count(*) FROM `+table).Scan(&n); err != nil {
			t.Errorf("SELECT from %s: %v", table, err)
		}
	}
	writes := []string{
		`INSERT INTO crm.processed_events (event_id, event_type, outcome) VALUES ('evt_console_write', 'x', 'synced')`,
		`INSERT INTO support.processed_events (consumer, event_id, event_type, outcome) VALUES ('support-tickets', 'evt_console_write', 'x', 'ticketed')`,
		`UPDATE billing.customers SET email = 'taken@example.com'`,
		`DELETE FROM crm.customers`,
		`CREATE TABLE crm.console_was_here (id int)`,
	}
	for _, sql := range writes {
		_, err := reader.Exec(ctx, sql)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "42501" { // insufficient_privilege
			t.Errorf("%s: %v, want permission denied", sql, err)
		}
	}
}
