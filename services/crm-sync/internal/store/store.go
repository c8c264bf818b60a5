// Package store holds crm-sync's schema, applied with pg.Migrate.
package store

import (
	"context"
	"embed"
	"io/fs"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/launchready/launchready/pkg/pg"
)

// Schema is the Postgres schema crm-sync owns; it touches no other.
const Schema = "crm"

//go:embed migrations/*.sql
var migrations embed.FS

// Migrations returns the embedded migration files.
func Migrations() fs.FS { return pg.MigrationsIn(migrations, "migrations") }

// Migrate applies the schema.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	return pg.MigrateShared(ctx, pool, Schema, Migrations())
}
