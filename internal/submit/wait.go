package submit

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// JobState is a job's status as Wait sees it.
type JobState struct {
	Status   string
	Reason   string
	Finished bool
}

// recheck is how often Wait reads the job even without a notification, in
// case one was missed (a reconnect, a notification queue overflow).
const recheck = 30 * time.Second

// Wait follows job id until it finishes, calling changed (if set) with
// every status it sees, and returns the final state. It LISTENs on kiln_job,
// which the job trigger notifies on every status change.
func Wait(ctx context.Context, db *pgxpool.Pool, id int64, changed func(JobState)) (JobState, error) {
	conn, err := db.Acquire(ctx)
	if err != nil {
		return JobState{}, fmt.Errorf("connecting to follow job %d: %w", id, err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN kiln_job"); err != nil {
		return JobState{}, fmt.Errorf("listening for job changes: %w", err)
	}
	// Leave the pooled connection as it was found.
	defer conn.Exec(context.WithoutCancel(ctx), "UNLISTEN kiln_job") //nolint:errcheck

	var last string
	for {
		var st JobState
		var reason *string
		err := conn.QueryRow(ctx, `SELECT status, reason, finished_at IS NOT NULL FROM kiln.job WHERE id = $1`, id).
			Scan(&st.Status, &reason, &st.Finished)
		if err != nil {
			return JobState{}, fmt.Errorf("reading job %d: %w", id, err)
		}
		if reason != nil {
			st.Reason = *reason
		}
		if st.Status != last && changed != nil {
			changed(st)
		}
		last = st.Status
		if st.Finished {
			return st, nil
		}
		// Wait for a notification about this job, or the recheck.
		for {
			wctx, cancel := context.WithTimeout(ctx, recheck)
			n, err := conn.Conn().WaitForNotification(wctx)
			cancel()
			if ctx.Err() != nil {
				return st, ctx.Err()
			}
			if err != nil {
				break // timeout: read again
			}
			var msg struct {
				Job int64 `json:"job"`
			}
			if json.Unmarshal([]byte(n.Payload), &msg) == nil && msg.Job == id {
				break
			}
		}
	}
}
