package store

import (
	"io/fs"
	"slices"
)

// Migrations returns the embedded migration files.
func Migrations() fs.FS {
	sub, err := fs.Sub(migrations, "migrations")
	if err != nil {
		// The embed pattern above guarantees the directory exists.
		return migrations
	}
	return sub
}

func sortedUnique(keys []string) []string {
	out := slices.Clone(keys)
	slices.Sort(out)
	return slices.Compact(out)
}
