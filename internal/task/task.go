// Package task is the task protocol: how the splitter, builders, the
// janitor, the test farm and people's cancels create and change tasks and
// attempts. Every step is one function here. Those of builders and the
// janitor call one of the protocol's SQL functions
// (schema/current/10_functions.sql), which check the caller's right to make
// the step (a builder holds the attempt; the janitor is a member of
// kiln_janitor), take the locks in the protocol's order (job, then task)
// and make the change, River job included, in the caller's transaction;
// their roles may not write the tables themselves. Nothing else in kiln's
// daemons and commands writes kiln.task or kiln.attempt; docs/protocol.md
// states the rules.
package task

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// DB is what the steps need of a connection: a pgx.Tx, or a pool or a
// connection for steps that are one statement.
type DB interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// ErrStale means the step was refused, with nothing written, because the
// caller no longer holds the attempt (it was cancelled, timed out or
// declared lost).
var ErrStale = errors.New("the attempt is no longer current (cancelled, timed out or declared lost)")

// ErrDisabled means a take found the builder disabled.
var ErrDisabled = errors.New("the builder is disabled")

// ErrElsewhere means a take left the task to another builder: it is a retry
// of a failure that was the farm's fault on this builder, and another
// builder of the platform is online. The River job snoozes briefly.
var ErrElsewhere = errors.New("the task is a retry of this builder's infrastructure failure; another builder is to take it")

// Attempt names one attempt of a task held by a builder.
type Attempt struct {
	Task    int64
	Number  int
	Builder string
}

// Taken is what a take returns.
type Taken struct {
	// Attempt is the new attempt's number; 0 when the task was no longer
	// pending (cancelled, finished or taken meanwhile) or its job or
	// platform is gone: there is nothing to build.
	Attempt int
	// Policy is the job's build policy.
	Policy string
	// Timeout is the platform's current timeout.
	Timeout time.Duration
	// Session is the process id of the database backend that ran the take
	// (through PgBouncer, the server's). NOTIFY kiln_task for the take
	// comes from it, so a builder can tell its own take's notification
	// from a change someone else made.
	Session uint32
}

// Create makes the pending task of job on platform (the splitter; its
// River job follows with SetRiverJob in the same transaction).
func Create(ctx context.Context, tx pgx.Tx, jobID int64, platform string) (int64, error) {
	var id int64
	if err := tx.QueryRow(ctx, `INSERT INTO kiln.task (job_id, platform) VALUES ($1, $2) RETURNING id`, jobID, platform).Scan(&id); err != nil {
		return 0, fmt.Errorf("creating the task of job %d on %s: %w", jobID, platform, err)
	}
	return id, nil
}

// CreateSkipped makes the task of job on a platform its packages exclude,
// skipped from the start with the reason (the splitter).
func CreateSkipped(ctx context.Context, tx pgx.Tx, jobID int64, platform, reason string) (int64, error) {
	var id int64
	if err := tx.QueryRow(ctx, `INSERT INTO kiln.task (job_id, platform, status, reason, finished_at)
		VALUES ($1, $2, 'skipped', $3, now()) RETURNING id`, jobID, platform, reason).Scan(&id); err != nil {
		return 0, fmt.Errorf("creating the skipped task of job %d on %s: %w", jobID, platform, err)
	}
	return id, nil
}

// SetRiverJob records the River job, inserted in tx, that carries a new
// task to its builders (the splitter, whose role may set only that column;
// the transition guard refuses any other change).
func SetRiverJob(ctx context.Context, tx pgx.Tx, taskID, riverJobID int64) error {
	if _, err := tx.Exec(ctx, `UPDATE kiln.task SET river_job_id = $2 WHERE id = $1`, taskID, riverJobID); err != nil {
		return fmt.Errorf("recording the River job of task %d: %w", taskID, err)
	}
	return nil
}

// Take is step 1: builder takes the pending task of job on platform. It
// returns ErrDisabled when the builder has been disabled and ErrElsewhere
// when the task is to go to another builder.
func Take(ctx context.Context, db DB, builder string, taskID, jobID int64, platform string) (Taken, error) {
	taken, err := TakeMany(ctx, db, builder, []Taking{{Task: taskID, Job: jobID, Platform: platform}})
	if err != nil {
		return Taken{}, err
	}
	return taken[0].Taken, taken[0].Err
}

// Taking names a pending task a builder is to take.
type Taking struct {
	Task     int64
	Job      int64
	Platform string
}

