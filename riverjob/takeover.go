package riverjob

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
)

// Takeover of a dead client's River jobs. A River client that dies
// (SIGKILL, OOM, its host gone) leaves the River jobs it was working in
// state running, and River's own rescuer takes them back only after
// RescueStuckJobsAfter (an hour by default). A client shows that it is
// alive by a session advisory lock keyed to its River client ID
// (HoldClientLock), taken before its River client starts and held on a
// connection of its own for as long as it runs: the server drops the lock
// as soon as that connection closes. The janitor makes the running River
// jobs of a client whose lock no session of the client's role holds
// available again (RescueOrphanedTx), so that a surviving or restarted
// client takes them over within one janitor round.
//
// The lock only speeds the takeover up; it is not what keeps work from
// being done twice. A client that lost its lock's connection but still
// runs may see its River job taken over and worked next to it, so the work
// of such a River job must be safe to run twice (a validate River job is:
// the split locks the job and writes nothing unless it is still
// submitted). Clients whose ID lacks the prefix (older releases) are left
// to the janitor's horizons.

// SplitterIDPrefix begins the River client ID of every kiln-splitter,
// which holds its client lock while it runs.
const SplitterIDPrefix = "kiln-splitter."

// NewSplitterID returns a River client ID for a kiln-splitter process on
// this host: the prefix, the host name, the process id and the start time,
// unique per process and within River's 100 characters.
func NewSplitterID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "unknown"
	}
	if len(host) > 40 {
		host = host[:40]
	}
	return SplitterIDPrefix + host + "." + strconv.Itoa(os.Getpid()) + "." + time.Now().UTC().Format("20060102T150405.000000")
}

// clientLockKey is the advisory lock key of River client ID %s, as SQL.
const clientLockKey = `pg_catalog.hashtextextended('kiln-river-client:' || %s, 0)`

// HoldClientLock takes the session advisory lock of River client id on
// conn, a connection straight to the server (not through a transaction
// pooler, which would hand the session and its lock to someone else),
// and reports whether it holds it. The session's TCP keepalives are
// shortened, so that the server drops the lock within about half a minute
// of the client's host going away without closing the connection.
func HoldClientLock(ctx context.Context, conn *pgx.Conn, id string) (bool, error) {
	for _, set := range []string{"SET tcp_keepalives_idle = 10", "SET tcp_keepalives_interval = 5", "SET tcp_keepalives_count = 3"} {
		if _, err := conn.Exec(ctx, set); err != nil {
			return false, fmt.Errorf("setting the lock session's keepalives: %w", err)
		}
	}
	var held bool
	if err := conn.QueryRow(ctx, `SELECT pg_catalog.pg_try_advisory_lock(`+fmt.Sprintf(clientLockKey, "$1")+`)`, id).Scan(&held); err != nil {
		return false, fmt.Errorf("taking the lock of River client %s: %w", id, err)
	}
	return held, nil
}

// Orphan is a River job taken back from a dead client.
type Orphan struct {
	ID int64
	// JobID is the kiln job of the River job's args (job_id), if any.
	JobID *int64
	// Client is the River client that had it.
	Client string
	// Attempt is the River attempt that client made.
	Attempt int
	// State is the River job's new state: available, or discarded when it
	// had used its last attempt.
	State string
}

// RescueOrphanedTx makes available again, at once, the River jobs of kind
// that are running on a client whose ID begins with prefix and whose lock
// (HoldClientLock) is held by no session of a member of role. Each gets
// an error naming reason in its River history; one that had used its last
// attempt is discarded instead (a River job that kills its client every
// time stops there). It returns what it changed.
func RescueOrphanedTx(ctx context.Context, tx pgx.Tx, kind, prefix, role, reason string) ([]Orphan, error) {
	const client = `r.attempted_by[pg_catalog.array_upper(r.attempted_by, 1)]`
	rows, err := tx.Query(ctx, `UPDATE `+Schema+`.river_job r SET
			state = (CASE WHEN r.attempt >= r.max_attempts THEN 'discarded' ELSE 'available' END)::`+Schema+`.river_job_state,
			scheduled_at = pg_catalog.now(),
			finalized_at = CASE WHEN r.attempt >= r.max_attempts THEN pg_catalog.now() END,
			errors = pg_catalog.array_append(r.errors, pg_catalog.jsonb_build_object('at', pg_catalog.now(), 'attempt', r.attempt,
				'error', $4::text || ' (River client ' || `+client+` || ')', 'trace', ''))
		WHERE r.kind = $1 AND r.state = 'running' AND pg_catalog.starts_with(`+client+`, $2)
		  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
		      WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		        AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database())
		        AND ((l.classid::int8 << 32) | l.objid::int8) = `+fmt.Sprintf(clientLockKey, client)+`
		        AND pg_catalog.pg_has_role(a.usesysid, $3::name, 'MEMBER'))
		RETURNING r.id, (r.args->>'job_id')::bigint, `+client+`, r.attempt, r.state::text`, kind, prefix, role, reason)
	if err != nil {
		return nil, fmt.Errorf("taking back the %s River jobs of dead clients: %w", kind, err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Orphan])
	if err != nil {
		return nil, fmt.Errorf("taking back the %s River jobs of dead clients: %w", kind, err)
	}
	return out, nil
}
