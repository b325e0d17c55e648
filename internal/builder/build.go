package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/kiln-build/kiln/internal/backend"
	"github.com/kiln-build/kiln/internal/beneath"
	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/environment"
	"github.com/kiln-build/kiln/internal/sandbox"
	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/riverjob"
	"github.com/riverqueue/river"
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
	Seq      int    `json:"seq"`
	FileName string `json:"file_name"`
	Status   string `json:"status"` // succeeded, failed, not_built
	Tries    int    `json:"tries"`
	Error    string `json:"error,omitempty"`
	// Stage is where a failed package failed (a backend.Stage constant,
	// or task.StageOutOfDisk); Unsatisfiable is set when its build
	// dependencies could not be installed at all.
	Stage         string `json:"stage,omitempty"`
	Unsatisfiable bool   `json:"unsatisfiable,omitempty"`
	// Missing is what could not be installed, and why, when Unsatisfiable.
	Missing string `json:"missing,omitempty"`
	// BuildDepends are the packages and versions installed to build it
	// (Installed-Build-Depends of its .buildinfo, for Debian packages).
	BuildDepends map[string]string `json:"installed_build_depends,omitempty"`
	Artifacts    []string          `json:"artifacts,omitempty"`
	Seconds      float64           `json:"seconds"`
}

// artifactFile is a file to store as an artifact: the bytes in data, or
// the file open opens. Nothing of it is read through a path a build could
// have written: outputs are copies the builder made (through descriptors
// opened beneath the build's work directory) into a directory no build
// sees, the log is the builder's own file, the build-info record is in
// memory.
type artifactFile struct {
	name, kind string
	open       func() (*os.File, error)
	data       []byte
}

// small returns the artifact's bytes when they are few enough for the
// finish to carry (task.InlineLimit); ok is false when they are not.
func (f artifactFile) small() (data []byte, ok bool, err error) {
	if f.open == nil {
		if len(f.data) > task.InlineLimit {
			return nil, false, nil
		}
		return append([]byte{}, f.data...), true, nil
	}
	file, err := f.open()
	if err != nil {
		return nil, false, err
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return nil, false, err
	}
	if st.Size() > task.InlineLimit {
		return nil, false, nil
	}
	data, err = io.ReadAll(io.LimitReader(file, task.InlineLimit+1))
	if err != nil {
		return nil, false, err
	}
	if len(data) > task.InlineLimit {
		return nil, false, nil // it grew
	}
	if data == nil {
		data = []byte{}
	}
	return data, true, nil
}

// store stores the artifact's bytes as a verified blob.
func (f artifactFile) store(ctx context.Context, db blob.DB) (blob.Info, error) {
	if f.open == nil {
		return blob.Put(ctx, db, bytes.NewReader(f.data), true)
	}
	file, err := f.open()
	if err != nil {
		return blob.Info{}, err
	}
	defer file.Close()
	return blob.Put(ctx, db, file, true)
}

// attemptDirs are the directories of one attempt, below the builder's work
// directory:
//
//	task-T-A/        the attempt (0711: bubblewrap, as the build uid, passes through)
//	task-T-A/src/    the sources as fetched, never seen by a build (0700)
//	task-T-A/out/    copies of the results, never seen by a build (0700)
//	task-T-A/repo/   the packages built so far, read-only in the sandbox
//	task-T-A/build/  the build's work directory, writable, owned by its uid
//	task-T-A/build/tmp/  its private /tmp
type attemptDirs struct {
	top, src, out, repo, build string
	// repos are the buckets' repositories the builds install from.
	repos []backend.Repository
	// outRoot is out/ opened; outputs are stored from it.
	outRoot *beneath.Root
}

// makeAttemptDirs makes the directories of an attempt; build/ and its tmp/
// are given to id (the build's host uid when the builder is root).
func makeAttemptDirs(top string, id *sandbox.ID) (*attemptDirs, error) {
	d := &attemptDirs{top: top, src: filepath.Join(top, "src"), out: filepath.Join(top, "out"),
		repo: filepath.Join(top, "repo"), build: filepath.Join(top, "build")}
	if err := os.Mkdir(top, 0o711); err != nil {
		return nil, err
	}
	for dir, mode := range map[string]os.FileMode{d.src: 0o700, d.out: 0o700, d.repo: 0o755} {
		if err := os.Mkdir(dir, mode); err != nil {
			return nil, err
		}
	}
	// Made and given away before any build ran: nothing below is a
	// build's yet.
	for _, dir := range []string{d.build, filepath.Join(d.build, "tmp")} {
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, err
		}
		if id != nil {
			if err := os.Chown(dir, int(id.UID), int(id.GID)); err != nil {
				return nil, err
			}
		}
	}
	var err error
	d.outRoot, err = beneath.OpenRoot(d.out)
	return d, err
}

