package split

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/riverjob"
)

// NewRiverClient returns the River client kiln-splitter runs: the validate
// worker on queue incoming, at most workers validations at once. Its River
// client ID is River's own, so the janitor does not take over its River
// jobs when it dies (Run's client holds a lock for that: lock.go).
func NewRiverClient(db *pgxpool.Pool, s *Splitter, log *slog.Logger, workers int) (*riverjob.Client, error) {
	return newRiverClient(db, s, log, workers, "")
}

func newRiverClient(db *pgxpool.Pool, s *Splitter, log *slog.Logger, workers int, id string) (*riverjob.Client, error) {
	ws := river.NewWorkers()
	river.AddWorker(ws, &ValidateWorker{DB: db, Splitter: s, Log: log})
	return riverjob.NewSplitterClient(db, ws, workers, id, log)
}

// ValidateWorker validates a submitted job and splits it into tasks (the
// splitter's River worker). The verdict, the tasks, their build River jobs
// and the completion of the validate River job are one transaction, so a
// retried validate River job finds the job no longer submitted and does
// nothing.
type ValidateWorker struct {
	river.WorkerDefaults[riverjob.ValidateArgs]
	DB       *pgxpool.Pool
	Splitter *Splitter
	Log      *slog.Logger
}

// Work implements river.Worker.
func (w *ValidateWorker) Work(ctx context.Context, job *river.Job[riverjob.ValidateArgs]) error {
	id := job.Args.JobID
	v, err := w.Splitter.Check(ctx, id)
	if err != nil {
		return fmt.Errorf("validating job %d: %w", id, err)
	}
	client := river.ClientFromContext[pgx.Tx](ctx)
	var tasks int
	err = pgx.BeginFunc(ctx, w.DB, func(tx pgx.Tx) error {
		pending, err := Apply(ctx, tx, v)
		if err != nil {
			return err
		}
		tasks = len(pending)
		if len(pending) > 0 {
			params := make([]river.InsertManyParams, len(pending))
			for i, p := range pending {
				params[i] = river.InsertManyParams{
					Args:       riverjob.BuildArgs{TaskID: p.TaskID, JobID: id, Platform: p.Platform},
					InsertOpts: &river.InsertOpts{Priority: v.Priority},
				}
			}
			res, err := client.InsertManyTx(ctx, tx, params)
			if err != nil {
				return fmt.Errorf("enqueueing the tasks of job %d: %w", id, err)
			}
			for i, r := range res {
				if err := task.SetRiverJob(ctx, tx, pending[i].TaskID, r.Job.ID); err != nil {
					return err
				}
			}
		}
		if _, err := river.JobCompleteTx[*riverpgxv5.Driver](ctx, tx, job); err != nil {
			return fmt.Errorf("completing the validate River job of job %d: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case v.Done:
		w.Log.Info("job no longer waits for validation", "job", id)
	case !v.Valid():
		w.Log.Info("job is invalid", "job", id, "reason", v.Reason())
	default:
		w.Log.Info("job split", "job", id, "tasks", len(v.Tasks), "queued", tasks)
	}
	return nil
}
