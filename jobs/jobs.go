// Package jobs defines kiln's River job kinds: their arguments, the queues
// they go to, and (in one file per kind) their workers.
//
// A River job carries only ids; everything else is read from the kiln tables
// in the worker's transaction, so a retried River job always sees the truth.
package jobs

import "github.com/riverqueue/river"

// QueueIncoming is the queue of validate River jobs, worked by kiln-splitter.
const QueueIncoming = "incoming"

// QueueJanitor is the queue of the janitor's periodic River jobs.
const QueueJanitor = "janitor"

// BuildQueue is the queue of a platform's build River jobs, worked by the
// builders of that platform. Platform names are valid River queue names by
// construction (kiln.valid_name).
func BuildQueue(platform string) string { return "build-" + platform }

// ValidateArgs asks the splitter to validate a submitted job and split it
// into tasks.
type ValidateArgs struct {
	JobID int64 `json:"job_id"`
}

// Kind implements river.JobArgs.
func (ValidateArgs) Kind() string { return "validate" }

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
func (BuildArgs) Kind() string { return "build" }

// InsertOpts implements river.JobArgsWithInsertOpts. The queue is the
// platform's; the priority is set from the job when inserting.
func (a BuildArgs) InsertOpts() river.InsertOpts {
	return river.InsertOpts{Queue: BuildQueue(a.Platform), MaxAttempts: 25}
}
