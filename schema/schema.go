// Package schema holds kiln's SQL migrations and applies them, together with
// River's own migrations, to a database.
//
// The farm's tables live in schema kiln and River's in schema river. Two kinds
// of SQL file make kiln's schema (docs/schema.md, "Migrations"):
//
//   - numbered migrations (0001_name.sql) change tables and data; each is
//     applied once, and a change is a new file;
//   - current-state files (current/NN_kind.sql) define functions, views,
//     triggers and policies as they are now, idempotently, and are applied
//     on every migrate.
//
// Migrate is idempotent and refuses a database whose schema is newer than
// the binary.
package schema

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"
)

//go:embed *.sql current/*.sql
var files embed.FS

// RiverSchema is the Postgres schema that holds River's tables.
const RiverSchema = "river"

// lockKey serialises concurrent migrators (pg_advisory_xact_lock).
const lockKey = 0x6b696c6e // "kiln"

// Migration is one numbered SQL file.
type Migration struct {
	Version int
	Name    string
	SQL     string
}

// Migrations returns the embedded migrations in version order.
func Migrations() ([]Migration, error) {
	return readMigrations(files)
}

// readMigrations reads the numbered migrations at the top of fsys.
func readMigrations(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, fmt.Errorf("listing migrations: %w", err)
	}
	var out []Migration
	for _, name := range entries {
		num, _, ok := strings.Cut(name, "_")
		if !ok {
			return nil, fmt.Errorf("migration %s: name must be NNNN_description.sql", name)
		}
		v, err := strconv.Atoi(num)
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: bad version number", name)
		}
		body, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("reading migration %s: %w", name, err)
		}
		out = append(out, Migration{Version: v, Name: name, SQL: string(body)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Version < out[j].Version })
	for i := 1; i < len(out); i++ {
		if out[i].Version == out[i-1].Version {
			return nil, fmt.Errorf("migrations %s and %s share version %d", out[i-1].Name, out[i].Name, out[i].Version)
		}
	}
	return out, nil
}

// Current returns the current-state files (current/*.sql) in the order
// Migrate applies them: by name. Version is 0.
func Current() ([]Migration, error) {
	names, err := fs.Glob(files, "current/*.sql")
	if err != nil {
		return nil, fmt.Errorf("listing current-state files: %w", err)
	}
	sort.Strings(names)
	out := make([]Migration, 0, len(names))
	for _, name := range names {
		body, err := files.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", name, err)
		}
		out = append(out, Migration{Name: name, SQL: string(body)})
	}
	return out, nil
}

// Result tells what Migrate did.
type Result struct {
	From, To     int      // kiln schema version before and after
	Applied      []string // kiln migration files applied
	RiverApplied []int    // River migration versions applied
}

// Migrate brings the database up to date: River's migrations into schema
// river, then kiln's numbered ones into schema kiln, each migration in its
// own transaction (River's cannot share one: a later one uses an enum value
// an earlier one adds), then kiln's current-state files, all in one
// transaction: the last numbered migration's when one was pending, so that
// a table it makes and the triggers and policies guarding it commit
// together. Concurrent migrators wait for each other. Running it again
// applies no migration and leaves every definition as it was. A database
// newer than this binary is refused and left as it is.
func Migrate(ctx context.Context, pool *pgxpool.Pool) (*Result, error) {
	migrations, err := Migrations()
	if err != nil {
		return nil, err
	}
	current, err := Current()
	if err != nil {
		return nil, err
	}
	return migrate(ctx, pool, migrations, current)
}