func (d *attemptDirs) close() {
	if d.outRoot != nil {
		d.outRoot.Close()
	}
}

// runAttempt builds a taken attempt and finishes it, gives it back, or
// abandons it when it was fenced off.
func (b *Builder) runAttempt(ctx context.Context, a riverjob.BuildArgs, plat *loadedPlatform, taken task.Taken) error {
	attempt, policy, timeout := taken.Attempt, taken.Policy, taken.Timeout
	log := b.log.With("task", a.TaskID, "attempt", attempt, "job", a.JobID, "platform", a.Platform)
	log.Info("building")
	buildCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	run := &attemptRun{task: a.TaskID, attempt: attempt, cancel: cancel, takenBy: taken.Session}
	b.addRun(run)
	defer b.removeRun(a.TaskID)

	// A root builder gives each build a host uid of its own; it goes back
	// to the pool once the attempt's files are gone.
	var id *sandbox.ID
	switch {
	case plat.Backend == "sbuild" && b.buildUser != nil:
		// sbuild and mock run as the build user and isolate builds
		// themselves: the package directories are that account's.
		id = &sandbox.ID{UID: b.buildUser.UID, GID: b.buildUser.GID}
	case b.ids != nil:
		got := b.ids.Get()
		id = &got
		defer b.ids.Put(got)
	}
	top := filepath.Join(b.cfg.WorkDir, fmt.Sprintf("task-%d-%d", a.TaskID, attempt))
	defer func() {
		if err := b.removeTree(top); err != nil {
			log.Warn("removing the attempt's directory", "err", err)
		}
	}()
	live, err := newLiveLog(b, a.TaskID, attempt, filepath.Join(b.cfg.WorkDir, fmt.Sprintf("task-%d-%d.log", a.TaskID, attempt)),
		func() { cancel(errFenced) })
	if err != nil {
		return b.fail(ctx, log, a, attempt, stageOf(err, b.cfg.WorkDir, task.StagePrepareEnvironment),
			fmt.Sprintf("builder %s could not start a log: %v", b.cfg.Name, err))
	}
	defer os.Remove(live.path)

	info := &buildInfo{
		Builder: b.cfg.Name, Host: b.cfg.Host, Version: b.cfg.Version, Platform: plat.Name, Arch: plat.Arch,
		Backend: plat.backend.Name(), Tools: plat.versions, BuildUser: buildUser(plat, id), Policy: policy,
		Job: a.JobID, Task: a.TaskID, Attempt: attempt, StartedAt: time.Now().UTC(),
	}
	fmt.Fprintf(live, "kiln-builder %s (%s) on %s: task %d attempt %d, job %d, platform %s, backend %s, policy %s\n",
		b.cfg.Name, b.cfg.Version, b.cfg.Host, a.TaskID, attempt, a.JobID, plat.Name, plat.backend.Name(), policy)
	if !plat.backend.SelfIsolating() {
		fmt.Fprintf(live, "kiln: sandbox: builds as %s; limits: %d processes, %s of memory, %s of disk\n",
			buildUser(plat, id), plat.limits.Processes, sandbox.Bytes(plat.limits.Memory), sandbox.Bytes(plat.limits.Disk))
	}

	timed, cancelTimeout := context.WithTimeoutCause(buildCtx, timeout, errTimedOut)
	defer cancelTimeout()
	var outputs []artifactFile
	dirs, err := makeAttemptDirs(top, id)
	if dirs != nil {
		defer dirs.close()
	}
	var pkgs []*sourcePackage
	if err == nil {
		pkgs, err = b.fetch(timed, a.JobID, dirs.src)
	}
	if err == nil {
		dirs.repos, err = b.repositories(timed, plat, info, live)
	}
	// Fetching the sources and the repositories' keys from the farm, and
	// the environment, is the farm's part: a failure there is retried.
	if err != nil {
		fmt.Fprintf(live, "kiln: fetching the sources failed: %v\n", err)
		info.Status, info.Reason, info.Stage = "failed", "fetching the sources: "+err.Error(), stageOf(err, top, backend.StageEnvironment)
	} else if taskPlat, release, err := b.inEnvironment(timed, plat, info, live); err != nil {
		fmt.Fprintf(live, "kiln: preparing the environment failed: %v\n", err)
		info.Status, info.Reason, info.Stage = "failed", "preparing the environment: "+err.Error(), stageOf(err, top, backend.StageEnvironment)
	} else {
		outputs = b.buildAll(timed, live, taskPlat, policy, dirs, id, pkgs, info)
		release()
		if removed, err := b.cfg.Environments.Evict(); err != nil {
			log.Warn("evicting cached environments", "err", err)
		} else if len(removed) > 0 {
			log.Info("evicted cached environments", "sha256", removed)
		}
	}
	// The build's own files go now: a build that filled the disk leaves
	// room for the end of the log.
	if dirs != nil {
		if err := b.removeTree(dirs.build); err != nil {
			log.Warn("removing the build's work directory", "err", err)
		}
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
	// What is left of the log goes with the finish, in its one statement.
	live.closeForFinish(ctx)
	if live.fenced() {
		log.Info("attempt abandoned: it is no longer current")
		return nil
	}

	// The build-info record stays in memory: no write to a disk a build
	// may have filled stands between the build and its result.
	body, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding build info: %w", err)
	}
	logPath := live.path
	outputs = append(outputs,
		artifactFile{name: "build.log", kind: backend.KindLog, open: func() (*os.File, error) { return os.Open(logPath) }},
		artifactFile{name: "kiln-buildinfo.json", kind: backend.KindBuildInfo, data: append(body, '\n')})
	// The build is over: its result is stored even when ctx ends now.
	err = b.finishAttempt(ctx, log, a, attempt, info, body, outputs, live)
	var rerr *river.JobSnoozeError
	if err == nil || errors.As(err, &rerr) || ctx.Err() != nil {
		return err
	}
	// The results could not be stored: the attempt fails at the upload
	// stage (the farm's fault), with the build-info record alone.
	log.Warn("storing the results failed", "err", err)
	info.Status, info.Reason, info.Stage, info.Unsatisfiable = "failed", "storing the results failed: "+err.Error(), task.StageUpload, false
	if body, err = json.MarshalIndent(info, "", "  "); err != nil {
		return fmt.Errorf("encoding build info: %w", err)
	}
	return b.finishAttempt(ctx, log, a, attempt, info, body,
		[]artifactFile{{name: "kiln-buildinfo.json", kind: backend.KindBuildInfo, data: append(body, '\n')}}, live)
}

