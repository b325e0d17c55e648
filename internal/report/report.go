// Package report holds the farm's read queries and their result types: job
// listings, one job with its tasks, attempts and artifacts, builders,
// platforms, the queue and why it does not move, logs, and the health facts
// a monitoring probe needs; FollowJob follows one job live and FollowLog one
// task's log (LISTEN/NOTIFY, reconnecting after a lost connection), and
// ParseSince reads the start of a listing's time window.
//
// The CLI's --json output and the web interface's /api/ both print these
// types as they are, so their JSON field names are a stable interface
// (documented in docs/cli.md): fields may be added, never renamed or removed.
// Times are RFC 3339 strings, durations are float seconds in fields ending in
// _seconds, checksums are lower-case hex.
//
// Every query runs as the caller's database role and needs only what
// kiln_reader is granted.
package report

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DB is what the queries need: a pool, a connection or a transaction.
type DB interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ErrNotFound is wrapped by errors for a job, task or platform that does not
// exist.
var ErrNotFound = errors.New("not found")

// notFoundError says what was not found; it matches ErrNotFound.
type notFoundError struct{ msg string }

func (e *notFoundError) Error() string        { return e.msg }
func (e *notFoundError) Is(target error) bool { return target == ErrNotFound }

// notFound is an error matching ErrNotFound that names what was looked for.
func notFound(what string, id any) error {
	return &notFoundError{fmt.Sprintf("%s %v does not exist", what, id)}
}

// wrap adds context to a query error, keeping pgx.ErrNoRows out of sight.
func wrap(err error, doing string) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		return fmt.Errorf("%s: permission denied (%s); your role needs kiln_reader or kiln_submitter: %w", doing, pgErr.Message, err)
	}
	return fmt.Errorf("%s: %w", doing, err)
}
