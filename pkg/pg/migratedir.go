package pg

import (
	"context"
	"fmt"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"
)

// MigrationsIn returns the .sql files in dir of fsys: the
// `//go:embed migrations/*.sql` directory each service keeps beside its
// store. fsys is returned unchanged when dir is not a valid path, which an
// embed pattern naming dir rules out.
func MigrationsIn(fsys fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(fsys, dir)
	if err != nil {
		return fsys
	}
	return sub
}

// MigrateDir is Migrate over the .sql files in dir of fsys.
func MigrateDir(ctx context.Context, pool *pgxpool.Pool, schema string, fsys fs.FS, dir string) error {
	if !fs.ValidPath(dir) {
		return fmt.Errorf("migrations of %s: %q is not a directory path", schema, dir)
	}
	return Migrate(ctx, pool, schema, MigrationsIn(fsys, dir))
}
