package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/jobs"
	"github.com/kiln-build/kiln/schema"
)

// A builder that starts may find tasks still building in its name: a
// previous run of it crashed (kill -9, OOM, power) in the middle of their
// builds. Those builds are certainly dead, provided no other process of the
// same name runs. Rather than leave them until the janitor's horizon has
// passed, the builder gives them back at once, exactly as the janitor would
// (the attempt closed as lost, counted in lost_count, the task pending again
// or ended as lost past MaxLost, its River job available again at once).
//
// "No other process of the same name" is made sure by a session advisory
// lock on the builder's name, held on a connection of its own for as long
// as the daemon runs: a crashed run's connection closes with it, and the
// server drops its lock. A builder that cannot get the lock (a second daemon
// with the same name, or a previous run that is paused rather than dead, or
// whose connection the server has not yet seen close) leaves such tasks to
// the janitor.

// nameLockSQL takes the advisory lock of a builder's name.
const nameLockSQL = "SELECT pg_try_advisory_lock(hashtextextended('kiln-builder:' || $1, 0))"

// nameLockWait is how long a starting builder waits for its name's lock, so
// that the server can notice that the previous run's connection closed.
const nameLockWait = 10 * time.Second

// lockName takes the advisory lock of the builder's name, waiting up to
// nameLockWait, and reports whether it holds it.
func (b *Builder) lockName(ctx context.Context) bool {
	deadline := time.Now().Add(nameLockWait)
	for {
		held, err := b.tryNameLock(ctx)
		if held {
			return true
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			b.log.Warn("another session holds this builder name's lock (another kiln-builder with this name, or a previous run that is not dead); tasks it left building are left to the janitor",
				"name", b.cfg.Name, "err", err)
			return false
		}
		select {
		case <-ctx.Done():
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// tryNameLock tries once to take the lock on a new connection.
func (b *Builder) tryNameLock(ctx context.Context) (bool, error) {
	conn, err := b.db.Acquire(ctx)
	if err != nil {
		return false, err
	}
	// The lock belongs to the session: the connection never goes back to
	// the pool.
	c := conn.Hijack()
	var held bool
	if err := c.QueryRow(ctx, nameLockSQL, b.cfg.Name).Scan(&held); err != nil || !held {
		c.Close(context.Background())
		return false, err
	}
	b.nameLock = c
	return true, nil
}

// keepNameLock checks the lock's connection and takes the lock again when
// the connection was lost (a database restart). Only the heartbeat loop
// calls it.
func (b *Builder) keepNameLock(ctx context.Context) {
	if b.nameLock != nil {
		if _, err := b.nameLock.Exec(ctx, "SELECT 1"); err == nil {
			return
		}
		b.nameLock.Close(context.Background())
		b.nameLock = nil
	}
	held, err := b.tryNameLock(ctx)
	if !held && err == nil && !b.nameLockWarned {
		b.log.Warn("another session holds this builder name's lock: is a second kiln-builder running with this name?", "name", b.cfg.Name)
		b.nameLockWarned = true
	}
}

// unlockName closes the lock's connection, which releases the lock.
func (b *Builder) unlockName() {
	if b.nameLock != nil {
		b.nameLock.Close(context.Background())
		b.nameLock = nil
	}
}

// leftTask is a task a previous run left building.
type leftTask struct {
	ID      int64
	JobID   int64
	Attempt int
}

// recoverTasks gives back the tasks a previous run of this builder left
// building, each in one transaction fenced by its attempt. It is called
// only while holding the name's lock, before the builder takes any task.
func (b *Builder) recoverTasks(ctx context.Context) error {
	rows, err := b.db.Query(ctx, `SELECT id, job_id, attempt FROM kiln.task
		WHERE builder = $1 AND status = 'building' ORDER BY id`, b.cfg.Name)
	if err != nil {
		return fmt.Errorf("finding tasks left by a previous run: %w", err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowToStructByPos[leftTask])
	if err != nil {
		return fmt.Errorf("finding tasks left by a previous run: %w", err)
	}
	for _, t := range left {
		err := retry(ctx, b.log, "giving back a task left by a previous run", func(ctx context.Context) error {
			return b.recoverTask(ctx, t)
		})
		if err != nil && !errors.Is(err, errStale) {
			return err
		}
	}
	return nil
}

// riverInsertChannel is the channel River's clients LISTEN on for new
// work in a queue.
const riverInsertChannel = schema.RiverSchema + ".river_insert"

func (b *Builder) recoverTask(ctx context.Context, t leftTask) error {
	tx, err := b.db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, "SELECT kiln.lock_job($1)", t.JobID); err != nil {
		return fmt.Errorf("locking job %d: %w", t.JobID, err)
	}
	var (
		lostCount int
		riverJob  *int64
	)
	err = tx.QueryRow(ctx, `SELECT lost_count, river_job_id FROM kiln.task
		WHERE id = $1 AND attempt = $2 AND builder = $3 AND status = 'building' FOR UPDATE`,
		t.ID, t.Attempt, b.cfg.Name).Scan(&lostCount, &riverJob)
	if errors.Is(err, pgx.ErrNoRows) {
		return errStale // the janitor or a cancel was quicker
	}
	if err != nil {
		return fmt.Errorf("re-reading task %d: %w", t.ID, err)
	}
	lost := lostCount + 1
	why := fmt.Sprintf("builder %s restarted: the build of attempt %d died with its previous run", b.cfg.Name, t.Attempt)
	if _, err := tx.Exec(ctx, `UPDATE kiln.attempt SET status = 'lost', finished_at = now(), reason = $3
		WHERE task_id = $1 AND attempt = $2 AND status = 'building'`, t.ID, t.Attempt, why); err != nil {
		return fmt.Errorf("closing attempt %d of task %d: %w", t.Attempt, t.ID, err)
	}
	detail := map[string]any{"reason": why, "lost_count": lost, "max_lost": b.cfg.MaxLost, "river_job_id": riverJob}
	newStatus := "pending"
	if lost > b.cfg.MaxLost {
		newStatus = "lost"
		reason := fmt.Sprintf("lost %d times (more than %d); last time %s", lost, b.cfg.MaxLost, why)
		detail["reason"] = reason
		if _, err := tx.Exec(ctx, `UPDATE kiln.task SET status = 'lost', builder = NULL, lost_count = $2,
			finished_at = now(), reason = $3 WHERE id = $1`, t.ID, lost, reason); err != nil {
			return fmt.Errorf("ending task %d as lost: %w", t.ID, err)
		}
		tag, err := tx.Exec(ctx, `UPDATE river.river_job SET state = 'cancelled', finalized_at = now()
			WHERE id = $1 AND state NOT IN ('cancelled', 'completed', 'discarded')`, riverJob)
		if err != nil {
			return fmt.Errorf("cancelling the River job of task %d: %w", t.ID, err)
		}
		detail["river_job_cancelled"] = tag.RowsAffected() > 0
	} else {
		if _, err := tx.Exec(ctx, `UPDATE kiln.task SET status = 'pending', builder = NULL, lost_count = $2, reason = $3
			WHERE id = $1`, t.ID, lost, why); err != nil {
			return fmt.Errorf("putting task %d back to pending: %w", t.ID, err)
		}
		how, err := makeAvailable(ctx, tx, t.ID, riverJob)
		if err != nil {
			return err
		}
		detail["river_job"] = how
	}
	if _, err := tx.Exec(ctx, `INSERT INTO kiln.event (kind, job_id, task_id, attempt, builder, old_status, new_status, detail)
		VALUES ('builder.recover', $1, $2, $3, $4, 'building', $5, $6)`,
		t.JobID, t.ID, t.Attempt, b.cfg.Name, newStatus, detail); err != nil {
		return fmt.Errorf("recording the recovery of task %d: %w", t.ID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("giving back task %d: %w", t.ID, err)
	}
	b.log.Info("gave back a task left building by a previous run", "task", t.ID, "attempt", t.Attempt,
		"status", newStatus, "lost_count", lost)
	return nil
}

// makeAvailable makes a task's River job available again at once and wakes
// the builders of its queue, as the janitor does. A River job that no
// longer exists (River deletes finished ones after a while) cannot be
// re-inserted by a builder, which may not insert River jobs: the janitor's
// consistency check gives the pending task a new one at its next round.
func makeAvailable(ctx context.Context, tx pgx.Tx, task int64, riverJob *int64) (string, error) {
	if riverJob == nil {
		return "missing", nil
	}
	var queue string
	err := tx.QueryRow(ctx, `UPDATE river.river_job
		SET state = 'available', scheduled_at = now(), finalized_at = NULL,
		    max_attempts = greatest(max_attempts, attempt + 1)
		WHERE id = $1 AND kind = $2 AND args->>'task_id' = $3::bigint::text
		RETURNING queue`, *riverJob, jobs.BuildArgs{}.Kind(), task).Scan(&queue)
	if errors.Is(err, pgx.ErrNoRows) {
		return "missing", nil
	}
	if err != nil {
		return "", fmt.Errorf("making River job %d available: %w", *riverJob, err)
	}
	payload, _ := json.Marshal(map[string]string{"queue": queue})
	if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", riverInsertChannel, string(payload)); err != nil {
		return "", fmt.Errorf("waking builders of queue %s: %w", queue, err)
	}
	return "made_available", nil
}