// inEnvironment returns the platform to build a task on: plat itself, or,
// for an sbuild platform without a "chroot" setting, plat with a backend
// made for its current environment (kiln.platform_environment), whose
// tarball is fetched into the builder's cache when it is not there yet.
// The environment goes into info; release lets the cache evict the tarball
// again.
func (b *Builder) inEnvironment(ctx context.Context, plat *loadedPlatform, info *buildInfo, live io.Writer) (*loadedPlatform, func(), error) {
	if plat.Backend != "sbuild" {
		return plat, func() {}, nil
	}
	if _, ok := plat.BackendSettings["chroot"]; ok {
		return plat, func() {}, nil
	}
	env, err := environment.Current(ctx, b.db, plat.Name)
	if errors.Is(err, environment.ErrNone) {
		return nil, nil, fmt.Errorf("no environment (kiln admin environment create %s ...)", plat.Name)
	}
	if err != nil {
		return nil, nil, err
	}
	fetchStart := time.Now()
	cached, err := b.cfg.Environments.Use(ctx, b.db, env.Sum)
	if err != nil {
		return nil, nil, err
	}
	path, release := cached.Path, cached.Release
	settings := make(map[string]any, len(plat.BackendSettings)+2)
	for k, v := range plat.BackendSettings {
		settings[k] = v
	}
	settings["chroot"], settings["chroot_mode"] = path, "unshare"
	be, err := backend.New(backend.Platform{Backend: plat.Backend, Arch: plat.Arch, Settings: settings}, b.cfg.Backend)
	if err != nil {
		release()
		return nil, nil, err
	}
	info.Environment = &environmentRef{ID: env.ID, SHA256: env.Sum.String()}
	from := "from this builder's cache"
	if cached.Fetched {
		from = fmt.Sprintf("fetched from the database into this builder's cache in %s", time.Since(fetchStart).Round(time.Millisecond))
	}
	fmt.Fprintf(live, "kiln: environment %d of platform %s (sha256 %s, %d bytes, made %s by %s), %s\n",
		env.ID, plat.Name, env.Sum, env.Size, env.Created.UTC().Format(time.RFC3339), env.Builder, from)
	taskPlat := *plat
	taskPlat.backend = be
	return &taskPlat, release, nil
}

