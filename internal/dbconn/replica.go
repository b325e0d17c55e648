package dbconn

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Reads is where reads go: a hot standby (streaming replica) when there is
// one, the primary otherwise. A reader that has written (Written, or a
// position kept from an earlier process) reads from the standby only once
// the standby has replayed that write; when it has not within MaxWait the
// read goes to the primary, so a person never sees their own change
// hidden by replica lag.
type Reads struct {
	// Primary is the read-write pool; Replica is nil without --read-db.
	Primary, Replica *pgxpool.Pool
	// MaxWait is the longest a read waits for the standby to catch up
	// (DefaultMaxWait when 0).
	MaxWait time.Duration
}

// DefaultMaxWait is how long a read waits for the standby to replay a
// reader's own write before it goes to the primary.
const DefaultMaxWait = 2 * time.Second

// WrittenSQL reads the primary's current WAL insert position: a write
// committed before it is at or before this position, even with
// synchronous_commit off (the write position, pg_current_wal_lsn, may then
// still be behind the commit record).
const WrittenSQL = "SELECT pg_catalog.pg_current_wal_insert_lsn()::text"

// caughtUpSQL says whether the server has what was written up to $1: a
// standby that replayed it, or a server that is no standby (a promoted one
// has everything it ever received).
const caughtUpSQL = `SELECT NOT pg_catalog.pg_is_in_recovery()
	OR pg_catalog.pg_last_wal_replay_lsn() >= $1::pg_catalog.pg_lsn`

// Written returns the primary's current WAL position, to give later to For.
func (r Reads) Written(ctx context.Context) (string, error) {
	var lsn string
	if err := r.Primary.QueryRow(ctx, WrittenSQL).Scan(&lsn); err != nil {
		return "", fmt.Errorf("reading the primary's WAL position: %w", err)
	}
	return lsn, nil
}

// For returns where to read for a reader whose last write is at written
// (a position from Written; empty: none known): the standby once it has
// replayed that far (waiting up to MaxWait), else the primary. A standby
// that cannot be reached also sends the read to the primary.
func (r Reads) For(ctx context.Context, written string) *pgxpool.Pool {
	if r.Replica == nil {
		return r.Primary
	}
	if written == "" {
		return r.Replica
	}
	wait := r.MaxWait
	if wait == 0 {
		wait = DefaultMaxWait
	}
	deadline := time.Now().Add(wait)
	for {
		var ok bool
		err := r.Replica.QueryRow(ctx, caughtUpSQL, written).Scan(&ok)
		if err == nil && ok {
			return r.Replica
		}
		if err != nil || time.Now().After(deadline) {
			return r.Primary
		}
		select {
		case <-ctx.Done():
			return r.Primary
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// ErrBadPosition is returned for a WAL position that does not parse.
var ErrBadPosition = errors.New("not a WAL position (such as 0/3000148)")

// CheckPosition checks the form of a WAL position kept in a file.
func CheckPosition(lsn string) error {
	var hi, lo uint32
	if n, err := fmt.Sscanf(lsn, "%X/%X", &hi, &lo); err != nil || n != 2 || fmt.Sprintf("%X/%X", hi, lo) != lsn {
		return fmt.Errorf("%q: %w", lsn, ErrBadPosition)
	}
	return nil
}

// RecoveryConflict reports whether err is a hot standby's recovery
// conflict: the standby cancelled a read (or ended its session) to replay
// a change the read was in the way of, as PostgreSQL does once the replay
// is max_standby_streaming_delay behind (SQLSTATE 40001, which no other
// read on a standby raises, 40P01 or 57P04). The read can be made again,
// on the primary.
func RecoveryConflict(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	switch pgErr.Code {
	case "40001", "40P01", "57P04":
		return true
	}
	return false
}
