package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/kiln-build/kiln/internal/backend"
	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/sandbox"
	"github.com/kiln-build/kiln/jobs"
)

// sourcePackage is one package of the job, as fetched into the work dir.
type sourcePackage struct {
	Seq      int    `json:"seq"`
	FileName string `json:"file_name"`
	sum      blob.Sum
	files    []sourceFile
	dir      string
}

type sourceFile struct {
	name string
	sum  blob.Sum
}

// packageResult is one package's line in the build-info record.
type packageResult struct {
	Seq       int      `json:"seq"`
	FileName  string   `json:"file_name"`
	Status    string   `json:"status"` // succeeded, failed, not_built
	Tries     int      `json:"tries"`
	Error     string   `json:"error,omitempty"`
	Artifacts []string `json:"artifacts,omitempty"`
	Seconds   float64  `json:"seconds"`
}

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

// artifactFile is a file to store as an artifact.
type artifactFile struct {
	path, name, kind string
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

// runAttempt builds a taken attempt and finishes it, gives it back, or
// abandons it when it was fenced off.
func (b *Builder) runAttempt(ctx context.Context, a jobs.BuildArgs, plat *platform, attempt int, policy string, timeout time.Duration) error {
	log := b.log.With("task", a.TaskID, "attempt", attempt, "job", a.JobID, "platform", a.Platform)
	log.Info("building")
	buildCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	run := &attemptRun{task: a.TaskID, attempt: attempt, cancel: cancel}
	b.mu.Lock()
	b.running[a.TaskID] = run
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		delete(b.running, a.TaskID)
		b.mu.Unlock()
	}()

	dir := filepath.Join(b.cfg.WorkDir, fmt.Sprintf("task-%d-%d", a.TaskID, attempt))
	defer os.RemoveAll(dir)
	live, err := newLiveLog(b, a.TaskID, attempt, filepath.Join(b.cfg.WorkDir, fmt.Sprintf("task-%d-%d.log", a.TaskID, attempt)),
		func() { cancel(errFenced) })
	if err != nil {
		return b.fail(ctx, log, a, attempt, fmt.Sprintf("builder %s could not start a log: %v", b.cfg.Name, err))
	}
	defer os.Remove(live.path)

	info := &buildInfo{
		Builder: b.cfg.Name, Host: b.cfg.Host, Version: b.cfg.Version, Platform: plat.name, Arch: plat.arch,
		Backend: plat.backend.Name(), Tools: plat.versions, BuildUser: userName(b.user), Policy: policy,
		Job: a.JobID, Task: a.TaskID, Attempt: attempt, StartedAt: time.Now().UTC(),
	}
	fmt.Fprintf(live, "kiln-builder %s (%s) on %s: task %d attempt %d, job %d, platform %s, backend %s, policy %s\n",
		b.cfg.Name, b.cfg.Version, b.cfg.Host, a.TaskID, attempt, a.JobID, plat.name, plat.backend.Name(), policy)

	timed, cancelTimeout := context.WithTimeoutCause(buildCtx, timeout, errTimedOut)
	defer cancelTimeout()
	var outputs []artifactFile
	pkgs, err := b.fetch(timed, a.JobID, dir)
	if err == nil {
		err = b.user.Chown(dir)
	}
	if err != nil {
		fmt.Fprintf(live, "kiln: fetching the sources failed: %v\n", err)
		info.Status, info.Reason = "failed", "fetching the sources: "+err.Error()
	} else {
		outputs = b.buildAll(timed, live, plat, policy, dir, pkgs, info)
	}

	// Why did it end?
	run.ending.Store(true)
	cause := context.Cause(timed)
	switch {
	case errors.Is(cause, errFenced):
		live.close(ctx)
		log.Info("attempt abandoned: it is no longer current")
		return nil
	case errors.Is(cause, errShutdown):
		fmt.Fprintf(live, "kiln: builder %s is shutting down; the task is given back and will be built again\n", b.cfg.Name)
		live.close(ctx)
		return b.giveBack(ctx, log, a, attempt)
	case errors.Is(cause, errTimedOut), errors.Is(cause, context.DeadlineExceeded):
		info.Status = "timed_out"
		info.Reason = fmt.Sprintf("the build ran longer than the platform's timeout of %s and was killed", timeout)
		fmt.Fprintf(live, "kiln: %s\n", info.Reason)
	}
	info.FinishedAt = time.Now().UTC()
	fmt.Fprintf(live, "kiln: task %d attempt %d ends %s", a.TaskID, attempt, info.Status)
	if info.Reason != "" {
		fmt.Fprintf(live, ": %s", info.Reason)
	}
	fmt.Fprintln(live)
	live.close(ctx)
	if live.fenced() {
		log.Info("attempt abandoned: it is no longer current")
		return nil
	}

	infoPath := filepath.Join(b.cfg.WorkDir, fmt.Sprintf("task-%d-%d.buildinfo.json", a.TaskID, attempt))
	defer os.Remove(infoPath)
	body, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding build info: %w", err)
	}
	if err := os.WriteFile(infoPath, append(body, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing build info: %w", err)
	}
	outputs = append(outputs,
		artifactFile{path: live.path, name: "build.log", kind: backend.KindLog},
		artifactFile{path: infoPath, name: "kiln-buildinfo.json", kind: backend.KindBuildInfo})
	// The build is over: its result is stored even when ctx ends now.
	err = retry(context.WithoutCancel(ctx), log, "finishing", func(ctx context.Context) error {
		return b.finish(ctx, a, attempt, info, body, outputs, live)
	})
	if errors.Is(err, errStale) {
		log.Info("finish refused: the attempt is no longer current; nothing was stored")
		return nil
	}
	if err != nil {
		return err
	}
	log.Info("finished", "status", info.Status, "reason", info.Reason)
	return nil
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

// fetch writes the job's source packages into dir/p<seq>/.
func (b *Builder) fetch(ctx context.Context, job int64, dir string) ([]*sourcePackage, error) {
	var pkgs []*sourcePackage
	err := retry(ctx, b.log, "fetching sources", func(cctx context.Context) error {
		var err error
		pkgs, err = b.readPackages(cctx, job)
		return err
	})
	if err != nil {
		return nil, err
	}
	if len(pkgs) == 0 {
		return nil, fmt.Errorf("job %d has no packages", job)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	if err := os.Mkdir(filepath.Join(dir, "repo"), 0o755); err != nil {
		return nil, err
	}
	for _, p := range pkgs {
		p.dir = filepath.Join(dir, fmt.Sprintf("p%d", p.Seq))
		if err := os.Mkdir(p.dir, 0o755); err != nil {
			return nil, err
		}
		want := append([]sourceFile{{name: p.FileName, sum: p.sum}}, p.files...)
		for _, f := range want {
			err := retry(ctx, b.log, "fetching sources", func(cctx context.Context) error {
				path := filepath.Join(p.dir, f.name)
				os.Remove(path)
				return blob.WriteFile(cctx, b.db, f.sum, path)
			})
			if err != nil {
				return nil, fmt.Errorf("fetching %s: %w", f.name, err)
			}
		}
	}
	return pkgs, nil
}

func (b *Builder) readPackages(ctx context.Context, job int64) ([]*sourcePackage, error) {
	rows, err := b.db.Query(ctx, `SELECT p.seq, p.file_name, p.blob_sha256,
			coalesce(array_agg(f.file_name ORDER BY f.file_name) FILTER (WHERE f.file_name IS NOT NULL), '{}'),
			coalesce(array_agg(f.blob_sha256 ORDER BY f.file_name) FILTER (WHERE f.file_name IS NOT NULL), '{}')
		FROM kiln.package p LEFT JOIN kiln.package_file f ON f.job_id = p.job_id AND f.seq = p.seq
		WHERE p.job_id = $1 GROUP BY p.seq, p.file_name, p.blob_sha256 ORDER BY p.seq`, job)
	if err != nil {
		return nil, fmt.Errorf("reading the packages of job %d: %w", job, err)
	}
	defer rows.Close()
	var pkgs []*sourcePackage
	for rows.Next() {
		p := &sourcePackage{}
		var sum []byte
		var names []string
		var sums [][]byte
		if err := rows.Scan(&p.Seq, &p.FileName, &sum, &names, &sums); err != nil {
			return nil, fmt.Errorf("reading the packages of job %d: %w", job, err)
		}
		p.sum = blob.Sum(sum)
		for i := range names {
			p.files = append(p.files, sourceFile{name: names[i], sum: blob.Sum(sums[i])})
		}
		pkgs = append(pkgs, p)
	}
	return pkgs, rows.Err()
}

// buildAll builds the packages in seq order. Under policy retry, packages
// that failed are tried again in further passes while a pass builds at least
// one more; under immediate, the first failure ends the build. Results of
// built packages go into the local repository dir/repo for later ones. It
// fills info and returns the files to store.
func (b *Builder) buildAll(ctx context.Context, live io.Writer, plat *platform, policy, dir string,
	pkgs []*sourcePackage, info *buildInfo) []artifactFile {
	repo := filepath.Join(dir, "repo")
	var runner sandbox.Runner = b.sandbox(dir)
	if plat.backend.SelfIsolating() {
		runner = &sandbox.Plain{Home: dir}
	}
	results := make([]packageResult, len(pkgs))
	for i, p := range pkgs {
		results[i] = packageResult{Seq: p.Seq, FileName: p.FileName, Status: "not_built"}
	}
	var files []artifactFile
	names := map[string]bool{"build.log": true, "kiln-buildinfo.json": true}
	pending := make([]int, len(pkgs))
	for i := range pkgs {
		pending[i] = i
	}
	stop := false
	for pass := 1; len(pending) > 0 && !stop; pass++ {
		info.Passes = pass
		var failed []int
		for _, i := range pending {
			if ctx.Err() != nil {
				stop = true
				break
			}
			p := pkgs[i]
			r := &results[i]
			r.Tries++
			fmt.Fprintf(live, "\n=== kiln: building %s (package %d of %d, pass %d) ===\n", p.FileName, i+1, len(pkgs), pass)
			pkgDir := p.dir
			if r.Tries > 1 {
				// A fresh copy of the sources for another try.
				var err error
				if pkgDir, err = retryDir(p, r.Tries, b.user); err != nil {
					fmt.Fprintf(live, "kiln: preparing another try: %v\n", err)
					failed = append(failed, i)
					continue
				}
			}
			start := time.Now()
			out, err := plat.backend.Build(ctx, runner, backend.Request{
				Source: filepath.Join(pkgDir, p.FileName), Dir: pkgDir, Repo: repo, Log: live,
			})
			r.Seconds += time.Since(start).Seconds()
			if err != nil {
				r.Status, r.Error = "failed", err.Error()
				fmt.Fprintf(live, "=== kiln: %s failed: %v ===\n", p.FileName, err)
				failed = append(failed, i)
				if policy == "immediate" {
					stop = true
					break
				}
				continue
			}
			r.Status, r.Error = "succeeded", ""
			for _, o := range out {
				name := filepath.Base(o.Path)
				if names[name] {
					fmt.Fprintf(live, "kiln: %s made %s again; the earlier file is kept\n", p.FileName, name)
					continue
				}
				names[name] = true
				files = append(files, artifactFile{path: o.Path, name: name, kind: o.Kind})
				r.Artifacts = append(r.Artifacts, name)
				if o.Kind == backend.KindPackage {
					if err := linkInto(o.Path, filepath.Join(repo, name)); err != nil {
						fmt.Fprintf(live, "kiln: adding %s to the local repository: %v\n", name, err)
					}
				}
			}
			fmt.Fprintf(live, "=== kiln: %s built: %s ===\n", p.FileName, strings.Join(r.Artifacts, ", "))
		}
		progress := len(failed) < len(pending)
		pending = failed
		if policy != "retry" || !progress {
			break
		}
	}
	info.Packages = results
	info.Status, info.Reason = outcome(results, policy)
	return files
}

// outcome is the task's status and reason from its packages' results.
func outcome(results []packageResult, policy string) (string, string) {
	var failed, notBuilt []string
	for _, r := range results {
		switch r.Status {
		case "failed":
			failed = append(failed, r.FileName)
		case "not_built":
			notBuilt = append(notBuilt, r.FileName)
		}
	}
	if len(failed) == 0 && len(notBuilt) == 0 {
		return "succeeded", ""
	}
	reason := fmt.Sprintf("%d of %d packages failed to build: %s", len(failed), len(results), strings.Join(failed, ", "))
	if len(notBuilt) > 0 {
		reason += fmt.Sprintf("; not built (policy %s): %s", policy, strings.Join(notBuilt, ", "))
	}
	return "failed", reason
}

// retryDir makes a fresh directory with the package's sources for try n.
func retryDir(p *sourcePackage, n int, u *sandbox.User) (string, error) {
	dir := fmt.Sprintf("%s.try%d", p.dir, n)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", err
	}
	names := []string{p.FileName}
	for _, f := range p.files {
		names = append(names, f.name)
	}
	for _, n := range names {
		if err := linkInto(filepath.Join(p.dir, n), filepath.Join(dir, n)); err != nil {
			return "", err
		}
	}
	return dir, u.Chown(dir)
}

// linkInto hard-links src to dst, copying when linking is not possible.
func linkInto(src, dst string) error {
	if err := os.Link(src, dst); err == nil {
		return nil
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
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
		blobInfo, err := blob.PutFile(ctx, tx, f.path, true)
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