// environmentRef names the environment a task was built in, in its
// build-info record.
type environmentRef struct {
	ID     int64  `json:"id"`
	SHA256 string `json:"sha256"`
}

// removeTree removes a directory a build may have written into. A build
// running as the builder's own uid may have made directories unreadable
// to it: they are opened up first (never following a link). An sbuild
// build killed part way leaves its chroot, of the subordinate ids of the
// user sbuild ran as: a rootless builder removes what is left of that with
// those ids mapped (sandbox.RemoveMapped); a root builder can anyway.
func (b *Builder) removeTree(dir string) error {
	if os.RemoveAll(dir) == nil {
		return nil
	}
	root, err := beneath.OpenRoot(dir)
	if err == nil {
		err = root.Unlock()
		root.Close()
	}
	if err == nil {
		err = os.RemoveAll(dir)
	}
	if err == nil || !b.removeMapped {
		return err
	}
	return sandbox.RemoveMapped(context.Background(), nil, dir)
}

// buildUser says whom builds run as, for the log and the build-info record.
func buildUser(plat *loadedPlatform, id *sandbox.ID) string {
	switch {
	case plat.backend.SelfIsolating():
		return "the builder's own user (the backend isolates builds itself)"
	case id == nil:
		return fmt.Sprintf("a user namespace of its own (root inside; uid %d for rpmbuild), the builder's uid outside", sandbox.BuildUID)
	}
	return fmt.Sprintf("a user namespace of its own (root inside; uid %d for rpmbuild), uid %d outside", sandbox.BuildUID, id.UID)
}

