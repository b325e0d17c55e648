// Package janitor keeps the farm honest: it takes tasks back from builders
// that went silent, ends builds that ran past their platform's timeout,
// marks silent builders offline, repairs disagreements between tasks, jobs
// and River jobs, and prunes logs, artifacts and blobs by retention.
//
// Every change follows the task protocol (docs/protocol.md): the job row is
// locked first, the task is re-read under lock and changed only if it is
// still in the state that made it a candidate, so several janitors (or a
// janitor and a builder) never both act on the same task. Every repair is
// recorded in kiln.event with the janitor's role; every round writes one
// janitor.round event with its counts.
package janitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kiln-build/kiln/riverjob"
	"github.com/riverqueue/river"
)

// Config holds the janitor's limits. The zero value is not useful; start
// from DefaultConfig.
type Config struct {
	// Horizon is how long a building task (and a builder) may go without a
	// heartbeat before it is declared lost (offline). The default, 20 s, is
	// four of the builders' default 5 s heartbeats: a killed builder's task
	// builds elsewhere 15 to 35 s after the kill (about 25 s typically).
	Horizon time.Duration
	// TimeoutGrace is added to a platform's timeout before the janitor ends
	// a build the builder should have ended itself.
	TimeoutGrace time.Duration
	// Retention is how long logs and artifacts of finished jobs are kept when
	// their bucket does not say (kiln.bucket.retention).
	Retention time.Duration
	// BlobGrace is how old an unreferenced blob must be before it is removed;
	// it covers submit and builder transactions still in flight.
	BlobGrace time.Duration
	// DeleteJobsAfter, when positive, deletes the rows of jobs finished longer
	// ago than this (packages, tasks, attempts, artifacts, logs with them);
	// 0 keeps job history forever.
	DeleteJobsAfter time.Duration
	// RecheckJobsFor is how long after a job finished its status is still
	// compared with its tasks; unfinished jobs are always compared.
	RecheckJobsFor time.Duration
	// ValidateHorizon is how long a job may stay submitted without a live
	// validate River job before it gets a new one.
	ValidateHorizon time.Duration
	// MaxRevalidate is how many new validate River jobs a job gets; when
	// those did not validate it either, it is marked invalid.
	MaxRevalidate int
	// Batch caps how many candidates of each kind one round handles, so a
	// round stays short; the rest wait for the next round.
	Batch int
}

// DefaultConfig returns the documented defaults (docs/janitor.md).
func DefaultConfig() Config {
	return Config{
		Horizon:         20 * time.Second,
		TimeoutGrace:    10 * time.Minute,
		Retention:       30 * 24 * time.Hour,
		BlobGrace:       24 * time.Hour,
		RecheckJobsFor:  24 * time.Hour,
		ValidateHorizon: 10 * time.Minute,
		MaxRevalidate:   3,
		Batch:           500,
	}
}

// Check reports a configuration that cannot work.
func (c Config) Check() error {
	switch {
	case c.Horizon <= 0:
		return errors.New("the heartbeat horizon must be positive")
	case c.TimeoutGrace < 0:
		return errors.New("the timeout grace must not be negative")
	case c.Retention <= 0:
		return errors.New("the retention must be positive")
	case c.BlobGrace <= 0:
		return errors.New("the blob grace period must be positive")
	case c.DeleteJobsAfter < 0:
		return errors.New("the job deletion age must not be negative (0 keeps jobs)")
	case c.DeleteJobsAfter > 0 && c.DeleteJobsAfter < c.Retention:
		return fmt.Errorf("jobs would be deleted (after %s) before their retention ends (%s)", c.DeleteJobsAfter, c.Retention)
	case c.RecheckJobsFor < 0:
		return errors.New("the job recheck period must not be negative")
	case c.ValidateHorizon <= 0:
		return errors.New("the validation horizon must be positive")
	case c.MaxRevalidate < 0:
		return errors.New("the number of new validate River jobs must not be negative")
	case c.Batch <= 0:
		return errors.New("the batch size must be positive")
	}
	return nil
}

// Work selects what a round does.
type Work int

const (
	// Upkeep is the frequent part: lost and runaway tasks, silent builders,
	// consistency between tasks, jobs and River jobs.
	Upkeep Work = 1 << iota
	// Retention is the slow part: pruning logs, artifacts, blobs and (when
	// configured) old job rows.
	Retention
	// All is both, as kiln-janitor --once runs it.
	All = Upkeep | Retention
)

