package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/riverqueue/river"

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/riverjob"
)

// buildInfo is the attempt's build-info record (kiln.attempt.build_info and
// the kiln-buildinfo.json artifact).
type buildInfo struct {
	Builder    string            `json:"builder"`
	Host       string            `json:"host"`
	Version    string            `json:"kiln_version"`
	Platform   string            `json:"platform"`
	Arch       string            `json:"arch"`
	Backend    string            `json:"backend"`
	Tools      map[string]string `json:"tools"`
	BuildUser  string            `json:"build_user"`
	Policy     string            `json:"policy"`
	Job        int64             `json:"job"`
	Task       int64             `json:"task"`
	Attempt    int               `json:"attempt"`
	StartedAt  time.Time         `json:"started_at"`
	FinishedAt time.Time         `json:"finished_at"`
	Status     string            `json:"status"`
	Reason     string            `json:"reason,omitempty"`
	// Stage is where a failed task failed (a backend.Stage constant), and
	// Unsatisfiable whether it failed only for build dependencies that
	// cannot be installed.
	Stage         string `json:"stage,omitempty"`
	Unsatisfiable bool   `json:"unsatisfiable,omitempty"`
	// Environment is the build environment the task was built in.
	Environment *environmentRef `json:"environment,omitempty"`
	// Repositories are the buckets' repository snapshots build
	// dependencies were installed from (repos.go).
	Repositories []repositoryRef `json:"repositories,omitempty"`
	Passes       int             `json:"passes"`
	Packages     []packageResult `json:"packages"`
}

// take is protocol step 1 (task.TakeMany, with the takes of other slots
// that wait at the same moment). Its attempt is 0 when the task is no
// longer pending; the error is errDisabled when the builder has been
// disabled.
func (b *Builder) take(ctx context.Context, a riverjob.BuildArgs) (task.Taken, error) {
	t, err := b.takes.do(ctx, task.Taking{Task: a.TaskID, Job: a.JobID, Platform: a.Platform})
	if err == nil {
		err = t.Err
	}
	if err != nil {
		return task.Taken{}, err
	}
	return t.Taken, nil
}

// batchMax is the most takes, or finishes, one statement carries.
const batchMax = 16

// batchMaxBytes is the most artifact bytes a batch of finishes carries (a
// finish alone carries up to task.InlineLimit per artifact), so that one
// statement stays a few MiB at most.
const batchMaxBytes = 4 << 20

// inlineBytes is the artifact bytes a finish carries in its statement.
func inlineBytes(f task.Finishing) int {
	n := 0
	for _, a := range f.Result.Artifacts {
		n += len(a.Data)
	}
	return n
}

// buildTask works a build River job of the feed whose quit channel is
// given: it waits for a free slot, takes the task, builds it and finishes it
// (or gives it back on shutdown). A River job that is not taken because the
// builder stops or its feed stopped (the builder was disabled) goes back to
// its queue at once: JobSnooze(0) spends no River attempt.
func (b *Builder) buildTask(ctx context.Context, a riverjob.BuildArgs, quit <-chan struct{}) error {
	plat := b.platform(a.Platform)
	if plat == nil {
		return river.JobCancel(fmt.Errorf("builder %s does not build platform %q", b.cfg.Name, a.Platform))
	}
	select {
	case b.slots <- struct{}{}:
	case <-b.stopping:
		return river.JobSnooze(0)
	case <-quit:
		return river.JobSnooze(0)
	case <-ctx.Done():
		return river.JobSnooze(0)
	}
	defer func() { <-b.slots }()
	select {
	case <-b.stopping:
		return river.JobSnooze(0)
	case <-quit:
		return river.JobSnooze(0)
	default:
	}
	taken, err := b.take(ctx, a)
	if errors.Is(err, task.ErrElsewhere) {
		// A retry of this builder's infrastructure failure: another
		// builder of the platform is online to take it.
		return river.JobSnooze(elsewhereSnooze)
	}
	if errors.Is(err, errDisabled) {
		// Disabled a moment ago: Run stops this feed.
		b.setEnabled(false)
		return river.JobSnooze(0)
	}
	if err != nil || taken.Attempt == 0 {
		return err
	}
	b.mu.Lock()
	plat.Timeout = taken.Timeout // for River's Timeout of the next River jobs too
	b.mu.Unlock()
	return b.runAttempt(ctx, a, plat, taken)
}

// elsewhereSnooze is how long a River job this builder leaves to another
// builder (task.ErrElsewhere) waits before any builder may fetch it again.
const elsewhereSnooze = 2 * time.Second

// errStale means a write was refused because the attempt is not current.
var errStale = task.ErrStale

// retry runs fn until it succeeds, returns errStale, ctx ends, or five
// minutes have passed, so that a database restart costs no build.
func retry(ctx context.Context, log *slog.Logger, what string, fn func(context.Context) error) error {
	deadline := time.Now().Add(5 * time.Minute)
	wait := time.Second
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		err := fn(cctx)
		cancel()
		if err == nil || errors.Is(err, errStale) || errors.Is(err, blob.ErrCorrupt) || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		log.Warn(what+" failed; retrying", "err", err, "in", wait)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return err
		}
		wait = min(2*wait, 20*time.Second)
	}
}