// TakeOutcome is what became of one task of TakeMany: Err is ErrDisabled
// or ErrElsewhere, or nil with Taken.
type TakeOutcome struct {
	Taken
	Err error
}

// TakeMany is step 1 for several tasks in one statement and transaction
// (kiln.task_take_many), each task once: the takes of a builder's slots
// that wait at the same moment. It returns one outcome per task, in order.
func TakeMany(ctx context.Context, db DB, builder string, reqs []Taking) ([]TakeOutcome, error) {
	tasks, jobs, platforms := make([]int64, len(reqs)), make([]int64, len(reqs)), make([]string, len(reqs))
	for i, r := range reqs {
		tasks[i], jobs[i], platforms[i] = r.Task, r.Job, r.Platform
	}
	rows, err := db.Query(ctx, `SELECT outcome, attempt, policy, timeout_seconds, pg_backend_pid() FROM kiln.task_take_many($1, $2, $3, $4)`,
		builder, tasks, jobs, platforms)
	if err != nil {
		return nil, fmt.Errorf("taking %s: %w", taskList(tasks), err)
	}
	out := make([]TakeOutcome, 0, len(reqs))
	var (
		outcome string
		attempt *int32
		policy  *string
		seconds *float64
		session uint32
	)
	_, err = pgx.ForEachRow(rows, []any{&outcome, &attempt, &policy, &seconds, &session}, func() error {
		var o TakeOutcome
		switch outcome {
		case "taken":
			o.Taken = Taken{Attempt: int(*attempt), Policy: *policy, Timeout: time.Duration(*seconds * float64(time.Second)), Session: session}
		case "disabled":
			o.Err = ErrDisabled
		case "elsewhere":
			o.Err = ErrElsewhere
		} // not_pending, gone: nothing to build
		out = append(out, o)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("taking %s: %w", taskList(tasks), err)
	}
	if len(out) != len(reqs) {
		return nil, fmt.Errorf("taking %s: %d outcomes for %d tasks", taskList(tasks), len(out), len(reqs))
	}
	return out, nil
}

// taskList names tasks in an error message.
func taskList(tasks []int64) string {
	if len(tasks) == 1 {
		return fmt.Sprintf("task %d", tasks[0])
	}
	return fmt.Sprintf("tasks %v", tasks)
}

// Held is one attempt a builder holds, for Heartbeat.
type Held struct {
	Task    int64
	Attempt int
}

// Heartbeat is step 2 for every attempt builder holds, in one statement. It
// returns the tasks whose attempt builder no longer holds: their builds must
// stop.
func Heartbeat(ctx context.Context, db DB, builder string, held []Held) ([]int64, error) {
	if len(held) == 0 {
		return nil, nil
	}
	tasks, attempts := make([]int64, len(held)), make([]int32, len(held))
	for i, h := range held {
		tasks[i], attempts[i] = h.Task, int32(h.Attempt)
	}
	rows, err := db.Query(ctx, `SELECT kiln.task_heartbeat($1, $2, $3)`, builder, tasks, attempts)
	if err != nil {
		return nil, fmt.Errorf("task heartbeat: %w", err)
	}
	fenced, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("task heartbeat: %w", err)
	}
	return fenced, nil
}

// Log is step 3: one batch of log text of an attempt, whole lines. truncated
// says the log reached its limit. It returns ErrStale when the attempt is
// not held.
func Log(ctx context.Context, db DB, a Attempt, seq int, text string, truncated bool) error {
	stored, err := LogMany(ctx, db, a.Builder, []Logging{{Task: a.Task, Attempt: a.Number, Seq: seq, Text: text, Truncated: truncated}})
	if err != nil {
		return err
	}
	if !stored[0] {
		return ErrStale
	}
	return nil
}

// Logging is one batch of LogMany: batch Seq of the log of attempt Attempt
// of task Task, whole lines; Truncated says the log reached its limit.
type Logging struct {
	Task      int64
	Attempt   int
	Seq       int
	Text      string
	Truncated bool
}

