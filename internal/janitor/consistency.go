package janitor

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/riverjob"
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
		// The job's lock keeps the task as it is read here: every change
		// of a task's status locks its job first (docs/protocol.md).
		t := taskRow{ID: cand.TaskID, JobID: cand.JobID}
		var oldState *string
		err := tx.QueryRow(ctx, `SELECT t.river_job_id, t.platform, j.priority,
				(SELECT r.state::text FROM river.river_job r WHERE r.id = t.river_job_id)
			FROM kiln.task t JOIN kiln.job j ON j.id = t.job_id
			WHERE t.id = $2 AND `+orphaned, secs(j.cfg.Horizon), cand.TaskID).
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
		if err := j.giveRiverJob(ctx, tx, t, oldState, &oldCancelled, "pending task had no live River job"); err != nil {
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
		ORDER BY r.id LIMIT $2`, riverjob.BuildArgs{}.Kind(), j.cfg.Batch, secs(j.cfg.Horizon))
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
			ok, err := riverjob.CancelInStateTx(ctx, tx, s.RiverJobID, s.State)
			if err != nil || !ok {
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

// liveValidation is true for a kiln job j that has a validate River job
// still waiting or running for less than the horizon ($1 seconds).
const liveValidation = `EXISTS (SELECT 1 FROM river.river_job r
	WHERE r.kind = 'validate' AND r.args->>'job_id' = j.id::text
	  AND (r.state IN ` + waitingRiverStates + `
	       OR (r.state = 'running' AND r.attempted_at > now() - make_interval(secs => $1))))`

// repairStuckValidation looks after jobs still submitted ValidateHorizon
// after they were submitted with no live validate River job: it was
// discarded after its attempts (the splitter kept failing, say on a broken
// database connection), cancelled, deleted, has been running for longer
// than the horizon (its splitter died), or was never inserted (a submit by
// hand in psql). Such a job gets a new validate River job, up to
// MaxRevalidate times; after that it is marked invalid, with the last River
// error as the reason, rather than waiting forever. Both are recorded as
// janitor.revalidate events.
func (j *Janitor) repairStuckValidation(ctx context.Context, c *Counts) error {
	const stuck = `j.status = 'submitted' AND j.submitted_at < now() - make_interval(secs => $1) AND NOT ` + liveValidation
	cs, err := j.candidates(ctx, `SELECT 0::bigint, j.id FROM kiln.job j WHERE `+stuck+` ORDER BY j.id LIMIT $2`,
		secs(j.cfg.ValidateHorizon), j.cfg.Batch)
	if err != nil {
		return fmt.Errorf("finding jobs stuck in validation: %w", err)
	}
	var errs []error
	for _, cand := range cs {
		err := j.inTx(ctx, c, func(tx pgx.Tx, d *Counts) error {
			return j.revalidate(ctx, tx, cand.JobID, stuck, d)
		})
		if err != nil {
			j.log.Warn("requeueing a stuck validation failed; retrying next round", "job", cand.JobID, "err", err)
			errs = append(errs, fmt.Errorf("job %d: %w", cand.JobID, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// revalidate handles one stuck job under its lock (stuck is re-checked).
func (j *Janitor) revalidate(ctx context.Context, tx pgx.Tx, jobID int64, stuck string, d *Counts) error {
	if _, err := lockJob(ctx, tx, jobID); err != nil {
		return err
	}
	var (
		tries            int
		lastState, lastE *string
	)
	err := tx.QueryRow(ctx, `SELECT
			(SELECT count(*) FROM kiln.event e WHERE e.job_id = j.id AND e.kind = 'janitor.revalidate' AND e.detail->>'action' = 'inserted'),
			r.state::text, r.errors[array_upper(r.errors, 1)]->>'error'
		FROM kiln.job j
		LEFT JOIN LATERAL (SELECT r.state, r.errors FROM river.river_job r
		                   WHERE r.kind = 'validate' AND r.args->>'job_id' = j.id::text ORDER BY r.id DESC LIMIT 1) r ON true
		WHERE j.id = $2 AND `+stuck, secs(j.cfg.ValidateHorizon), jobID).Scan(&tries, &lastState, &lastE)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil // validated, cancelled or given a River job meanwhile
	}
	if err != nil {
		return fmt.Errorf("re-reading job: %w", err)
	}
	// A validate River job stuck in running is cancelled, so that it cannot
	// come back to life next to the new one.
	if err := riverjob.CancelRunningValidateTx(ctx, tx, jobID); err != nil {
		return err
	}
	detail := map[string]any{"tries": tries, "old_river_job_state": lastState, "last_error": lastE}
	if tries >= j.cfg.MaxRevalidate {
		reason := fmt.Sprintf("validation did not complete: %d validate River jobs ended without validating the job", tries+1)
		if lastE != nil {
			reason += "; last error: " + *lastE
		}
		if _, err := tx.Exec(ctx, `UPDATE kiln.job SET status = 'invalid', reason = $2, validated_at = now(), finished_at = now()
			WHERE id = $1 AND status = 'submitted'`, jobID, reason); err != nil {
			return fmt.Errorf("marking the job invalid: %w", err)
		}
		detail["action"], detail["reason"] = "invalidated", reason
		d.JobsInvalidated++
	} else {
		res, err := j.river.InsertTx(ctx, tx, riverjob.ValidateArgs{JobID: jobID}, nil)
		if err != nil {
			return fmt.Errorf("inserting a validate River job: %w", err)
		}
		detail["action"], detail["river_job_id"] = "inserted", res.Job.ID
		detail["reason"] = "submitted job had no live validate River job"
		d.ValidationsRequeued++
	}
	return record(ctx, tx, event{Kind: "janitor.revalidate", JobID: &jobID, Detail: detail})
}
