package riverjob

import (
	"context"
	"time"

	"github.com/riverqueue/river"
)

// TaskBuilder builds tasks; kiln-builder's daemon (internal/builder)
// implements it. It is an interface so that this package, which every
// process imports for the job kinds, does not depend on the builder.
type TaskBuilder interface {
	// BuildTimeout is how long a build on platform may run.
	BuildTimeout(platform string) time.Duration
	// BuildTask takes the task, builds it and finishes it. Its error is the
	// River job's outcome: nil completes it, river.JobSnooze(0) gives it
	// back to the queue at once without spending a River attempt.
	BuildTask(ctx context.Context, args BuildArgs) error
}

// BuildWorker works build River jobs.
type BuildWorker struct {
	river.WorkerDefaults[BuildArgs]
	Builder TaskBuilder
}

// Work implements river.Worker.
func (w *BuildWorker) Work(ctx context.Context, job *river.Job[BuildArgs]) error {
	return w.Builder.BuildTask(ctx, job.Args)
}

// Timeout implements river.Worker: a build River job may run as long as its
// platform's timeout.
func (w *BuildWorker) Timeout(job *river.Job[BuildArgs]) time.Duration {
	return w.Builder.BuildTimeout(job.Args.Platform)
}
