// Package dbconn opens kiln's connections to PostgreSQL.
//
// A connection string may be empty: pgx then reads libpq's environment
// variables (PGHOST, PGPORT, PGDATABASE, PGUSER, PGSSLMODE, ...), so the same
// settings work for psql and for kiln.
package dbconn

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Config says how to reach the database.
type Config struct {
	// URL is a libpq connection string or postgres:// URL. Empty means the
	// PG* environment variables alone.
	URL string
	// AppName is reported as application_name (visible in pg_stat_activity).
	AppName string
	// MaxConns caps the pool; 0 keeps pgx's default.
	MaxConns int32
}

// Open connects a pool and checks that the database answers.
func Open(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("bad database connection string: %w", err)
	}
	if cfg.AppName != "" {
		pc.ConnConfig.RuntimeParams["application_name"] = cfg.AppName
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connecting to the database: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, Explain(err, pc.ConnConfig.Host, pc.ConnConfig.Port, pc.ConnConfig.User, pc.ConnConfig.Database)
	}
	return pool, nil
}

// Explain turns a connection failure into a message that says what to do.
func Explain(err error, host string, port uint16, user, database string) error {
	where := fmt.Sprintf("%s:%d database %q as %q", host, port, database, user)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case "28000", "28P01":
			return fmt.Errorf("the database refused %q at %s: %s (check pg_hba.conf/pg_ident.conf, your Kerberos ticket with klist, or PGUSER): %w", user, where, pgErr.Message, err)
		case "3D000":
			return fmt.Errorf("database %q does not exist at %s (set PGDATABASE or --db): %w", database, where, err)
		}
	}
	var netErr *net.OpError
	if errors.As(err, &netErr) {
		return fmt.Errorf("cannot reach PostgreSQL at %s (is it running? set PGHOST/PGPORT or --db): %w", where, err)
	}
	return fmt.Errorf("cannot connect to %s: %w", where, err)
}
