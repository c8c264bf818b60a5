package pg

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
)

// MigrateDir is Migrate over the .sql files in dir of fsys: the
// `//go:embed migrations/*.sql` directory each service keeps beside its
// store.
func MigrateDir(ctx context.Context, pool *pgxpool.Pool, schema string, fsys fs.FS, dir string) error {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		return fmt.Errorf("migrations of %s: %w", schema, err)
	}
	return Migrate(ctx, pool, schema, sub)
}