// fail finishes an attempt that could not even start building, failed at
// stage (a task.Stage constant).
func (b *Builder) fail(ctx context.Context, log *slog.Logger, a riverjob.BuildArgs, attempt int, stage, reason string) error {
	info := &buildInfo{Builder: b.cfg.Name, Job: a.JobID, Task: a.TaskID, Attempt: attempt, Status: "failed", Reason: reason,
		Stage: stage, StartedAt: time.Now().UTC(), FinishedAt: time.Now().UTC()}
	body, _ := json.Marshal(info)
	return b.finishAttempt(ctx, log, a, attempt, info, body, nil, nil)
}

// finishAttempt finishes the attempt (finish), trying again while the
// database is away. A task requeued because its attempt failed for the
// farm's fault has its River job snooze for the platform's backoff.
func (b *Builder) finishAttempt(ctx context.Context, log *slog.Logger, a riverjob.BuildArgs, attempt int, info *buildInfo,
	body []byte, files []artifactFile, live *liveLog) error {
	var fin task.Finished
	err := retry(context.WithoutCancel(ctx), log, "finishing", func(ctx context.Context) (err error) {
		fin, err = b.finish(ctx, a, attempt, info, body, files, live)
		return err
	})
	if errors.Is(err, errStale) {
		log.Info("finish refused: the attempt is no longer current; nothing was stored")
		return nil
	}
	if err != nil {
		return err
	}
	if fin.Retried {
		log.Info("failed for the farm's fault: the task is retried", "stage", info.failureStage(), "reason", info.Reason, "in", fin.RetryAfter)
		return river.JobSnooze(fin.RetryAfter)
	}
	log.Info("finished", "status", info.Status, "reason", info.Reason)
	return nil
}

// finish is protocol step 4 (task.Finish): the end of the log, artifacts,
// build info and final status at once, refused (errStale, nothing stored)
// when the attempt is not current. When every artifact is small enough to go
// in the statement, the finish goes with those of other slots that end at
// the same moment (task.FinishMany); when there are larger ones, their blobs
// are stored first in a transaction with it. fin says whether the task is
// retried.
func (b *Builder) finish(ctx context.Context, a riverjob.BuildArgs, attempt int, info *buildInfo, infoJSON []byte,
	files []artifactFile, live *liveLog) (fin task.Finished, err error) {
	held := b.attempt(a.TaskID, attempt)
	res := task.Result{Status: task.Status(info.Status), Reason: info.Reason, FailureStage: info.failureStage(), BuildInfo: infoJSON}
	if live != nil {
		res.LogTail = live.tail()
		_, res.LogTruncated = live.totals()
	}
	res.Artifacts = make([]task.Artifact, len(files))
	var large []int
	for i, f := range files {
		data, ok, err := f.small()
		if err != nil {
			return fin, fmt.Errorf("reading %s: %w", f.name, err)
		}
		res.Artifacts[i] = task.Artifact{Kind: f.kind, Name: f.name, Data: data}
		if !ok {
			large = append(large, i)
		}
	}
	if len(large) == 0 {
		o, err := b.finishes.do(ctx, task.Finishing{Task: a.TaskID, Attempt: attempt, Result: res})
		if err == nil {
			err = o.Err
		}
		return o.Finished, err
	}
	tx, err := b.db.Begin(ctx)
	if err != nil {
		return fin, fmt.Errorf("finishing task %d: %w", a.TaskID, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	// Refuse early, before storing any bytes, when the attempt is stale;
	// task.Finish checks again under the lock.
	current, err := task.IsHeld(ctx, tx, held)
	if err != nil {
		return fin, err
	}
	if !current {
		return fin, errStale
	}
	for _, i := range large {
		f := files[i]
		blobInfo, err := f.store(ctx, tx)
		if err != nil {
			return fin, fmt.Errorf("storing %s: %w", f.name, err)
		}
		res.Artifacts[i].SHA256, res.Artifacts[i].Size = blobInfo.Sum[:], blobInfo.Size
	}
	if fin, err = task.Finish(ctx, tx, held, res); err != nil {
		return fin, err
	}
	if err := tx.Commit(ctx); err != nil {
		return fin, fmt.Errorf("finishing task %d: %w", a.TaskID, err)
	}
	return fin, nil
}

// attempt names one of this builder's attempts for the task protocol.
func (b *Builder) attempt(taskID int64, number int) task.Attempt {
	return task.Attempt{Task: taskID, Number: number, Builder: b.cfg.Name}
}

// giveBack is protocol step 5 (task.GiveBack): the task goes back to
// pending without counting as lost, the attempt is recorded as returned,
// and the River job is made available again at once (JobSnooze(0) does not
// spend a River attempt).
func (b *Builder) giveBack(ctx context.Context, log *slog.Logger, a riverjob.BuildArgs, attempt int) error {
	err := retry(context.WithoutCancel(ctx), log, "giving back", func(ctx context.Context) error {
		return task.GiveBack(ctx, b.db, b.attempt(a.TaskID, attempt))
	})
	if errors.Is(err, errStale) {
		log.Info("nothing to give back: the attempt is no longer current")
		return nil
	}
	if err != nil {
		return err
	}
	log.Info("given back")
	return river.JobSnooze(0)
}
