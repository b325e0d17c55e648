package report

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// LogChunk is one stored batch of log lines of an attempt.
type LogChunk struct {
	TaskID    int64     `json:"task_id"`
	Attempt   int       `json:"attempt"`
	Seq       int       `json:"seq"`
	Data      string    `json:"data"`
	CreatedAt time.Time `json:"created_at"`
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
