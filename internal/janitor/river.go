package janitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/kiln-build/kiln/jobs"
	"github.com/kiln-build/kiln/schema"
)

// taskRow is what a repair needs to know of a task.
type taskRow struct {
	ID         int64
	JobID      int64
	Attempt    int32
	Builder    string
	LostCount  int
	RiverJobID *int64
	Platform   string
	Priority   int16
}

// riverJobHow says how a pending task got a River job back.
type riverJobHow string

const (
	riverJobReused   riverJobHow = "made_available" // its own River job, made available again
	riverJobInserted riverJobHow = "inserted"       // a new River job (its own was gone)
)

// riverInsertChannel is the channel River's clients LISTEN on for new work
// in a queue (River's notifier: "<schema>.river_insert").
const riverInsertChannel = schema.RiverSchema + ".river_insert"

// makeAvailable makes the task's River job available again at once, so a
// builder of its platform takes it, or inserts a new one when the task's
// River job no longer exists (River deletes finished River jobs after a
// while). A River job that a builder was running keeps its attempt count;
// max_attempts is raised past it so River's own retry limit never discards
// a task the janitor requeued.
func (j *Janitor) makeAvailable(ctx context.Context, tx pgx.Tx, t taskRow) (riverJobHow, int64, error) {
	if t.RiverJobID != nil {
		var queue string
		err := tx.QueryRow(ctx, `UPDATE river.river_job
			SET state = 'available', scheduled_at = now(), finalized_at = NULL,
			    max_attempts = greatest(max_attempts, attempt + 1)
			WHERE id = $1 AND kind = $2 AND args->>'task_id' = $3::bigint::text
			RETURNING queue`, *t.RiverJobID, jobs.BuildArgs{}.Kind(), t.ID).Scan(&queue)
		switch {
		case err == nil:
			payload, _ := json.Marshal(map[string]string{"queue": queue})
			if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", riverInsertChannel, string(payload)); err != nil {
				return "", 0, fmt.Errorf("waking builders of queue %s: %w", queue, err)
			}
			return riverJobReused, *t.RiverJobID, nil
		case !errors.Is(err, pgx.ErrNoRows):
			return "", 0, fmt.Errorf("making River job %d available: %w", *t.RiverJobID, err)
		}
	}
	id, err := j.insertBuildJob(ctx, tx, t)
	if err != nil {
		return "", 0, err
	}
	return riverJobInserted, id, nil
}

// insertBuildJob inserts a build River job for the task with its job's
// priority and records it as the task's River job.
func (j *Janitor) insertBuildJob(ctx context.Context, tx pgx.Tx, t taskRow) (int64, error) {
	res, err := j.river.InsertTx(ctx, tx, jobs.BuildArgs{TaskID: t.ID, JobID: t.JobID, Platform: t.Platform},
		&river.InsertOpts{Priority: int(t.Priority)})
	if err != nil {
		return 0, fmt.Errorf("inserting a build River job: %w", err)
	}
	if _, err := tx.Exec(ctx, "UPDATE kiln.task SET river_job_id = $2 WHERE id = $1", t.ID, res.Job.ID); err != nil {
		return 0, fmt.Errorf("recording River job %d on the task: %w", res.Job.ID, err)
	}
	return res.Job.ID, nil
}

// cancelRiverJob cancels a River job that has not finished (a running one
// too: its builder's River client will find it no longer running and leave
// it). It reports whether it changed anything.
func cancelRiverJob(ctx context.Context, tx pgx.Tx, id *int64) (bool, error) {
	if id == nil {
		return false, nil
	}
	tag, err := tx.Exec(ctx, `UPDATE river.river_job SET state = 'cancelled', finalized_at = now()
		WHERE id = $1 AND state NOT IN ('cancelled', 'completed', 'discarded')`, *id)
	if err != nil {
		return false, fmt.Errorf("cancelling River job %d: %w", *id, err)
	}
	return tag.RowsAffected() > 0, nil
}
