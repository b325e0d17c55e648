package report

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// LogChunk is one stored batch of log lines of an attempt.
type LogChunk struct {
	TaskID    int64     `json:"task_id"`
	Attempt   int       `json:"attempt"`
	Seq       int       `json:"seq"`
	Data      string    `json:"data"`
	CreatedAt time.Time `json:"created_at"`
}

// WatchRenew is how often a follower of live logs renews its watch
// (WatchLogs): a watch lasts a minute, so a follower that misses two
// renewals in a row still has its notifications.
const WatchRenew = 20 * time.Second

// WatchMax is the most tasks one WatchLogs call may name (kiln.watch_logs
// refuses more).
const WatchMax = 10000

// Execer runs a statement: a *pgx.Conn, a *pgxpool.Pool or a pgx.Tx.
type Execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// WatchLogs tells the database that tasks' live logs are followed
// (kiln.watch_logs): for the next minute each batch stored in their logs
// sends NOTIFY kiln_log, which batches of unwatched tasks do not, since
// every notifying commit wakes every listening session of the database
// (docs/scaling.md). Followers call it before reading a log and again
// every WatchRenew while they follow. Tasks that do not exist, are final
// or may not be read are left out without an error.
func WatchLogs(ctx context.Context, db Execer, tasks []int64) error {
	if _, err := db.Exec(ctx, "SELECT kiln.watch_logs($1)", tasks); err != nil {
		return wrap(err, "watching live logs")
	}
	return nil
}

// LogAfter returns the log chunks of one attempt of a task whose seq is
// greater than after (pass -1 for the whole log), in order. A follower
// remembers the last seq it printed and asks again when NOTIFY kiln_log
// names the task. It reads through the primary key of kiln.log_chunk.
func LogAfter(ctx context.Context, db DB, taskID int64, attempt, after int) ([]LogChunk, error) {
	rows, err := db.Query(ctx, `SELECT task_id, attempt, seq, data, created_at FROM kiln.log_chunk
		WHERE task_id = $1 AND attempt = $2 AND seq > $3 ORDER BY seq`, taskID, attempt, after)
	if err != nil {
		return nil, wrap(err, fmt.Sprintf("reading the log of task %d", taskID))
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[LogChunk])
	if err != nil {
		return nil, wrap(err, fmt.Sprintf("reading the log of task %d", taskID))
	}
	if out == nil {
		out = []LogChunk{}
	}
	return out, nil
}

// LogTail returns the last n lines of the log of one attempt of a task,
// reading only as many chunks from the end as it needs.
func LogTail(ctx context.Context, db DB, taskID int64, attempt, n int) ([]string, error) {
	if n <= 0 {
		return []string{}, nil
	}
	rows, err := db.Query(ctx, `SELECT data FROM kiln.log_chunk
		WHERE task_id = $1 AND attempt = $2 ORDER BY seq DESC`, taskID, attempt)
	if err != nil {
		return nil, wrap(err, fmt.Sprintf("reading the log of task %d", taskID))
	}
	defer rows.Close()
	var chunks []string
	lines := 0
	for rows.Next() && lines <= n {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, wrap(err, fmt.Sprintf("reading the log of task %d", taskID))
		}
		chunks = append(chunks, data)
		lines += strings.Count(data, "\n")
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, wrap(err, fmt.Sprintf("reading the log of task %d", taskID))
	}
	var b strings.Builder
	for i := len(chunks) - 1; i >= 0; i-- {
		b.WriteString(chunks[i])
	}
	all := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(all) == 1 && all[0] == "" {
		return []string{}, nil
	}
	return all[max(0, len(all)-n):], nil
}