// LogMany is step 3 for several attempts of builder in one statement and
// transaction (kiln.task_log_many), each task once: the log batches of a
// builder's slots stored at the same moment. It returns, per batch in
// order, whether it was stored (false: the attempt is not held, and
// nothing of it was stored).
func LogMany(ctx context.Context, db DB, builder string, items []Logging) ([]bool, error) {
	n := len(items)
	tasks, attempts, seqs := make([]int64, n), make([]int32, n), make([]int32, n)
	texts, truncated := make([]string, n), make([]bool, n)
	for i, it := range items {
		tasks[i], attempts[i], seqs[i], texts[i], truncated[i] = it.Task, int32(it.Attempt), int32(it.Seq), it.Text, it.Truncated
	}
	rows, err := db.Query(ctx, `SELECT stored FROM kiln.task_log_many($1, $2, $3, $4, $5, $6)`,
		builder, tasks, attempts, seqs, texts, truncated)
	if err != nil {
		return nil, fmt.Errorf("storing the logs of %s: %w", taskList(tasks), err)
	}
	stored, err := pgx.CollectRows(rows, pgx.RowTo[bool])
	if err != nil {
		return nil, fmt.Errorf("storing the logs of %s: %w", taskList(tasks), err)
	}
	if len(stored) != n {
		return nil, fmt.Errorf("storing the logs of %s: %d answers for %d batches", taskList(tasks), len(stored), n)
	}
	return stored, nil
}

