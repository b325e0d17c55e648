package schema

import (
	"context"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"
)

// MigrateLegacy migrates the database with the numbered migrations kept in
// testdata/legacy (kiln's migrations as they were before current-state
// files, functions and all) and no current-state files: a database as an
// older kiln left it.
func MigrateLegacy(ctx context.Context, pool *pgxpool.Pool) (*Result, error) {
	ms, err := readMigrations(os.DirFS("testdata/legacy"))
	if err != nil {
		return nil, err
	}
	return migrate(ctx, pool, ms, nil)
}