// migrate is Migrate with the numbered migrations and current-state files
// given (the upgrade test passes the migrations kiln shipped before
// current-state files existed).
func migrate(ctx context.Context, pool *pgxpool.Pool, migrations, current []Migration) (*Result, error) {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("connecting for migration: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", lockKey); err != nil {
		return nil, fmt.Errorf("taking the migration lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", lockKey) //nolint:errcheck

	res := &Result{}
	err = inTx(ctx, conn.Conn(), func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, prepareSQL); err != nil {
			return fmt.Errorf("preparing schemas: %w", err)
		}
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM kiln.schema_migration").Scan(&res.From); err != nil {
			return fmt.Errorf("reading schema version: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	latest := migrations[len(migrations)-1].Version
	if res.From > latest {
		return nil, &TooNewError{Database: res.From, Binary: latest}
	}
	applied := map[int]bool{}
	rows, err := conn.Query(ctx, "SELECT version FROM kiln.schema_migration")
	if err != nil {
		return nil, fmt.Errorf("reading applied migrations: %w", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("reading applied migrations: %w", err)
	}
	for _, v := range versions {
		applied[v] = true
	}

	migrator, err := rivermigrate.New(riverpgxv5.New(nil), &rivermigrate.Config{Schema: RiverSchema})
	if err != nil {
		return nil, fmt.Errorf("creating River migrator: %w", err)
	}
	for {
		var applied []int
		err := inTx(ctx, conn.Conn(), func(tx pgx.Tx) error {
			// One step per transaction, so each runs as kiln_owner (SET
			// LOCAL ROLE) and enum additions commit before use.
			//lint:ignore SA1019 MigrateTx with MaxSteps 1 is exactly what Migrate does, plus our role switch.
			rr, err := migrator.MigrateTx(ctx, tx, rivermigrate.DirectionUp, &rivermigrate.MigrateOpts{MaxSteps: 1})
			if err != nil {
				return fmt.Errorf("applying River migrations: %w", err)
			}
			for _, v := range rr.Versions {
				applied = append(applied, v.Version)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(applied) == 0 {
			break
		}
		res.RiverApplied = append(res.RiverApplied, applied...)
	}

	var pending []Migration
	for _, m := range migrations {
		if !applied[m.Version] {
			pending = append(pending, m)
		}
	}
	applyCurrent := func(tx pgx.Tx) error {
		for _, c := range current {
			if _, err := tx.Exec(ctx, c.SQL); err != nil {
				return fmt.Errorf("applying %s: %w", c.Name, err)
			}
		}
		return nil
	}
	for i, m := range pending {
		err := inTx(ctx, conn.Conn(), func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return fmt.Errorf("applying migration %s: %w", m.Name, err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO kiln.schema_migration (version, name) VALUES ($1, $2)", m.Version, m.Name); err != nil {
				return fmt.Errorf("recording migration %s: %w", m.Name, err)
			}
			if i == len(pending)-1 {
				return applyCurrent(tx)
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		res.Applied = append(res.Applied, m.Name)
	}
	if len(pending) == 0 {
		if err := inTx(ctx, conn.Conn(), applyCurrent); err != nil {
			return nil, err
		}
	}
	res.To = latest
	return res, nil
}

// prepareSQL creates the schemas and the migration table. It runs as
// kiln_owner when that role exists and the migrating login may act as it
// (roles/00-groups.sql), so that no person owns the farm's objects.
const prepareSQL = `
	CREATE SCHEMA IF NOT EXISTS kiln;
	CREATE SCHEMA IF NOT EXISTS ` + RiverSchema + `;
	CREATE TABLE IF NOT EXISTS kiln.schema_migration (
	    version    integer PRIMARY KEY,
	    name       text NOT NULL,
	    applied_at timestamptz NOT NULL DEFAULT now(),
	    applied_by name NOT NULL DEFAULT session_user
	);
	COMMENT ON TABLE kiln.schema_migration IS 'kiln schema migrations applied to this database (kiln admin migrate).';
	COMMENT ON COLUMN kiln.schema_migration.version IS 'Migration number.';
	COMMENT ON COLUMN kiln.schema_migration.name IS 'Migration file name.';
	COMMENT ON COLUMN kiln.schema_migration.applied_at IS 'When it was applied.';
	COMMENT ON COLUMN kiln.schema_migration.applied_by IS 'Role that applied it.';`

// inTx runs fn in a transaction acting as kiln_owner where possible.
func inTx(ctx context.Context, conn *pgx.Conn, fn func(pgx.Tx) error) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("starting migration transaction: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit this is a no-op
	if _, err := tx.Exec(ctx, `DO $$ BEGIN
		IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'kiln_owner')
		   AND pg_has_role(current_user, 'kiln_owner', 'MEMBER')
		   AND (has_database_privilege('kiln_owner', current_database(), 'CREATE')
		        OR EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = 'kiln' AND nspowner = (SELECT oid FROM pg_roles WHERE rolname = 'kiln_owner'))) THEN
			SET LOCAL ROLE kiln_owner;
		END IF; END $$`); err != nil {
		return fmt.Errorf("switching to kiln_owner: %w", err)
	}
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("committing migration: %w", err)
	}
	return nil
}

// TooNewError is returned when the database's schema is newer than this binary.
type TooNewError struct {
	Database, Binary int
}

func (e *TooNewError) Error() string {
	return fmt.Sprintf("database schema is at version %d but this kiln knows only up to %d: upgrade kiln before using this database", e.Database, e.Binary)
}