// fetch writes the job's source packages into src/p<seq>/: the pristine
// copy, which no build ever sees; every try of a package builds a fresh
// copy of it.
func (b *Builder) fetch(ctx context.Context, job int64, src string) ([]*sourcePackage, error) {
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
	for _, p := range pkgs {
		p.dir = filepath.Join(src, fmt.Sprintf("p%d", p.Seq))
		if err := os.Mkdir(p.dir, 0o700); err != nil {
			return nil, err
		}
		for _, f := range p.sourceFiles() {
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

// sourceFiles are the package's files: the SRPM or .dsc and the rest.
func (p *sourcePackage) sourceFiles() []sourceFile {
	return append([]sourceFile{{name: p.FileName, sum: p.sum}}, p.files...)
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
// whose build dependencies were unsatisfiable (or that failed in a way the
// backend does not explain) are tried again in further passes while a pass
// builds at least one more; under immediate, the first failure ends the build. A build that
// passes a limit of the platform ends the attempt at once. Each try builds
// a fresh copy of the package's pristine sources in the work directory;
// its results are copied out (through descriptors opened beneath the work
// directory, symbolic links refused) before the next build runs, and its
// packages go into the local repository for later ones. It fills info and
// returns the files to store.
func (b *Builder) buildAll(ctx context.Context, live io.Writer, plat *loadedPlatform, policy string, dirs *attemptDirs,
	id *sandbox.ID, pkgs []*sourcePackage, info *buildInfo) []artifactFile {
	var runner sandbox.Runner = b.sandbox(dirs, id, plat.limits)
	if plat.backend.SelfIsolating() {
		plain := &sandbox.Plain{Home: dirs.build, Work: dirs.build, Limits: plat.limits}
		if plat.Backend == "sbuild" {
			plain.User = b.buildUser
		}
		runner = plain
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
	var limit *sandbox.LimitError
	stop := false
	for pass := 1; len(pending) > 0 && !stop; pass++ {
		info.Passes = pass
		var failed []int
		done := 0
		for _, i := range pending {
			if ctx.Err() != nil {
				stop = true
				break
			}
			p := pkgs[i]
			r := &results[i]
			r.Tries++
			fmt.Fprintf(live, "\n=== kiln: building %s (package %d of %d, pass %d) ===\n", p.FileName, i+1, len(pkgs), pass)
			start := time.Now()
			out, err := b.buildOne(ctx, runner, plat, dirs, id, p, r.Tries, live)
			r.Seconds += time.Since(start).Seconds()
			var built []artifactFile
			if err == nil {
				built, err = collectOutputs(dirs, out, names, live)
			}
			if err != nil {
				r.Status, r.Error, r.Stage, r.Unsatisfiable, r.Missing = "failed", err.Error(), stageOf(err, dirs.build, backend.StageBuild), false, ""
				var se *backend.StageError
				if errors.As(err, &se) {
					r.Unsatisfiable = se.Unsatisfiable
					if se.Unsatisfiable {
						r.Missing = se.Detail
					}
				}
				fmt.Fprintf(live, "=== kiln: %s failed: %v ===\n", p.FileName, err)
				// A failure of a self-isolating backend (sbuild, mock) is
				// tried again only for unsatisfiable build dependencies (a
				// later package of the task may provide them): a failed
				// build fails the same way again. The host backends build
				// against what the host has, not against the task's
				// packages, so any of their failures is tried again.
				if r.Unsatisfiable || se == nil || !plat.backend.SelfIsolating() {
					failed = append(failed, i)
				}
				if errors.As(err, &limit) || policy == "immediate" {
					stop = true
					break
				}
				continue
			}
			r.Status, r.Error, r.Stage, r.Unsatisfiable, r.Missing = "succeeded", "", "", false, ""
			done++
			for _, f := range built {
				r.Artifacts = append(r.Artifacts, f.name)
				if f.kind == backend.KindBuildInfo && strings.HasSuffix(f.name, ".buildinfo") {
					r.BuildDepends = installedBuildDepends(f)
				}
			}
			files = append(files, built...)
			fmt.Fprintf(live, "=== kiln: %s built: %s ===\n", p.FileName, strings.Join(r.Artifacts, ", "))
		}
		progress := done > 0
		pending = failed
		if policy != "retry" || !progress {
			break
		}
	}
	info.Packages = results
	info.Status, info.Reason, info.Stage, info.Unsatisfiable = outcome(results, policy)
	if limit != nil {
		info.Reason = limit.Describe("platform " + plat.Name)
	}
	return files
}

// buildOne builds try n of package p: a fresh copy of its pristine sources
// in the work directory, built by the platform's backend.
func (b *Builder) buildOne(ctx context.Context, runner sandbox.Runner, plat *loadedPlatform, dirs *attemptDirs, id *sandbox.ID,
	p *sourcePackage, n int, live io.Writer) ([]backend.Output, error) {
	name := fmt.Sprintf("p%d", p.Seq)
	if n > 1 {
		name = fmt.Sprintf("p%d.try%d", p.Seq, n)
	}
	pkgDir, err := copySources(dirs.build, name, p, id)
	if err != nil {
		return nil, fmt.Errorf("preparing the sources: %w", err)
	}
	return plat.backend.Build(ctx, runner, backend.Request{
		Source: filepath.Join(pkgDir, p.FileName), Dir: pkgDir, Repo: dirs.repo, Repositories: dirs.repos, Log: live,
	})
}

// copySources makes the directory name in the work directory build and
// copies the package's pristine sources into it, for id. Everything goes
// through descriptors: the directory is made beneath build (which earlier
// builds wrote into), and only what the builder just made is given to id.
func copySources(build, name string, p *sourcePackage, id *sandbox.ID) (string, error) {
	root, err := beneath.OpenRoot(build)
	if err != nil {
		return "", err
	}
	defer root.Close()
	dir, err := root.Mkdir(name, 0o755)
	if err != nil {
		return "", err
	}
	defer dir.Close()
	if id != nil {
		if err := dir.Chown(int(id.UID), int(id.GID)); err != nil {
			return "", err
		}
	}
	pristine, err := beneath.OpenRoot(p.dir)
	if err != nil {
		return "", err
	}
	defer pristine.Close()
	for _, f := range p.sourceFiles() {
		if _, err := pristine.CopyFile(f.name, dir, f.name, 0o644); err != nil {
			return "", err
		}
		if id != nil {
			if err := chownIn(dir, f.name, id); err != nil {
				return "", err
			}
		}
	}
	return dir.Path(), nil
}

// chownIn gives the file name, which the builder just made in dir, to id.
func chownIn(dir *beneath.Root, name string, id *sandbox.ID) error {
	f, err := dir.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Chown(int(id.UID), int(id.GID))
}

// collectOutputs copies a build's outputs out of its work directory into
// out/ (and its packages into the local repository), refusing a symbolic
// link anywhere in an output's path and anything but a regular file. A
// name made again by a later package keeps the earlier file.
func collectOutputs(dirs *attemptDirs, outs []backend.Output, names map[string]bool, live io.Writer) ([]artifactFile, error) {
	build, err := beneath.OpenRoot(dirs.build)
	if err != nil {
		return nil, err
	}
	defer build.Close()
	var files []artifactFile
	undo := func() {
		for _, f := range files {
			delete(names, f.name)
			os.Remove(filepath.Join(dirs.out, f.name))
			os.Remove(filepath.Join(dirs.repo, f.name))
		}
	}
	for _, o := range outs {
		name := filepath.Base(o.Path)
		if names[name] {
			fmt.Fprintf(live, "kiln: %s was made again; the earlier file is kept\n", name)
			continue
		}
		if _, err := build.CopyFile(o.Path, dirs.outRoot, name, 0o644); err != nil {
			os.Remove(filepath.Join(dirs.out, name))
			undo()
			return nil, fmt.Errorf("result %s refused: %w", name, err)
		}
		names[name] = true
		files = append(files, artifactFile{name: name, kind: o.Kind, open: func() (*os.File, error) { return dirs.outRoot.Open(name) }})
		if o.Kind == backend.KindPackage {
			if err := os.Link(filepath.Join(dirs.out, name), filepath.Join(dirs.repo, name)); err != nil {
				undo()
				return nil, fmt.Errorf("adding %s to the local repository: %w", name, err)
			}
		}
	}
	return files, nil
}

// outcome is the task's status, reason, failure stage and whether it
// failed only for unsatisfiable build dependencies, from its packages'
// results. The stage is the first failed package's.
func outcome(results []packageResult, policy string) (status, reason, stage string, unsatisfiable bool) {
	var failed, unsat, notBuilt []string
	for _, r := range results {
		switch {
		case r.Status == "failed" && r.Unsatisfiable:
			unsat = append(unsat, r.FileName+" ("+r.Missing+")")
		case r.Status == "failed":
			failed = append(failed, fmt.Sprintf("%s (%s: %s)", r.FileName, r.Stage, shorten(r.Error, 300)))
		case r.Status == "not_built":
			notBuilt = append(notBuilt, r.FileName)
		}
		if r.Status == "failed" && stage == "" {
			stage = r.Stage
		}
	}
	if len(failed) == 0 && len(unsat) == 0 && len(notBuilt) == 0 {
		return "succeeded", "", "", false
	}
	var parts []string
	if len(unsat) > 0 {
		parts = append(parts, "unsatisfiable build dependencies: "+strings.Join(unsat, "; "))
	}
	if len(failed) > 0 {
		parts = append(parts, fmt.Sprintf("%d of %d packages failed to build: %s", len(failed), len(results), strings.Join(failed, ", ")))
	}
	if len(notBuilt) > 0 {
		parts = append(parts, fmt.Sprintf("not built (policy %s): %s", policy, strings.Join(notBuilt, ", ")))
	}
	return "failed", strings.Join(parts, "; "), stage, len(unsat) > 0 && len(failed) == 0
}

// shorten cuts s to at most n bytes (at a rune boundary), marking the cut.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// installedBuildDepends reads the Installed-Build-Depends field of a
// Debian .buildinfo file (the builder's own copy in out/): package name to
// version. It is nil when the file has no such field or cannot be read.
func installedBuildDepends(f artifactFile) map[string]string {
	file, err := f.open()
	if err != nil {
		return nil
	}
	defer file.Close()
	data, err := io.ReadAll(io.LimitReader(file, 4<<20))
	if err != nil {
		return nil
	}
	var deps map[string]string
	in := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "Installed-Build-Depends:") {
			in, deps = true, map[string]string{}
			line = strings.TrimPrefix(line, "Installed-Build-Depends:")
		} else if !in || (line != "" && line[0] != ' ' && line[0] != '\t') {
			in = false
			continue
		}
		// " name (= version),"
		entry := strings.TrimSuffix(strings.TrimSpace(line), ",")
		name, version, ok := strings.Cut(entry, " (= ")
		if ok && strings.HasSuffix(version, ")") {
			deps[name] = strings.TrimSuffix(version, ")")
		}
	}
	return deps
}