// Counts says what one round did. It is the detail of the round's
// janitor.round event (JSON names below) and of its log line.
type Counts struct {
	Requeued             int   `json:"requeued"`               // lost tasks put back to pending
	Lost                 int   `json:"lost"`                   // tasks ended as lost (lost too often)
	TimedOut             int   `json:"timed_out"`              // runaway builds ended as timed_out
	BuildersOffline      int   `json:"builders_offline"`       // silent builders marked offline
	RiverJobsInserted    int   `json:"river_jobs_inserted"`    // pending tasks given a new River job
	RiverJobsCancelled   int   `json:"river_jobs_cancelled"`   // River jobs of finished tasks cancelled
	JobsRecomputed       int   `json:"jobs_recomputed"`        // jobs whose status was recomputed
	ValidationsRequeued  int   `json:"validations_requeued"`   // submitted jobs given a new validate River job
	ValidationsTakenOver int   `json:"validations_taken_over"` // validate River jobs of dead splitters made available again
	EnvironmentsQueued   int   `json:"environments_queued"`    // environment River jobs queued (none yet, or too old)
	JobsInvalidated      int   `json:"jobs_invalidated"`       // submitted jobs given up on (validation never completed)
	JobsPruned           int   `json:"jobs_pruned"`            // jobs whose logs and artifacts were pruned
	LogChunksPruned      int64 `json:"log_chunks_pruned"`      // log batches deleted
	ArtifactsPruned      int64 `json:"artifacts_pruned"`       // artifacts whose content was dropped
	JobsDeleted          int   `json:"jobs_deleted"`           // job rows deleted (DeleteJobsAfter)
	BlobsRemoved         int   `json:"blobs_removed"`          // unreferenced blobs removed
	BlobBytesRemoved     int64 `json:"blob_bytes_removed"`     // their bytes
	BlobsStillReferenced int   `json:"blobs_still_referenced"` // candidates a new reference saved
	Errors               int   `json:"errors"`                 // checks that met an error (logged; retried next round)
}

// Janitor runs rounds against one database.
type Janitor struct {
	db    *pgxpool.Pool
	cfg   Config
	log   *slog.Logger
	river *river.Client[pgx.Tx]
}

// New returns a janitor working on db (connected as a member of
// kiln_janitor).
func New(db *pgxpool.Pool, cfg Config, log *slog.Logger) (*Janitor, error) {
	if err := cfg.Check(); err != nil {
		return nil, fmt.Errorf("janitor configuration: %w", err)
	}
	// An insert-only River client: it never starts, it only inserts build
	// River jobs for pending tasks that lost theirs.
	rc, err := riverjob.NewInserter(db, log)
	if err != nil {
		return nil, err
	}
	return &Janitor{db: db, cfg: cfg, log: log, river: rc}, nil
}

// Round does the selected work once, writes a janitor.round event with its
// counts and logs them. A repair that fails is logged, counted and left for
// the next round; the round goes on with the others and returns the errors
// joined.
func (j *Janitor) Round(ctx context.Context, w Work) (Counts, error) {
	start := time.Now()
	var c Counts
	var errs []error
	step := func(name string, fn func(context.Context, *Counts) error) {
		if err := fn(ctx, &c); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	if w&Upkeep != 0 {
		// Runaway first: a task past its timeout is timed out, not requeued.
		step("ending runaway builds", j.endRunaway)
		step("taking back lost tasks", j.takeBackLost)
		step("marking silent builders offline", j.markBuildersOffline)
		step("giving pending tasks a River job", j.repairPendingWithoutRiverJob)
		step("cancelling River jobs of finished tasks", j.cancelRiverJobsOfFinished)
		step("recomputing job status", j.recomputeJobStatus)
		step("taking over validations of dead splitters", j.takeOverValidations)
		step("requeueing stuck validations", j.repairStuckValidation)
		step("scheduling environment refreshes", j.scheduleEnvironmentRefreshes)
	}
	if w&Retention != 0 {
		step("pruning logs and artifacts", j.pruneExpiredJobs)
		step("deleting old jobs", j.deleteOldJobs)
		step("removing unreferenced blobs", j.removeUnreferencedBlobs)
	}
	c.Errors += len(errs)
	took := time.Since(start)
	if err := j.recordRound(ctx, w, c, took); err != nil {
		errs = append(errs, err)
	}
	j.logRound(w, c, took, len(errs))
	return c, errors.Join(errs...)
}

func (w Work) parts() []string {
	var p []string
	if w&Upkeep != 0 {
		p = append(p, "upkeep")
	}
	if w&Retention != 0 {
		p = append(p, "retention")
	}
	return p
}

func (j *Janitor) recordRound(ctx context.Context, w Work, c Counts, took time.Duration) error {
	detail, err := roundDetail(w, c, took)
	if err != nil {
		return err
	}
	if _, err := j.db.Exec(ctx, `INSERT INTO kiln.event (kind, detail) VALUES ('janitor.round', $1)`, detail); err != nil {
		return fmt.Errorf("recording the round: %w", err)
	}
	return nil
}

// roundDetail is the janitor.round event's detail: the counts, the parts
// that ran and how long the round took.
func roundDetail(w Work, c Counts, took time.Duration) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	m := map[string]any{}
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	m["parts"] = w.parts()
	m["duration_ms"] = took.Milliseconds()
	return json.Marshal(m)
}

