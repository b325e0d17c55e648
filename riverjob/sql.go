package riverjob

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The changes to River jobs that River's API cannot make. River's
// JobCancelTx leaves a running River job running until its client sees the
// cancellation; kiln cancels River jobs whose client is gone (a builder or
// splitter that died), so the row itself must change. River's client and
// completer leave a River job that is no longer running alone, so a client
// that is still alive drops such a job when its worker returns.

// finished is River's final states, as SQL.
const finished = `('cancelled', 'completed', 'discarded')`

// CancelTx cancels River job id if it has not finished, a running one too.
// It reports whether it changed anything.
func CancelTx(ctx context.Context, tx pgx.Tx, id int64) (bool, error) {
	tag, err := tx.Exec(ctx, `UPDATE `+Schema+`.river_job SET state = 'cancelled', finalized_at = now()
		WHERE id = $1 AND state NOT IN `+finished, id)
	if err != nil {
		return false, fmt.Errorf("cancelling River job %d: %w", id, err)
	}
	return tag.RowsAffected() > 0, nil
}

// CancelInStateTx cancels River job id if it is still in state (as read
// earlier by the caller), so that a River job that moved on meanwhile is
// left to whoever moved it. It reports whether it changed anything.
func CancelInStateTx(ctx context.Context, tx pgx.Tx, id int64, state string) (bool, error) {
	tag, err := tx.Exec(ctx, `UPDATE `+Schema+`.river_job SET state = 'cancelled', finalized_at = now()
		WHERE id = $1 AND state = $2`, id, state)
	if err != nil {
		return false, fmt.Errorf("cancelling River job %d: %w", id, err)
	}
	return tag.RowsAffected() > 0, nil
}

// CancelRunningValidateTx cancels the validate River jobs of kiln job
// jobID that are running (their splitter died).
func CancelRunningValidateTx(ctx context.Context, tx pgx.Tx, jobID int64) error {
	if _, err := tx.Exec(ctx, `UPDATE `+Schema+`.river_job SET state = 'cancelled', finalized_at = now()
		WHERE kind = $2 AND args->>'job_id' = $1::bigint::text AND state = 'running'`, jobID, KindValidate); err != nil {
		return fmt.Errorf("cancelling the running validate River jobs of job %d: %w", jobID, err)
	}
	return nil
}

// CountAvailable counts the River jobs of queue that could run now.
func CountAvailable(ctx context.Context, db *pgxpool.Pool, queue string) (int, error) {
	var n int
	if err := db.QueryRow(ctx, `SELECT count(*) FROM `+Schema+`.river_job
		WHERE queue = $1 AND state = 'available' AND scheduled_at <= now()`, queue).Scan(&n); err != nil {
		return 0, fmt.Errorf("counting the River jobs available in queue %s: %w", queue, err)
	}
	return n, nil
}
