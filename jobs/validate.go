package jobs

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/kiln-build/kiln/internal/split"
	"github.com/kiln-build/kiln/internal/task"
)

// SplitterFetchCooldown is the least time between two fetches of the
// splitter's River client (River's default is 100 ms): queue incoming sees
// few River jobs, and each waits for a person, so it fetches eagerly.
const SplitterFetchCooldown = 10 * time.Millisecond

// NewSplitterClient returns the River client kiln-splitter runs: it works
// queue incoming with the validate worker (at most workers at once) and
// inserts build River jobs for the builders.
func NewSplitterClient(db *pgxpool.Pool, s *split.Splitter, log *slog.Logger, workers int) (*river.Client[pgx.Tx], error) {
	ws := river.NewWorkers()
	river.AddWorker(ws, &ValidateWorker{DB: db, Splitter: s, Log: log})
	rc, err := river.NewClient(riverpgxv5.New(db), &river.Config{
		Schema:        "river",
		Queues:        map[string]river.QueueConfig{QueueIncoming: {MaxWorkers: workers}},
		Workers:       ws,
		Logger:        log,
		FetchCooldown: SplitterFetchCooldown,
		// Reindexing needs to own the tables; the splitter does not.
		ReindexerIndexNames: []string{},
		// It inserts build River jobs, which builders work.
		SkipUnknownJobCheck: true,
		// River's leader runs the periodic jobs; kiln-janitor must be it
		// (docs/janitor.md), so the splitter never stands for election.
		LeaderElectionDisabled: true,
	})
	if err != nil {
		return nil, fmt.Errorf("setting up the River client: %w", err)
	}
	return rc, nil
}

// ValidateWorker validates a submitted job and splits it into tasks (the
// splitter's River worker). The verdict, the tasks, their build River jobs
// and the completion of the validate River job are one transaction, so a
// retried validate River job finds the job no longer submitted and does
// nothing.
type ValidateWorker struct {
	river.WorkerDefaults[ValidateArgs]
	DB       *pgxpool.Pool
	Splitter *split.Splitter
	Log      *slog.Logger
}

// Work implements river.Worker.
func (w *ValidateWorker) Work(ctx context.Context, job *river.Job[ValidateArgs]) error {
	id := job.Args.JobID
	v, err := w.Splitter.Check(ctx, id)
	if err != nil {
		return fmt.Errorf("validating job %d: %w", id, err)
	}
	client := river.ClientFromContext[pgx.Tx](ctx)
	var tasks int
	err = pgx.BeginFunc(ctx, w.DB, func(tx pgx.Tx) error {
		pending, err := split.Apply(ctx, tx, v)
		if err != nil {
			return err
		}
		tasks = len(pending)
		if len(pending) > 0 {
			params := make([]river.InsertManyParams, len(pending))
			for i, p := range pending {
				params[i] = river.InsertManyParams{
					Args:       BuildArgs{TaskID: p.TaskID, JobID: id, Platform: p.Platform},
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