func (j *Janitor) logRound(w Work, c Counts, took time.Duration, errs int) {
	level := slog.LevelInfo
	if errs > 0 {
		level = slog.LevelWarn
	}
	attrs := []any{"parts", w.parts(), "took", took.Round(time.Millisecond)}
	if w&Upkeep != 0 {
		attrs = append(attrs, "requeued", c.Requeued, "lost", c.Lost, "timed_out", c.TimedOut,
			"builders_offline", c.BuildersOffline, "river_jobs_inserted", c.RiverJobsInserted,
			"river_jobs_cancelled", c.RiverJobsCancelled, "jobs_recomputed", c.JobsRecomputed,
			"validations_requeued", c.ValidationsRequeued, "validations_taken_over", c.ValidationsTakenOver,
			"jobs_invalidated", c.JobsInvalidated)
	}
	if w&Retention != 0 {
		attrs = append(attrs, "jobs_pruned", c.JobsPruned, "log_chunks_pruned", c.LogChunksPruned,
			"artifacts_pruned", c.ArtifactsPruned, "jobs_deleted", c.JobsDeleted,
			"blobs_removed", c.BlobsRemoved, "blob_bytes_removed", c.BlobBytesRemoved,
			"blobs_still_referenced", c.BlobsStillReferenced)
	}
	attrs = append(attrs, "errors", c.Errors)
	j.log.Log(context.Background(), level, "janitor round", attrs...)
}

// inTx runs fn in a transaction with a lock timeout, so a row held by a
// wedged session delays one repair, not the whole janitor. fn counts what it
// does in its own Counts, which are added to c only once the transaction
// has committed.
func (j *Janitor) inTx(ctx context.Context, c *Counts, fn func(tx pgx.Tx, d *Counts) error) error {
	var d Counts
	err := pgx.BeginFunc(ctx, j.db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '10s'"); err != nil {
			return err
		}
		return fn(tx, &d)
	})
	if err == nil {
		c.add(d)
	}
	return err
}

// add adds d's counts to c.
func (c *Counts) add(d Counts) {
	c.Requeued += d.Requeued
	c.Lost += d.Lost
	c.TimedOut += d.TimedOut
	c.BuildersOffline += d.BuildersOffline
	c.RiverJobsInserted += d.RiverJobsInserted
	c.RiverJobsCancelled += d.RiverJobsCancelled
	c.JobsRecomputed += d.JobsRecomputed
	c.ValidationsRequeued += d.ValidationsRequeued
	c.ValidationsTakenOver += d.ValidationsTakenOver
	c.JobsInvalidated += d.JobsInvalidated
	c.JobsPruned += d.JobsPruned
	c.LogChunksPruned += d.LogChunksPruned
	c.ArtifactsPruned += d.ArtifactsPruned
	c.JobsDeleted += d.JobsDeleted
	c.BlobsRemoved += d.BlobsRemoved
	c.BlobBytesRemoved += d.BlobBytesRemoved
	c.BlobsStillReferenced += d.BlobsStillReferenced
	c.Errors += d.Errors
}

// lockJob takes the job row's lock, the first step of every task change.
func lockJob(ctx context.Context, tx pgx.Tx, jobID int64) (bool, error) {
	var ok bool
	if err := tx.QueryRow(ctx, "SELECT kiln.lock_job($1)", jobID).Scan(&ok); err != nil {
		return false, fmt.Errorf("locking job %d: %w", jobID, err)
	}
	return ok, nil
}

// event is one kiln.event row the janitor writes; nil fields stay NULL.
type event struct {
	Kind      string
	JobID     *int64
	TaskID    *int64
	Attempt   *int32
	Builder   *string
	OldStatus *string
	NewStatus *string
	Detail    map[string]any
}

// execer is a pool or a transaction.
type execer interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
}

// record writes the event (the actor is stamped by the table's trigger).
func record(ctx context.Context, db execer, e event) error {
	detail := e.Detail
	if detail == nil {
		detail = map[string]any{}
	}
	_, err := db.Exec(ctx, `INSERT INTO kiln.event (kind, job_id, task_id, attempt, builder, old_status, new_status, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
		e.Kind, e.JobID, e.TaskID, e.Attempt, e.Builder, e.OldStatus, e.NewStatus, detail)
	if err != nil {
		return fmt.Errorf("recording %s event: %w", e.Kind, err)
	}
	return nil
}

// ptr returns a pointer to v, for the optional event fields.
func ptr[T any](v T) *T { return &v }

// seconds is a length of time as PostgreSQL's extract(epoch ...) gives it
// (pgx does not scan intervals into time.Duration).
type seconds float64

// secs turns a duration into the seconds make_interval takes.
func secs(d time.Duration) float64 { return d.Seconds() }

// Upkeep runs one upkeep round (riverjob.Janitor).
func (j *Janitor) Upkeep(ctx context.Context) error {
	_, err := j.Round(ctx, Upkeep)
	return err
}

// Prune runs one retention round (riverjob.Janitor).
func (j *Janitor) Prune(ctx context.Context) error {
	_, err := j.Round(ctx, Retention)
	return err
}