// IsHeld reports whether the attempt is still held: a cheap early check
// before a finish stores bytes. Finish checks again under the locks.
func IsHeld(ctx context.Context, db DB, a Attempt) (bool, error) {
	var held bool
	if err := db.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM kiln.task
		WHERE id = $1 AND attempt = $2 AND builder = $3 AND status = 'building')`, a.Task, a.Number, a.Builder).Scan(&held); err != nil {
		return false, fmt.Errorf("checking attempt %d of task %d: %w", a.Number, a.Task, err)
	}
	return held, nil
}

// Artifact is a file an attempt produced: its bytes in Data (at most
// InlineLimit), which Finish stores itself, or already stored as a blob
// (internal/blob) in the finishing transaction, named by SHA256 and Size.
type Artifact struct {
	Kind   string // package, log, buildinfo or other
	Name   string
	SHA256 []byte
	Size   int64
	// Data, when not nil, are the artifact's bytes: the database hashes
	// and stores them (SHA256 and Size are then not needed).
	Data []byte
}

// InlineLimit is the most bytes an Artifact carries in Data: what goes in
// the finish's one round trip instead of a blob stored before it.
const InlineLimit = 1 << 20

// LogBatch is a batch of an attempt's log text (whole lines) and its
// sequence number.
type LogBatch struct {
	Seq  int
	Text string
}

// Failure stages (kiln.failure_stage): where a failed attempt failed. The
// table says which are the farm's faults, which kiln.task_finish retries,
// and which the package's.
const (
	StageFetchSources       = "fetch-sources"
	StagePrepareEnvironment = "prepare-environment"
	StageInstallBuildDeps   = "install-build-deps"
	StageUnsatisfiable      = "unsatisfiable"
	StageBuild              = "build"
	StageCollectArtifacts   = "collect-artifacts"
	StageUpload             = "upload"
	StageOutOfDisk          = "out-of-disk"
)

// Stages returns every failure stage, in the order a build passes them.
func Stages() []string {
	return []string{StageFetchSources, StagePrepareEnvironment, StageInstallBuildDeps, StageUnsatisfiable,
		StageBuild, StageCollectArtifacts, StageUpload, StageOutOfDisk}
}

// Result is how an attempt ends.
type Result struct {
	Status Status // Succeeded, Failed or TimedOut
	Reason string // why it did not succeed ("" for none)
	// FailureStage is where a Failed attempt failed (a Stage constant), ""
	// when unknown.
	FailureStage string
	BuildInfo    []byte // the build-info record (JSON), or nil
	LogTruncated bool
	// LogTail, when not nil, is the end of the log, stored with the
	// finish instead of by a Log of its own.
	LogTail   *LogBatch
	Artifacts []Artifact
}

// Finished is what became of a finished attempt's task.
type Finished struct {
	// Retried is true when the attempt failed for the farm's fault and the
	// task waits again for another attempt; its River job is to snooze for
	// RetryAfter (the platform's backoff).
	Retried    bool
	RetryAfter time.Duration
}

// Finish is step 4, one statement: the end of the log and the small
// artifacts' bytes are stored, the attempt ends with its result and
// artifacts, and the task ends, or waits again when the attempt failed for
// the farm's fault and the platform's retries allow. db is a transaction
// when artifacts were stored as blobs before (in it), else it may be a
// pool. It returns ErrStale, and the caller must roll a transaction back,
// when the attempt is not held.
func Finish(ctx context.Context, db DB, a Attempt, r Result) (Finished, error) {
	out, err := FinishMany(ctx, db, a.Builder, []Finishing{{Task: a.Task, Attempt: a.Number, Result: r}})
	if err != nil {
		return Finished{}, err
	}
	return out[0].Finished, out[0].Err
}

// Finishing is one attempt of FinishMany and its result.
type Finishing struct {
	Task    int64
	Attempt int
	Result  Result
}

// FinishOutcome is what became of one attempt of FinishMany: Err is
// ErrStale when the attempt was not held (nothing of it was written).
type FinishOutcome struct {
	Finished
	Err error
}

// FinishMany is step 4 for several attempts of builder in one statement and
// transaction (kiln.task_finish_many), each task once: the finishes of a
// builder's slots that end at the same moment. An attempt not held is
// refused alone (ErrStale in its outcome); bad input (an artifact whose
// bytes or blob do not match) refuses the whole call, with nothing written.
func FinishMany(ctx context.Context, db DB, builder string, items []Finishing) ([]FinishOutcome, error) {
	n := len(items)
	var (
		tasks                            = make([]int64, n)
		attempts                         = make([]int32, n)
		statuses, reasons, infos, stages = make([]string, n), make([]*string, n), make([]*string, n), make([]*string, n)
		truncated                        = make([]bool, n)
		logSeqs                          = make([]*int32, n)
		logTexts                         = make([]*string, n)
		artTasks                         []int64
		kinds, names                     []string
		sums                             [][]byte
		sizes                            []int64
		data                             [][]byte
		withData                         bool
	)
	for i, it := range items {
		r := it.Result
		tasks[i], attempts[i], statuses[i], truncated[i] = it.Task, int32(it.Attempt), string(r.Status), r.LogTruncated
		if r.Reason != "" {
			reasons[i] = &r.Reason
		}
		if r.FailureStage != "" {
			stages[i] = &r.FailureStage
		}
		if r.BuildInfo != nil {
			info := string(r.BuildInfo)
			infos[i] = &info
		}
		if r.LogTail != nil {
			seq := int32(r.LogTail.Seq)
			logSeqs[i], logTexts[i] = &seq, &r.LogTail.Text
		}
		for _, f := range r.Artifacts {
			sum, size := f.SHA256, f.Size
			if f.Data != nil {
				if len(f.Data) > InlineLimit {
					return nil, fmt.Errorf("finishing task %d attempt %d: artifact %s: %d bytes is more than a finish carries (%d)",
						it.Task, it.Attempt, f.Name, len(f.Data), InlineLimit)
				}
				sum, size, withData = nil, int64(len(f.Data)), true
			}
			artTasks, kinds, names = append(artTasks, it.Task), append(kinds, f.Kind), append(names, f.Name)
			sums, sizes, data = append(sums, sum), append(sizes, size), append(data, f.Data)
		}
	}
	if !withData {
		data = nil
	}
	rows, err := db.Query(ctx, `SELECT finished, retry_after_seconds
		FROM kiln.task_finish_many($1, $2, $3, $4, $5, $6::jsonb[], $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		builder, tasks, attempts, statuses, reasons, infos, truncated, stages, logSeqs, logTexts,
		nonNil(artTasks), nonNil(kinds), nonNil(names), nonNil(sums), nonNil(sizes), data)
	if err != nil {
		return nil, fmt.Errorf("finishing %s: %w", attemptList(items), err)
	}
	out := make([]FinishOutcome, 0, n)
	var (
		done  bool
		after *float64
	)
	_, err = pgx.ForEachRow(rows, []any{&done, &after}, func() error {
		var o FinishOutcome
		switch {
		case !done:
			o.Err = ErrStale
		case after != nil:
			o.Finished = Finished{Retried: true, RetryAfter: time.Duration(*after * float64(time.Second))}
		}
		out = append(out, o)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("finishing %s: %w", attemptList(items), err)
	}
	if len(out) != n {
		return nil, fmt.Errorf("finishing %s: %d outcomes for %d attempts", attemptList(items), len(out), n)
	}
	return out, nil
}

