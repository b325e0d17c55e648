package janitor

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/riverjob"
)

// taskRow is what giving a task a River job needs to know of it.
type taskRow struct {
	ID         int64
	JobID      int64
	RiverJobID *int64
	Platform   string
	Priority   int16
}

// giveRiverJob gives a pending task a new build River job (River's own
// insert, with its job's priority), records it as the task's
// (task.LinkRiverJob) and writes a janitor.repair_river event. oldState is
// the state of the River job it replaces, if any.
func (j *Janitor) giveRiverJob(ctx context.Context, tx pgx.Tx, t taskRow, oldState *string, oldCancelled *bool, why string) error {
	res, err := j.river.InsertTx(ctx, tx, riverjob.BuildArgs{TaskID: t.ID, JobID: t.JobID, Platform: t.Platform},
		&river.InsertOpts{Priority: int(t.Priority)})
	if err != nil {
		return fmt.Errorf("inserting a build River job: %w", err)
	}
	ok, err := task.LinkRiverJob(ctx, tx, t.ID, res.Job.ID)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("task %d is no longer pending", t.ID)
	}
	detail := map[string]any{"action": "inserted", "river_job_id": res.Job.ID, "old_river_job_id": t.RiverJobID,
		"old_river_job_state": oldState, "reason": why}
	if oldCancelled != nil {
		detail["old_river_job_cancelled"] = *oldCancelled
	}
	return record(ctx, tx, event{Kind: "janitor.repair_river", JobID: &t.JobID, TaskID: &t.ID, Detail: detail})
}

// cancelRiverJob cancels a River job that has not finished (a running one
// too: its builder's River client will find it no longer running and leave
// it). It reports whether it changed anything.
func cancelRiverJob(ctx context.Context, tx pgx.Tx, id *int64) (bool, error) {
	if id == nil {
		return false, nil
	}
	return riverjob.CancelTx(ctx, tx, *id)
}
