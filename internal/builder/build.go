package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

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

// artifactFile is a file to store as an artifact.
type artifactFile struct {
	path, name, kind string
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
