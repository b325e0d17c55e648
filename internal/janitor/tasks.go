package janitor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// candidate is a task found by a round's first, lock-free look. It is acted
// on only after it has been re-read under lock (job row, then task row) and
// still qualifies.
type candidate struct {
	TaskID int64
	JobID  int64
}

func (j *Janitor) candidates(ctx context.Context, sql string, args ...any) ([]candidate, error) {
	rows, err := j.db.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowToStructByPos[candidate])
}

// forEach runs fn on every candidate in its own transaction. A failure is
// logged and counted in errs; the others go on.
func (j *Janitor) forEach(ctx context.Context, c *Counts, what string, cs []candidate, fn func(pgx.Tx, candidate, *Counts) error) error {
	var errs []error
	for _, cand := range cs {
		if err := j.inTx(ctx, c, func(tx pgx.Tx, d *Counts) error { return fn(tx, cand, d) }); err != nil {
			j.log.Warn(what+" failed; retrying next round", "task", cand.TaskID, "job", cand.JobID, "err", err)
			errs = append(errs, fmt.Errorf("task %d: %w", cand.TaskID, err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return errors.Join(errs...)
}

// endRunaway ends tasks building longer than their platform's timeout plus
// the grace, whether or not their builder still heart-beats: attempt and
// task become timed_out, the River job is cancelled. The builder finds its
// next heartbeat refused and kills the build.
func (j *Janitor) endRunaway(ctx context.Context, c *Counts) error {
	const overdue = `t.status = 'building' AND t.started_at < now() - p.timeout - make_interval(secs => $1)`
	cs, err := j.candidates(ctx, `SELECT t.id, t.job_id FROM kiln.task t JOIN kiln.platform p ON p.name = t.platform
		WHERE `+overdue+` ORDER BY t.started_at LIMIT $2`, secs(j.cfg.TimeoutGrace), j.cfg.Batch)
	if err != nil {
		return fmt.Errorf("finding runaway builds: %w", err)
	}
	return j.forEach(ctx, c, "ending a runaway build", cs, func(tx pgx.Tx, cand candidate, d *Counts) error {
		if _, err := lockJob(ctx, tx, cand.JobID); err != nil {
			return err
		}
		var (
			attempt  int32
			builder  string
			riverJob *int64
			timeout  seconds
			ran      seconds
		)
		err := tx.QueryRow(ctx, `SELECT t.attempt, t.builder, t.river_job_id,
				extract(epoch FROM p.timeout)::float8, extract(epoch FROM now() - t.started_at)::float8
			FROM kiln.task t JOIN kiln.platform p ON p.name = t.platform
			WHERE t.id = $2 AND `+overdue+` FOR UPDATE OF t`, secs(j.cfg.TimeoutGrace), cand.TaskID).
			Scan(&attempt, &builder, &riverJob, &timeout, &ran)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // finished or taken care of meanwhile
		}
		if err != nil {
			return fmt.Errorf("re-reading task: %w", err)
		}
		reason := fmt.Sprintf("ran %s, past the platform timeout %s plus grace %s; ended by the janitor",
			ran.duration().Round(time.Second), timeout.duration(), j.cfg.TimeoutGrace)
		if _, err := tx.Exec(ctx, `UPDATE kiln.attempt SET status = 'timed_out', finished_at = now(), reason = $3
			WHERE task_id = $1 AND attempt = $2 AND status = 'building'`, cand.TaskID, attempt, reason); err != nil {
			return fmt.Errorf("closing attempt %d: %w", attempt, err)
		}
		if _, err := tx.Exec(ctx, `UPDATE kiln.task SET status = 'timed_out', builder = NULL, finished_at = now(), reason = $2
			WHERE id = $1`, cand.TaskID, reason); err != nil {
			return fmt.Errorf("ending task: %w", err)
		}
		cancelled, err := cancelRiverJob(ctx, tx, riverJob)
		if err != nil {
			return err
		}
		if err := record(ctx, tx, event{Kind: "janitor.timeout", JobID: &cand.JobID, TaskID: &cand.TaskID,
			Attempt: &attempt, Builder: &builder, OldStatus: ptr("building"), NewStatus: ptr("timed_out"),
			Detail: map[string]any{"reason": reason, "ran_seconds": int64(ran),
				"river_job_id": riverJob, "river_job_cancelled": cancelled}}); err != nil {
			return err
		}
		d.TimedOut++
		return nil
	})
}

// takeBackLost takes tasks from builders that stopped heart-beating: the
// attempt is closed as lost, and the task goes back to pending with its
// River job available again, or ends as lost when it was lost too often.
// This does not wait for River's rescue of stuck River jobs, which is set
// beyond the longest build.
func (j *Janitor) takeBackLost(ctx context.Context, c *Counts) error {
	const silent = `t.status = 'building' AND t.heartbeat_at < now() - make_interval(secs => $1)`
	cs, err := j.candidates(ctx, `SELECT t.id, t.job_id FROM kiln.task t WHERE `+silent+`
		ORDER BY t.heartbeat_at LIMIT $2`, secs(j.cfg.Horizon), j.cfg.Batch)
	if err != nil {
		return fmt.Errorf("finding lost tasks: %w", err)
	}
	return j.forEach(ctx, c, "taking back a lost task", cs, func(tx pgx.Tx, cand candidate, d *Counts) error {
		if _, err := lockJob(ctx, tx, cand.JobID); err != nil {
			return err
		}
		var (
			t        taskRow
			lastBeat seconds
		)
		err := tx.QueryRow(ctx, `SELECT t.attempt, t.builder, t.lost_count, t.river_job_id, t.platform, j.priority,
				extract(epoch FROM now() - t.heartbeat_at)::float8
			FROM kiln.task t JOIN kiln.job j ON j.id = t.job_id
			WHERE t.id = $2 AND `+silent+` FOR UPDATE OF t`, secs(j.cfg.Horizon), cand.TaskID).
			Scan(&t.Attempt, &t.Builder, &t.LostCount, &t.RiverJobID, &t.Platform, &t.Priority, &lastBeat)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil // it heart-beat, finished, or another janitor took it
		}
		if err != nil {
			return fmt.Errorf("re-reading task: %w", err)
		}
		t.ID, t.JobID = cand.TaskID, cand.JobID
		lost := t.LostCount + 1
		why := fmt.Sprintf("builder %s went silent: no heartbeat for %s (horizon %s)",
			t.Builder, lastBeat.duration().Round(time.Second), j.cfg.Horizon)
		if _, err := tx.Exec(ctx, `UPDATE kiln.attempt SET status = 'lost', finished_at = now(), reason = $3
			WHERE task_id = $1 AND attempt = $2 AND status = 'building'`, t.ID, t.Attempt, why); err != nil {
			return fmt.Errorf("closing attempt %d: %w", t.Attempt, err)
		}
		detail := map[string]any{"reason": why, "lost_count": lost, "max_lost": j.cfg.MaxLost,
			"silent_seconds": int64(lastBeat)}
		if lost > j.cfg.MaxLost {
			reason := fmt.Sprintf("lost %d times (more than %d); last time %s", lost, j.cfg.MaxLost, why)
			if _, err := tx.Exec(ctx, `UPDATE kiln.task SET status = 'lost', builder = NULL, lost_count = $2,
				finished_at = now(), reason = $3 WHERE id = $1`, t.ID, lost, reason); err != nil {
				return fmt.Errorf("ending task as lost: %w", err)
			}
			cancelled, err := cancelRiverJob(ctx, tx, t.RiverJobID)
			if err != nil {
				return err
			}
			detail["reason"], detail["river_job_id"], detail["river_job_cancelled"] = reason, t.RiverJobID, cancelled
			if err := record(ctx, tx, event{Kind: "janitor.lost", JobID: &t.JobID, TaskID: &t.ID, Attempt: &t.Attempt,
				Builder: &t.Builder, OldStatus: ptr("building"), NewStatus: ptr("lost"), Detail: detail}); err != nil {
				return err
			}
			d.Lost++
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE kiln.task SET status = 'pending', builder = NULL, lost_count = $2, reason = $3
			WHERE id = $1`, t.ID, lost, why); err != nil {
			return fmt.Errorf("putting task back to pending: %w", err)
		}
		how, riverJob, err := j.makeAvailable(ctx, tx, t)
		if err != nil {
			return err
		}
		if how == riverJobInserted {
			d.RiverJobsInserted++
		}
		detail["river_job_id"], detail["river_job"] = riverJob, string(how)
		if err := record(ctx, tx, event{Kind: "janitor.requeue", JobID: &t.JobID, TaskID: &t.ID, Attempt: &t.Attempt,
			Builder: &t.Builder, OldStatus: ptr("building"), NewStatus: ptr("pending"), Detail: detail}); err != nil {
			return err
		}
		d.Requeued++
		return nil
	})
}

// markBuildersOffline marks builders offline whose own heartbeat is older
// than the horizon. It runs after takeBackLost in its own statement rather
// than in each requeue's transaction, so that the janitor never holds a task
// while waiting for a builder row that a heart-beating builder holds (which
// locks its builder row before its tasks).
func (j *Janitor) markBuildersOffline(ctx context.Context, c *Counts) error {
	return j.inTx(ctx, c, func(tx pgx.Tx, d *Counts) error {
		rows, err := tx.Query(ctx, `UPDATE kiln.builder SET state = 'offline'
			WHERE state = 'online' AND (heartbeat_at IS NULL OR heartbeat_at < now() - make_interval(secs => $1))
			RETURNING name, extract(epoch FROM now() - heartbeat_at)::bigint`, secs(j.cfg.Horizon))
		if err != nil {
			return fmt.Errorf("marking builders offline: %w", err)
		}
		type offline struct {
			Name   string
			Silent *int64
		}
		bs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[offline])
		if err != nil {
			return fmt.Errorf("marking builders offline: %w", err)
		}
		for _, b := range bs {
			if err := record(ctx, tx, event{Kind: "janitor.offline", Builder: &b.Name, OldStatus: ptr("online"),
				NewStatus: ptr("offline"), Detail: map[string]any{"silent_seconds": b.Silent,
					"reason": fmt.Sprintf("no heartbeat within the horizon %s", j.cfg.Horizon)}}); err != nil {
				return err
			}
			silentFor := "never heart-beat"
			if b.Silent != nil {
				silentFor = (time.Duration(*b.Silent) * time.Second).String()
			}
			j.log.Info("builder marked offline", "builder", b.Name, "silent", silentFor)
		}
		d.BuildersOffline += len(bs)
		return nil
	})
}
