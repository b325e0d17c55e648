// Package riverjob owns kiln's use of River, the job queue: the kinds of
// River job (their arguments and queues), the schema River's tables live
// in, the River client of each role (NewSplitterClient, NewBuilderClient,
// NewJanitorClient, NewReporterClient, NewInserter) with its options decided here once, and
// every change to a River job that River's own API cannot make (sql.go).
//
// A River job is queue work, not a kiln job: kiln's jobs and tasks are rows
// in kiln.job and kiln.task (internal/task owns their protocol). A River job
// carries only ids; everything else is read from the kiln tables in the
// worker's transaction, so a retried River job always sees the truth.
//
// This package imports no kiln domain package: workers with domain logic
// live with their domain (the validate worker in internal/split) or reach
// it through an interface declared here (TaskBuilder, Janitor).
package riverjob

import (
	"github.com/riverqueue/river"

	"github.com/kiln-build/kiln/schema"
)

// Schema is the Postgres schema that holds River's tables (created and
// migrated by package schema).
const Schema = schema.RiverSchema

// QueueIncoming is the queue of validate River jobs, worked by kiln-splitter.
const QueueIncoming = "incoming"

// QueueJanitor is the queue of the janitor's periodic River jobs.
const QueueJanitor = "janitor"

// BuildQueue is the queue of a platform's build River jobs, worked by the
// builders of that platform. Platform names are valid River queue names by
// construction (kiln.valid_name).
func BuildQueue(platform string) string { return "build-" + platform }

// The kinds of River job, as stored in river.river_job.kind.
const (
	KindValidate      = "validate"
	KindBuild         = "build"
	KindJanitorUpkeep = "janitor_upkeep"
	KindJanitorPrune  = "janitor_prune"
	KindEnvironment   = "environment"
)

// ValidateArgs asks the splitter to validate a submitted job and split it
// into tasks.
type ValidateArgs struct {
	JobID int64 `json:"job_id"`
}

// Kind implements river.JobArgs. The kind strings are stored in
// river.river_job rows and named by row-level security: they never change.
func (ValidateArgs) Kind() string { return KindValidate }

// InsertOpts implements river.JobArgsWithInsertOpts.
func (ValidateArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: QueueIncoming, MaxAttempts: 10}
}

// BuildArgs asks a builder to build one task.
type BuildArgs struct {
	TaskID   int64  `json:"task_id"`
	JobID    int64  `json:"job_id"`
	Platform string `json:"platform"`
}

// Kind implements river.JobArgs.
func (BuildArgs) Kind() string { return KindBuild }

// InsertOpts implements river.JobArgsWithInsertOpts. The queue is the
// platform's; the priority is set from the job when inserting.
func (a BuildArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: BuildQueue(a.Platform), MaxAttempts: 25}
}