// nonNil is s, or an empty slice for nil: an array of no artifacts, not a
// NULL one.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// attemptList names attempts in an error message.
func attemptList(items []Finishing) string {
	if len(items) == 1 {
		return fmt.Sprintf("task %d attempt %d", items[0].Task, items[0].Attempt)
	}
	parts := make([]string, len(items))
	for i, it := range items {
		parts[i] = fmt.Sprintf("%d/%d", it.Task, it.Attempt)
	}
	return "tasks/attempts " + strings.Join(parts, ", ")
}

// GiveBack is step 5: the builder shuts down and gives the attempt back; the
// task waits again, the attempt is returned and not counted as lost. The
// caller's River worker snoozes the River job so that it is available again
// at once. ErrStale when the attempt is not held.
func GiveBack(ctx context.Context, db DB, a Attempt) error {
	var done bool
	if err := db.QueryRow(ctx, `SELECT kiln.task_give_back($1, $2, $3)`, a.Builder, a.Task, a.Number).Scan(&done); err != nil {
		return fmt.Errorf("giving back task %d attempt %d: %w", a.Task, a.Number, err)
	}
	if !done {
		return ErrStale
	}
	return nil
}

// Loss is what became of a task whose attempt was lost.
type Loss struct {
	// Status is Pending (requeued) or Lost (lost more often than the
	// database's max_lost: ended).
	Status Status
	// LostCount is the task's losses, this one included.
	LostCount int
	// RiverJob says what became of its River job: made_available,
	// missing (a pending task that needs a new one: see LinkRiverJob),
	// cancelled or not_cancelled.
	RiverJob string
}

// Requeued reports whether the task waits again.
func (l Loss) Requeued() bool { return l.Status == Pending }

// NeedsRiverJob reports whether the task waits again without a River job.
func (l Loss) NeedsRiverJob() bool { return l.Status == Pending && l.RiverJob == "missing" }

// Recover is step 6: a restarted builder gives back an attempt its crashed
// previous run left building. The attempt is lost; the task is requeued, or
// ended as lost past max_lost. ErrStale when the attempt is not held (the
// janitor or a cancel was quicker).
func Recover(ctx context.Context, db DB, a Attempt) (Loss, error) {
	var (
		l       Loss
		outcome *string
		count   *int32
		river   *string
	)
	if err := db.QueryRow(ctx, `SELECT outcome, lost_count, river_job_state FROM kiln.task_recover($1, $2, $3)`,
		a.Builder, a.Task, a.Number).Scan(&outcome, &count, &river); err != nil {
		return l, fmt.Errorf("giving back task %d attempt %d: %w", a.Task, a.Number, err)
	}
	if outcome == nil {
		return l, ErrStale
	}
	return Loss{Status: Status(*outcome), LostCount: int(*count), RiverJob: *river}, nil
}

// LeftBuilding returns the attempts still building in builder's name: at
// the start of a builder, those its crashed previous run left.
func LeftBuilding(ctx context.Context, db DB, builder string) ([]Attempt, error) {
	rows, err := db.Query(ctx, `SELECT id, attempt, builder FROM kiln.task
		WHERE builder = $1 AND status = 'building' ORDER BY id`, builder)
	if err != nil {
		return nil, fmt.Errorf("finding tasks building in the name of %s: %w", builder, err)
	}
	left, err := pgx.CollectRows(rows, pgx.RowToStructByPos[Attempt])
	if err != nil {
		return nil, fmt.Errorf("finding tasks building in the name of %s: %w", builder, err)
	}
	return left, nil
}

// Silent is a task taken back from a silent builder.
type Silent struct {
	Loss
	Attempt    int
	Builder    string
	RiverJobID *int64
	Platform   string
	Priority   int16
}

// TakeBackLost is step 7 (the janitor): a task building without a heartbeat
// for longer than horizon is taken back from its builder, re-checked under
// the locks. ok is false when there was nothing to do (it heart-beat,
// finished, or another janitor took it).
func TakeBackLost(ctx context.Context, tx pgx.Tx, taskID int64, horizon time.Duration) (s Silent, ok bool, err error) {
	var (
		outcome, builder, river, platform *string
		attempt, count                    *int32
		priority                          *int16
	)
	if err := tx.QueryRow(ctx, `SELECT outcome, attempt, builder, lost_count, river_job_state, river_job_id, platform, priority
		FROM kiln.task_take_back_lost($1, make_interval(secs => $2))`, taskID, horizon.Seconds()).
		Scan(&outcome, &attempt, &builder, &count, &river, &s.RiverJobID, &platform, &priority); err != nil {
		return s, false, fmt.Errorf("taking back task %d: %w", taskID, err)
	}
	if outcome == nil {
		return s, false, nil
	}
	s.Loss = Loss{Status: Status(*outcome), LostCount: int(*count), RiverJob: *river}
	s.Attempt, s.Builder, s.Platform, s.Priority = int(*attempt), *builder, *platform, *priority
	return s, true, nil
}

