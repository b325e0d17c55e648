package janitor

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/jobs"
)

// waitingRiverStates are the River job states in which a River job still
// waits for a worker.
const waitingRiverStates = `('available', 'scheduled', 'retryable', 'pending')`

// repairPendingWithoutRiverJob gives a new River job to every pending task
// whose River job is gone, finished, or has been "running" longer than the
// horizon without the task being taken (its builder died between fetching
// the River job and taking the task). Without it such a task would wait
// forever.
func (j *Janitor) repairPendingWithoutRiverJob(ctx context.Context, c *Counts) error {
	const orphaned = `t.status = 'pending' AND NOT EXISTS (
		SELECT 1 FROM river.river_job r WHERE r.id = t.river_job_id
		   AND (r.state IN ` + waitingRiverStates + `
		        OR (r.state = 'running' AND r.attempted_at > now() - make_interval(secs => $1))))`
	cs, err := j.candidates(ctx, `SELECT t.id, t.job_id FROM kiln.task t WHERE `+orphaned+`
		ORDER BY t.id LIMIT $2`, secs(j.cfg.Horizon), j.cfg.Batch)
	if err != nil {
		return fmt.Errorf("finding pending tasks without a River job: %w", err)
	}
	return j.forEach(ctx, c, "giving a pending task a River job", cs, func(tx pgx.Tx, cand candidate, d *Counts) error {
		if _, err := lockJob(ctx, tx, cand.JobID); err != nil {
			return err
		}
		t := taskRow{ID: cand.TaskID, JobID: cand.JobID}
		var oldState *string
		err := tx.QueryRow(ctx, `SELECT t.river_job_id, t.platform, j.priority,
				(SELECT r.state::text FROM river.river_job r WHERE r.id = t.river_job_id)
			FROM kiln.task t JOIN kiln.job j ON j.id = t.job_id
			WHERE t.id = $2 AND `+orphaned+` FOR UPDATE OF t`, secs(j.cfg.Horizon), cand.TaskID).
			Scan(&t.RiverJobID, &t.Platform, &t.Priority, &oldState)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("re-reading task: %w", err)
		}
		// A River job stuck in running is cancelled, so that it cannot come
		// back to life next to the new one.
		oldCancelled, err := cancelRiverJob(ctx, tx, t.RiverJobID)
		if err != nil {
			return err
		}
		id, err := j.insertBuildJob(ctx, tx, t)
		if err != nil {
			return err
		}
		if err := record(ctx, tx, event{Kind: "janitor.repair_river", JobID: &t.JobID, TaskID: &t.ID,
			Detail: map[string]any{"action": "inserted", "river_job_id": id, "old_river_job_id": t.RiverJobID,
				"old_river_job_state": oldState, "old_river_job_cancelled": oldCancelled,
				"reason": "pending task had no live River job"}}); err != nil {
			return err
		}
		d.RiverJobsInserted++
		return nil
	})
}

