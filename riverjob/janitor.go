package riverjob

import (
	"context"
	"fmt"
	"time"

	"github.com/riverqueue/river"
)

// Janitor is the work behind the janitor's River jobs (internal/janitor
// implements it). Each call is one round and records it.
type Janitor interface {
	Upkeep(ctx context.Context) error
	Prune(ctx context.Context) error
}

// JanitorUpkeepArgs asks for one round of upkeep: lost and runaway tasks,
// silent builders, consistency of tasks, jobs and River jobs.
type JanitorUpkeepArgs struct{}

// Kind implements river.JobArgs.
func (JanitorUpkeepArgs) Kind() string { return KindJanitorUpkeep }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (JanitorUpkeepArgs) InsertOpts() river.InsertOpts { return janitorInsertOpts() }

// JanitorPruneArgs asks for one round of retention: logs, artifacts, blobs
// and (when configured) old jobs.
type JanitorPruneArgs struct{}

// Kind implements river.JobArgs.
func (JanitorPruneArgs) Kind() string { return KindJanitorPrune }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (JanitorPruneArgs) InsertOpts() river.InsertOpts { return janitorInsertOpts() }

// janitorInsertOpts: a round that fails is not retried (the next period
// brings the next round), and at most one round of a kind is queued per
// period, so rounds do not pile up while no janitor works them. (Not unique
// by state: a round left running by a janitor that died would then block
// its kind until River rescued it.)
func janitorInsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueJanitor, MaxAttempts: 1}
}

// JanitorUpkeepWorker works JanitorUpkeepArgs.
type JanitorUpkeepWorker struct {
	river.WorkerDefaults[JanitorUpkeepArgs]
	Janitor Janitor
	// Limit is the longest one round may take.
	Limit time.Duration
}

// Work runs one upkeep round.
func (w *JanitorUpkeepWorker) Work(ctx context.Context, _ *river.Job[JanitorUpkeepArgs]) error {
	if err := w.Janitor.Upkeep(ctx); err != nil {
		return fmt.Errorf("janitor upkeep: %w", err)
	}
	return nil
}

// Timeout implements river.Worker.
func (w *JanitorUpkeepWorker) Timeout(*river.Job[JanitorUpkeepArgs]) time.Duration { return w.Limit }

// JanitorPruneWorker works JanitorPruneArgs.
type JanitorPruneWorker struct {
	river.WorkerDefaults[JanitorPruneArgs]
	Janitor Janitor
	// Limit is the longest one round may take.
	Limit time.Duration
}

// Work runs one retention round.
func (w *JanitorPruneWorker) Work(ctx context.Context, _ *river.Job[JanitorPruneArgs]) error {
	if err := w.Janitor.Prune(ctx); err != nil {
		return fmt.Errorf("janitor retention: %w", err)
	}
	return nil
}

// Timeout implements river.Worker.
func (w *JanitorPruneWorker) Timeout(*river.Job[JanitorPruneArgs]) time.Duration { return w.Limit }

// JanitorPeriodicJobs are the janitor's schedule: an upkeep round every
// upkeepEvery and a retention round every pruneEvery, both also at start.
// Only the elected River leader enqueues them, so several janitors may run.
func JanitorPeriodicJobs(upkeepEvery, pruneEvery time.Duration) []*river.PeriodicJob {
	once := func(every time.Duration) *river.InsertOpts {
		return &river.InsertOpts{UniqueOpts: river.UniqueOpts{ByPeriod: every}}
	}
	return []*river.PeriodicJob{
		river.NewPeriodicJob(river.PeriodicInterval(upkeepEvery),
			func() (river.JobArgs, *river.InsertOpts) { return JanitorUpkeepArgs{}, once(upkeepEvery) },
			&river.PeriodicJobOpts{ID: KindJanitorUpkeep, RunOnStart: true}),
		river.NewPeriodicJob(river.PeriodicInterval(pruneEvery),
			func() (river.JobArgs, *river.InsertOpts) { return JanitorPruneArgs{}, once(pruneEvery) },
			&river.PeriodicJobOpts{ID: KindJanitorPrune, RunOnStart: true}),
	}
}

// WorkedElsewhere is registered by a client for a kind it never works (it
// does not serve that kind's queue) so that, as River's leader, its stuck
// job rescuer retries such River jobs instead of discarding them as unknown.
type WorkedElsewhere[T river.JobArgs] struct {
	river.WorkerDefaults[T]
}

// Work is never called for a client that does not serve the kind's queue;
// if it is, the River job fails and is retried by River.
func (WorkedElsewhere[T]) Work(context.Context, *river.Job[T]) error {
	var args T
	return fmt.Errorf("kind %q of River job is not worked by this process", args.Kind())
}
