package janitor

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/task"
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
// the grace, whether or not their builder still heart-beats (task.TimeOut):
// attempt and task become timed_out, the River job is cancelled. The
// builder finds its next heartbeat refused and kills the build.
func (j *Janitor) endRunaway(ctx context.Context, c *Counts) error {
	cs, err := j.candidates(ctx, `SELECT t.id, t.job_id FROM kiln.task t JOIN kiln.platform p ON p.name = t.platform
		WHERE t.status = 'building' AND t.started_at < now() - p.timeout - make_interval(secs => $1)
		ORDER BY t.started_at LIMIT $2`, secs(j.cfg.TimeoutGrace), j.cfg.Batch)
	if err != nil {
		return fmt.Errorf("finding runaway builds: %w", err)
	}
	return j.forEach(ctx, c, "ending a runaway build", cs, func(tx pgx.Tx, cand candidate, d *Counts) error {
		if _, ok, err := task.TimeOut(ctx, tx, cand.TaskID, j.cfg.TimeoutGrace); err != nil || !ok {
			return err // an error, or finished or taken care of meanwhile
		}
		d.TimedOut++
		return nil
	})
}

// takeBackLost takes tasks from builders that stopped heart-beating
// (task.TakeBackLost): the attempt is closed as lost, and the task goes
// back to pending with its River job available again (or a new one), or
// ends as lost when it was lost more often than the database's max_lost.
// This does not wait for River's rescue of stuck River jobs, which is set
// beyond the longest build.
func (j *Janitor) takeBackLost(ctx context.Context, c *Counts) error {
	cs, err := j.candidates(ctx, `SELECT t.id, t.job_id FROM kiln.task t
		WHERE t.status = 'building' AND t.heartbeat_at < now() - make_interval(secs => $1)
		ORDER BY t.heartbeat_at LIMIT $2`, secs(j.cfg.Horizon), j.cfg.Batch)
	if err != nil {
		return fmt.Errorf("finding lost tasks: %w", err)
	}
	return j.forEach(ctx, c, "taking back a lost task", cs, func(tx pgx.Tx, cand candidate, d *Counts) error {
		s, ok, err := task.TakeBackLost(ctx, tx, cand.TaskID, j.cfg.Horizon)
		if err != nil || !ok {
			return err // an error, or it heart-beat, finished, or another janitor took it
		}
		if !s.Requeued() {
			d.Lost++
			return nil
		}
		if s.NeedsRiverJob() {
			t := taskRow{ID: cand.TaskID, JobID: cand.JobID, RiverJobID: s.RiverJobID, Platform: s.Platform, Priority: s.Priority}
			if err := j.giveRiverJob(ctx, tx, t, nil, nil, "requeued task had no River job"); err != nil {
				return err
			}
			d.RiverJobsInserted++
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
