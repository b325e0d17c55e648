package schema

import (
	"context"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"
)

// MigrateLegacy migrates the database with the numbered migrations kept in
// testdata/legacy (kiln's migrations as they were before current-state
// files, functions and all) up to version upTo (0: all of them), and no
// current-state files: a database as an older kiln left it.
func MigrateLegacy(ctx context.Context, pool *pgxpool.Pool, upTo int) (*Result, error) {
	ms, err := readMigrations(os.DirFS("testdata/legacy"))
	if err != nil {
		return nil, err
	}
	for i, m := range ms {
		if upTo > 0 && m.Version > upTo {
			ms = ms[:i]
			break
		}
	}
	return migrate(ctx, pool, ms, nil)
}
