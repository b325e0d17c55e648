package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/jobs"
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
	Passes     int               `json:"passes"`
	Packages   []packageResult   `json:"packages"`
}

// take is protocol step 1. It returns the attempt number, 0 when the task
// is no longer pending, the job's policy and the platform's current timeout;
// errDisabled when the builder has been disabled.
func (b *Builder) take(ctx context.Context, a jobs.BuildArgs) (attempt int, policy string, timeout time.Duration, err error) {
	tx, err := b.db.Begin(ctx)
	if err != nil {
		return 0, "", 0, fmt.Errorf("taking task %d: %w", a.TaskID, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := tx.Exec(ctx, "SELECT kiln.lock_job($1)", a.JobID); err != nil {
		return 0, "", 0, fmt.Errorf("taking task %d: locking job %d: %w", a.TaskID, a.JobID, err)
	}
	var seconds float64
	var enabled bool
	if err := tx.QueryRow(ctx, `SELECT j.policy, extract(epoch FROM p.timeout)::float8,
			coalesce((SELECT b.enabled FROM kiln.builder b WHERE b.name = $3), false)
		FROM kiln.job j, kiln.platform p
		WHERE j.id = $1 AND p.name = $2`, a.JobID, a.Platform, b.cfg.Name).Scan(&policy, &seconds, &enabled); err != nil {
		if errors.Is(err, pgx.ErrNoRows) {
			return 0, "", 0, nil
		}
		return 0, "", 0, fmt.Errorf("taking task %d: locking job %d: %w", a.TaskID, a.JobID, err)
	}
	if !enabled {
		return 0, "", 0, errDisabled
	}
	err = tx.QueryRow(ctx, `UPDATE kiln.task SET status = 'building', builder = $3, attempt = attempt + 1,
			started_at = now(), heartbeat_at = now(), reason = NULL
		WHERE id = $1 AND job_id = $2 AND platform = $4 AND status = 'pending' RETURNING attempt`,
		a.TaskID, a.JobID, b.cfg.Name, a.Platform).Scan(&attempt)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, "", 0, nil
	}
	if err != nil {
		return 0, "", 0, fmt.Errorf("taking task %d: %w", a.TaskID, err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO kiln.attempt (task_id, attempt, builder) VALUES ($1, $2, $3)",
		a.TaskID, attempt, b.cfg.Name); err != nil {
		return 0, "", 0, fmt.Errorf("recording attempt %d of task %d: %w", attempt, a.TaskID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, "", 0, fmt.Errorf("taking task %d: %w", a.TaskID, err)
	}
	return attempt, policy, time.Duration(seconds * float64(time.Second)), nil
}

// buildTask works a build River job of the feed whose quit channel is
// given: it waits for a free slot, takes the task, builds it and finishes it
// (or gives it back on shutdown). A River job that is not taken because the
// builder stops or its feed stopped (the builder was disabled) goes back to
// its queue at once: JobSnooze(0) spends no River attempt.
func (b *Builder) buildTask(ctx context.Context, a jobs.BuildArgs, quit <-chan struct{}) error {
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
	attempt, policy, timeout, err := b.take(ctx, a)
	if errors.Is(err, errDisabled) {
		// Disabled a moment ago: Run stops this feed.
		b.setEnabled(false)
		return river.JobSnooze(0)
	}
	if err != nil || attempt == 0 {
		return err
	}
	b.mu.Lock()
	plat.timeout = timeout // for River's Timeout of the next River jobs too
	b.mu.Unlock()
	return b.runAttempt(ctx, a, plat, attempt, policy, timeout)
}

// errStale means a write was refused because the attempt is not current.
var errStale = errors.New("stale attempt")

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

// fail finishes an attempt that could not even start building.
func (b *Builder) fail(ctx context.Context, log *slog.Logger, a jobs.BuildArgs, attempt int, reason string) error {
	info := &buildInfo{Builder: b.cfg.Name, Job: a.JobID, Task: a.TaskID, Attempt: attempt, Status: "failed", Reason: reason,
		StartedAt: time.Now().UTC(), FinishedAt: time.Now().UTC()}
	body, _ := json.Marshal(info)
	err := retry(context.WithoutCancel(ctx), log, "finishing", func(ctx context.Context) error {
		return b.finish(ctx, a, attempt, info, body, nil, nil)
	})
	if errors.Is(err, errStale) {
		return nil
	}
	return err
}

// finish is protocol step 4: artifacts, build info and final status in one
// transaction, refused (errStale, nothing stored) when the attempt is not
// current.
func (b *Builder) finish(ctx context.Context, a jobs.BuildArgs, attempt int, info *buildInfo, infoJSON []byte,
	files []artifactFile, live *liveLog) error {
	tx, err := b.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("finishing task %d: %w", a.TaskID, err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	// Refuse early, before storing any bytes, when the attempt is stale;
	// the task update below re-checks under the lock.
	var current bool
	if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM kiln.task
		WHERE id = $1 AND attempt = $2 AND builder = $3 AND status = 'building')`, a.TaskID, attempt, b.cfg.Name).Scan(&current); err != nil {
		return fmt.Errorf("finishing task %d: %w", a.TaskID, err)
	}
	if !current {
		return errStale
	}
	for _, f := range files {
		blobInfo, err := f.store(ctx, tx)
		if err != nil {
			return fmt.Errorf("storing %s: %w", f.name, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kiln.artifact (task_id, attempt, kind, file_name, blob_sha256, size)
			VALUES ($1, $2, $3, $4, $5, $6)`, a.TaskID, attempt, f.kind, f.name, blobInfo.Sum[:], blobInfo.Size); err != nil {
			return fmt.Errorf("recording artifact %s: %w", f.name, err)
		}
	}
	if _, err := tx.Exec(ctx, "SELECT kiln.lock_job($1)", a.JobID); err != nil {
		return fmt.Errorf("finishing task %d: locking job: %w", a.TaskID, err)
	}
	var reason *string
	if info.Reason != "" {
		reason = &info.Reason
	}
	tag, err := tx.Exec(ctx, `UPDATE kiln.task SET status = $4, builder = NULL, finished_at = now(), reason = $5
		WHERE id = $1 AND attempt = $2 AND builder = $3 AND status = 'building'`,
		a.TaskID, attempt, b.cfg.Name, info.Status, reason)
	if err != nil {
		return fmt.Errorf("finishing task %d: %w", a.TaskID, err)
	}
	if tag.RowsAffected() == 0 {
		return errStale
	}
	var logBytes int64
	var truncated bool
	if live != nil {
		logBytes, truncated = live.totals()
	}
	if _, err := tx.Exec(ctx, `UPDATE kiln.attempt SET status = $3, finished_at = now(), reason = $4, build_info = $5,
			log_bytes = $6, log_truncated = $7
		WHERE task_id = $1 AND attempt = $2`, a.TaskID, attempt, info.Status, reason, infoJSON, logBytes, truncated); err != nil {
		return fmt.Errorf("finishing attempt %d of task %d: %w", attempt, a.TaskID, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("finishing task %d: %w", a.TaskID, err)
	}
	return nil
}

// giveBack is protocol step 5: the task goes back to pending without
// counting as lost, the attempt is recorded as returned, and the River job
// is made available again at once (JobSnooze(0) does not spend a River
// attempt).
func (b *Builder) giveBack(ctx context.Context, log *slog.Logger, a jobs.BuildArgs, attempt int) error {
	err := retry(context.WithoutCancel(ctx), log, "giving back", func(ctx context.Context) error {
		tx, err := b.db.Begin(ctx)
		if err != nil {
			return err
		}
		defer tx.Rollback(ctx) //nolint:errcheck
		if _, err := tx.Exec(ctx, "SELECT kiln.lock_job($1)", a.JobID); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `UPDATE kiln.task SET status = 'pending', builder = NULL, started_at = NULL, heartbeat_at = NULL
			WHERE id = $1 AND attempt = $2 AND builder = $3 AND status = 'building'`, a.TaskID, attempt, b.cfg.Name)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			return errStale
		}
		if _, err := tx.Exec(ctx, `UPDATE kiln.attempt SET status = 'returned', finished_at = now(), reason = $3
			WHERE task_id = $1 AND attempt = $2 AND status = 'building'`,
			a.TaskID, attempt, "given back: builder "+b.cfg.Name+" shut down"); err != nil {
			return err
		}
		return tx.Commit(ctx)
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