// cancelRiverJobsOfFinished cancels waiting build River jobs whose task has
// finished (or no longer exists), so no builder wakes for nothing; and
// build River jobs still "running" a horizon after their task finished: the
// River client working them died between the task's end and River's record
// of it (a builder killed just after finishing, or killed mid-build before
// the task was cancelled), and only River's rescuer, a day later, would
// otherwise end them. A live builder records its River job's end within
// moments of the task's, and River's completer leaves a River job that is
// no longer running alone.
func (j *Janitor) cancelRiverJobsOfFinished(ctx context.Context, c *Counts) error {
	rows, err := j.db.Query(ctx, `SELECT r.id, (r.args->>'task_id')::bigint, t.job_id, t.status, r.state::text
		FROM river.river_job r LEFT JOIN kiln.task t ON t.id = (r.args->>'task_id')::bigint
		WHERE r.kind = $1 AND (t.id IS NULL OR t.finished_at IS NOT NULL)
		  AND (r.state IN `+waitingRiverStates+`
		       OR (r.state = 'running' AND coalesce(t.finished_at, r.attempted_at) < now() - make_interval(secs => $3)))
		ORDER BY r.id LIMIT $2`, jobs.BuildArgs{}.Kind(), j.cfg.Batch, secs(j.cfg.Horizon))
	if err != nil {
		return fmt.Errorf("finding River jobs of finished tasks: %w", err)
	}
	type stray struct {
		RiverJobID int64
		TaskID     *int64
		JobID      *int64
		TaskStatus *string
		State      string
	}
	strays, err := pgx.CollectRows(rows, pgx.RowToStructByPos[stray])
	if err != nil {
		return fmt.Errorf("finding River jobs of finished tasks: %w", err)
	}
	var errs []error
	for _, s := range strays {
		err := j.inTx(ctx, c, func(tx pgx.Tx, d *Counts) error {
			tag, err := tx.Exec(ctx, `UPDATE river.river_job SET state = 'cancelled', finalized_at = now()
				WHERE id = $1 AND state = $2`, s.RiverJobID, s.State)
			if err != nil || tag.RowsAffected() == 0 {
				return err // an error, or a builder or another janitor got there first
			}
			status := "missing"
			if s.TaskStatus != nil {
				status = *s.TaskStatus
			}
			if err := record(ctx, tx, event{Kind: "janitor.repair_river", JobID: s.JobID, TaskID: s.TaskID,
				Detail: map[string]any{"action": "cancelled", "river_job_id": s.RiverJobID, "river_job_state": s.State, "task_status": status,
					"reason": "River job of a task that is " + status}}); err != nil {
				return err
			}
			d.RiverJobsCancelled++
			return nil
		})
		if err != nil {
			j.log.Warn("cancelling a stray River job failed; retrying next round", "river_job", s.RiverJobID, "err", err)
			errs = append(errs, fmt.Errorf("stray River job %d: %w", s.RiverJobID, err))
		}
	}
	return errors.Join(errs...)
}

// recomputeJobStatus sets the status of every job that disagrees with its
// tasks (kiln.job_status_from_tasks). Unfinished jobs are always checked,
// finished ones for RecheckJobsFor after they finished, which keeps a round
// from scanning the whole history.
func (j *Janitor) recomputeJobStatus(ctx context.Context, c *Counts) error {
	cs, err := j.candidates(ctx, `SELECT 0::bigint, j.id FROM kiln.job j
		WHERE (j.finished_at IS NULL OR j.finished_at > now() - make_interval(secs => $1))
		  AND kiln.job_status_from_tasks(j.id) <> j.status
		ORDER BY j.id LIMIT $2`, secs(j.cfg.RecheckJobsFor), j.cfg.Batch)
	if err != nil {
		return fmt.Errorf("finding jobs whose status disagrees with their tasks: %w", err)
	}
	var errs []error
	for _, cand := range cs {
		err := j.inTx(ctx, c, func(tx pgx.Tx, d *Counts) error {
			if _, err := lockJob(ctx, tx, cand.JobID); err != nil {
				return err
			}
			var old, now string
			if err := tx.QueryRow(ctx, "SELECT status FROM kiln.job WHERE id = $1", cand.JobID).Scan(&old); err != nil {
				return fmt.Errorf("re-reading job: %w", err)
			}
			if err := tx.QueryRow(ctx, "SELECT kiln.refresh_job_status($1)", cand.JobID).Scan(&now); err != nil {
				return fmt.Errorf("recomputing: %w", err)
			}
			if now == old {
				return nil // someone else fixed it
			}
			if err := record(ctx, tx, event{Kind: "janitor.recompute", JobID: &cand.JobID, OldStatus: &old,
				NewStatus: &now, Detail: map[string]any{"reason": "job status disagreed with its tasks"}}); err != nil {
				return err
			}
			d.JobsRecomputed++
			return nil
		})
		if err != nil {
			j.log.Warn("recomputing a job's status failed; retrying next round", "job", cand.JobID, "err", err)
			errs = append(errs, fmt.Errorf("job %d: %w", cand.JobID, err))
		}
	}
	return errors.Join(errs...)
}
