package jobs

import (
	"context"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/rivertype"
)

// EnvironmentArgs asks a builder of the platform to make the platform's
// next build environment (the first, or a refresh) from the spec in
// kiln.platform_environment and install it (internal/environment).
type EnvironmentArgs struct {
	Platform string `json:"platform"`
}

// Kind implements river.JobArgs.
func (EnvironmentArgs) Kind() string { return "environment" }

// InsertOpts implements river.JobArgsWithInsertOpts. It goes to the
// platform's build queue, so only builders of the platform take it; at most
// one per platform waits or runs at a time.
func (a EnvironmentArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: BuildQueue(a.Platform), MaxAttempts: 3, UniqueOpts: river.UniqueOpts{
		ByArgs: true,
		ByState: []rivertype.JobState{rivertype.JobStateAvailable, rivertype.JobStatePending, rivertype.JobStateRetryable,
			rivertype.JobStateRunning, rivertype.JobStateScheduled},
	}}
}

// EnvironmentMaker makes and installs a platform's next environment
// (internal/environment.Maker implements it).
type EnvironmentMaker interface {
	MakeEnvironment(ctx context.Context, platform string) error
}

// EnvironmentWorker works environment River jobs.
type EnvironmentWorker struct {
	river.WorkerDefaults[EnvironmentArgs]
	Maker EnvironmentMaker
}

// Work implements river.Worker.
func (w *EnvironmentWorker) Work(ctx context.Context, job *river.Job[EnvironmentArgs]) error {
	return w.Maker.MakeEnvironment(ctx, job.Args.Platform)
}

// Timeout implements river.Worker: mmdebstrap takes about a minute; an
// hour allows for a slow mirror.
func (w *EnvironmentWorker) Timeout(*river.Job[EnvironmentArgs]) time.Duration { return time.Hour }