// Runaway is a build ended by TimeOut.
type Runaway struct {
	Attempt           int
	Builder           string
	RiverJobID        *int64
	RiverJobCancelled bool
}

// TimeOut is step 8 (the janitor): a build running longer than its
// platform's timeout plus grace ends as timed_out, re-checked under the
// locks; its builder finds itself fenced off at its next heartbeat. ok is
// false when there was nothing to do.
func TimeOut(ctx context.Context, tx pgx.Tx, taskID int64, grace time.Duration) (r Runaway, ok bool, err error) {
	var (
		attempt   *int32
		builder   *string
		cancelled *bool
	)
	if err := tx.QueryRow(ctx, `SELECT ended, attempt, builder, river_job_id, river_job_cancelled
		FROM kiln.task_time_out($1, make_interval(secs => $2))`, taskID, grace.Seconds()).
		Scan(&ok, &attempt, &builder, &r.RiverJobID, &cancelled); err != nil {
		return r, false, fmt.Errorf("timing out task %d: %w", taskID, err)
	}
	if !ok {
		return r, false, nil
	}
	r.Attempt, r.Builder, r.RiverJobCancelled = int(*attempt), *builder, *cancelled
	return r, true, nil
}

// LinkRiverJob records riverJobID, a build River job of the pending task
// just inserted in tx by River's client, as the task's River job (the
// janitor). ok is false when the task is no longer pending.
func LinkRiverJob(ctx context.Context, tx pgx.Tx, taskID, riverJobID int64) (ok bool, err error) {
	if err := tx.QueryRow(ctx, `SELECT kiln.task_link_river_job($1, $2)`, taskID, riverJobID).Scan(&ok); err != nil {
		return false, fmt.Errorf("recording River job %d on task %d: %w", riverJobID, taskID, err)
	}
	return ok, nil
}

// CancelJob is step 9 for a whole job, as session_user (its submitter or an
// admin): its unfinished tasks, their open attempts and their waiting River
// jobs are cancelled. It returns the job's status after. Errors are
// PostgreSQL's own, unwrapped, for the caller to explain.
func CancelJob(ctx context.Context, db DB, jobID int64) (status string, err error) {
	err = db.QueryRow(ctx, "SELECT kiln.cancel_job($1)", jobID).Scan(&status)
	return status, err
}

// CancelTask is step 9 for one task, as session_user (the job's submitter or
// an admin). It returns the task's status after (cancelled) and its job.
// Errors are PostgreSQL's own, unwrapped, for the caller to explain.
func CancelTask(ctx context.Context, db DB, taskID int64) (status string, jobID int64, err error) {
	err = db.QueryRow(ctx, "SELECT kiln.cancel_task($1), (SELECT job_id FROM kiln.task WHERE id = $1)", taskID).Scan(&status, &jobID)
	return status, jobID, err
}

// CancelJobFor is CancelJob made by kiln-web for person, whom it
// authenticated (kiln.web_cancel_job: the same step and rules, for that
// person instead of session_user; kiln_web only).
func CancelJobFor(ctx context.Context, db DB, person string, jobID int64) (status string, err error) {
	err = db.QueryRow(ctx, "SELECT kiln.web_cancel_job($1, $2)", person, jobID).Scan(&status)
	return status, err
}

// CancelTaskFor is CancelTask made by kiln-web for person
// (kiln.web_cancel_task).
func CancelTaskFor(ctx context.Context, db DB, person string, taskID int64) (status string, err error) {
	err = db.QueryRow(ctx, "SELECT kiln.web_cancel_task($1, $2)", person, taskID).Scan(&status)
	return status, err
}

// SetMaxLost sets how many times a task may be lost and still be requeued
// (kiln.protocol_setting.max_lost; a kiln_admin member only) and returns
// the old value.
func SetMaxLost(ctx context.Context, db DB, n int) (int, error) {
	var old int
	if err := db.QueryRow(ctx, "SELECT kiln.set_max_lost($1)", n).Scan(&old); err != nil {
		return 0, fmt.Errorf("setting max_lost: %w", err)
	}
	return old, nil
}
