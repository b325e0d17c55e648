package backend

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"

	"github.com/kiln-build/kiln/internal/beneath"
	"github.com/kiln-build/kiln/internal/sandbox"
)

// sbuild builds a Debian source package in an sbuild chroot:
//
//	sbuild --dist=DIST [--arch=ARCH] [--chroot=CHROOT] [--chroot-mode=MODE]
//	       --build-dir=DIR/result --no-run-lintian --no-run-piuparts --no-run-autopkgtest
//	       --bd-uninstallable-explainer=dose3 --no-apt-upgrade --no-apt-distupgrade --nolog
//	       [--extra-package=REPO] [--extra-repository=SOURCE --extra-repository-key=KEY]...
//	       [EXTRA...] DSC
//
// sbuild installs the Build-Depends in its chroot, so later packages of a
// task can build-depend on earlier ones: the local repository is offered
// with --extra-package (sbuild adds every .deb of the directory to a
// temporary archive). Like mock, sbuild isolates builds itself (schroot, or
// its own unshare mode), so it runs outside bubblewrap. In unshare mode
// (chroot_mode "unshare", chroot the path of an mmdebstrap tarball, see
// internal/environment) it runs as the builder's unprivileged build user,
// which needs subordinate uid and gid ranges; the build itself runs without
// network (sbuild's default in that mode), while installing the build
// dependencies uses the environment's mirror.
//
// Further signed APT repositories (the buckets' repositories, see
// docs/repositories.md) are offered with --extra-repository, each as
// "deb [signed-by=FINGERPRINT] URL SUITE main" with its public key given to
// --extra-repository-key (sbuild copies it into the chroot's trusted keys
// for the build): apt checks every index against that one key. apt fetches
// them inside the chroot while it installs the build dependencies, before
// the network is cut, so URL must be reachable from the builder host.
//
// The chroot is used as it is (no upgrades), so builds of one environment
// start from the same packages. sbuild's log goes to the build's log
// (--nolog), and its summary (Status, Fail-Stage) and dose3's explanation of
// uninstallable build dependencies make a failure a *StageError.
type sbuild struct {
	prog string
	// dist, arch, chroot and mode are the settings (arch by default the
	// platform's); empty ones are left to sbuild (and its configuration).
	dist, arch, chroot, mode string
	// extra are further options, placed before the .dsc.
	extra []string
}

// sbuildWord is what a distribution or architecture may look like.
var sbuildWord = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9.+_~-]{0,63}$`)

// newSbuild reads the sbuild backend's settings: {"dist": "bookworm"} and
// optionally "arch", "chroot", "chroot_mode" and "extra_args" (a list of
// options). Without an "arch" setting it builds for arch, the platform's
// architecture (sbuild's default, the host's, when that is empty too).
func newSbuild(settings map[string]any, arch string, opts Options) (sbuild, error) {
	s := sbuild{prog: opts.Sbuild}
	if s.prog == "" {
		s.prog = "sbuild"
	}
	for key := range settings {
		switch key {
		case "dist", "arch", "chroot", "chroot_mode", "extra_args":
		default:
			return sbuild{}, fmt.Errorf("backend sbuild: unknown setting %q (known: dist, arch, chroot, chroot_mode, extra_args)", key)
		}
	}
	str := func(key string) (string, error) {
		v, ok := settings[key]
		if !ok {
			return "", nil
		}
		s, isString := v.(string)
		if !isString || s == "" {
			return "", fmt.Errorf("backend sbuild: %s must be a non-empty string, not %v", key, v)
		}
		return s, nil
	}
	var err error
	if s.dist, err = str("dist"); err != nil {
		return sbuild{}, err
	}
	if s.dist == "" {
		return sbuild{}, fmt.Errorf("backend sbuild needs a distribution: set the platform's backend settings to {\"dist\": \"bookworm\"}")
	}
	if s.arch, err = str("arch"); err != nil {
		return sbuild{}, err
	}
	if s.arch == "" {
		s.arch = arch
	}
	for key, v := range map[string]string{"dist": s.dist, "arch": s.arch} {
		if v != "" && !sbuildWord.MatchString(v) {
			return sbuild{}, fmt.Errorf("backend sbuild: %s %q is not a distribution or architecture name", key, v)
		}
	}
	if s.chroot, err = str("chroot"); err != nil {
		return sbuild{}, err
	}
	if strings.HasPrefix(s.chroot, "-") || strings.ContainsAny(s.chroot, "\n\x00") {
		return sbuild{}, fmt.Errorf("backend sbuild: chroot %q must not start with a dash or hold a newline", s.chroot)
	}
	if s.mode, err = str("chroot_mode"); err != nil {
		return sbuild{}, err
	}
	switch s.mode {
	case "", "schroot", "sudo", "autopkgtest", "unshare":
	default:
		return sbuild{}, fmt.Errorf("backend sbuild: chroot_mode %q is not one of schroot, sudo, autopkgtest, unshare", s.mode)
	}
	if v, ok := settings["extra_args"]; ok {
		list, isList := v.([]any)
		if !isList {
			return sbuild{}, fmt.Errorf("backend sbuild: extra_args must be a list of options, not %v", v)
		}
		for _, a := range list {
			arg, isString := a.(string)
			if !isString || !strings.HasPrefix(arg, "-") {
				return sbuild{}, fmt.Errorf("backend sbuild: extra_args holds %v, which is not an option (options start with -)", a)
			}
			s.extra = append(s.extra, arg)
		}
	}
	return s, nil
}

func (s sbuild) Name() string        { return "sbuild" }
func (s sbuild) SelfIsolating() bool { return true }

func (s sbuild) Versions(ctx context.Context) map[string]string {
	return map[string]string{"sbuild": toolVersion(ctx, s.prog, "--version")}
}

// repositoryURL is what a repository's URL may look like: http or https,
// nothing apt's one-line format would read as a separator or option.
var repositoryURL = regexp.MustCompile(`^https?://[A-Za-z0-9._~:/?#@!$&'()*+,;=%-]+$`)

// repositoryFingerprint is an OpenPGP fingerprint as apt's signed-by reads it.
var repositoryFingerprint = regexp.MustCompile(`^[0-9A-F]{40,64}$`)

// repositoryKeys writes the public key of each of req's repositories into
// dir (fresh files, for sbuild to read) and returns their paths.
func repositoryKeys(req Request, dir *beneath.Root) ([]string, error) {
	var paths []string
	for i, r := range req.Repositories {
		if !strings.HasPrefix(r.Key, "-----BEGIN PGP PUBLIC KEY BLOCK-----") {
			return nil, fmt.Errorf("repository %s: the key is not an armored OpenPGP public key", r.URL)
		}
		path, err := writeNew(dir, fmt.Sprintf("kiln-repository-%d.asc", i+1), r.Key, 0o644)
		if err != nil {
			return nil, fmt.Errorf("writing the key of repository %s: %w", r.URL, err)
		}
		paths = append(paths, path)
	}
	return paths, nil
}

// writeNew writes content to the new file name in dir (anything of that
// name already there is refused, not followed) and returns its path.
func writeNew(dir *beneath.Root, name, content string, perm os.FileMode) (string, error) {
	f, err := dir.Create(name, perm)
	if err != nil {
		return "", err
	}
	_, err = f.WriteString(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		dir.Remove(name)
		return "", err
	}
	return f.Name(), nil
}

// command is the sbuild command line that builds req into the directory
// result, trusting the repository keys in keys (one per req.Repositories).
func (s sbuild) command(req Request, result string, keys ...string) ([]string, error) {
	args := []string{s.prog, "--dist=" + s.dist}
	if s.arch != "" {
		args = append(args, "--arch="+s.arch)
	}
	if s.chroot != "" {
		args = append(args, "--chroot="+s.chroot)
	}
	if s.mode != "" {
		args = append(args, "--chroot-mode="+s.mode)
	}
	args = append(args, "--build-dir="+result, "--no-run-lintian", "--no-run-piuparts", "--no-run-autopkgtest",
		"--bd-uninstallable-explainer=dose3", "--no-apt-upgrade", "--no-apt-distupgrade", "--nolog")
	if req.Repo != "" {
		debs, err := filepath.Glob(filepath.Join(req.Repo, "*.deb"))
		if err != nil {
			return nil, fmt.Errorf("reading the local repository: %w", err)
		}
		if len(debs) > 0 {
			args = append(args, "--extra-package="+req.Repo)
		}
	}
	if len(keys) != len(req.Repositories) {
		return nil, fmt.Errorf("sbuild: %d repository keys for %d repositories", len(keys), len(req.Repositories))
	}
	for i, r := range req.Repositories {
		if !repositoryURL.MatchString(r.URL) || !sbuildWord.MatchString(r.Suite) || !repositoryFingerprint.MatchString(r.Fingerprint) {
			return nil, fmt.Errorf("sbuild: repository %q suite %q key %q is not a URL, suite and fingerprint", r.URL, r.Suite, r.Fingerprint)
		}
		args = append(args, "--extra-repository=deb [signed-by="+r.Fingerprint+"] "+r.URL+" "+r.Suite+" main",
			"--extra-repository-key="+keys[i])
	}
	args = append(args, s.extra...)
	return append(args, req.Source), nil
}

func (s sbuild) Build(ctx context.Context, r sandbox.Runner, req Request) ([]Output, error) {
	// Everything the builder writes for sbuild goes through descriptors
	// of the package's directory (internal/beneath).
	pkg, err := beneath.OpenPath(req.Dir)
	if err != nil {
		return nil, fmt.Errorf("opening the package's directory: %w", err)
	}
	defer pkg.Close()
	res, err := pkg.Mkdir("result", 0o755)
	if err != nil {
		return nil, fmt.Errorf("making sbuild's build directory: %w", err)
	}
	defer res.Close()
	result := res.Path()
	// sbuild runs as the owner of the package's directory (the build user
	// when the builder runs as root) and writes its results here.
	if err := chownLike(res, pkg); err != nil {
		return nil, fmt.Errorf("making sbuild's build directory: %w", err)
	}
	// The keys go next to the sources, in the package's fresh directory
	// (no build has run in it yet).
	keys, err := repositoryKeys(req, pkg)
	if err != nil {
		return nil, &StageError{Stage: StageEnvironment, Err: err}
	}
	args, err := s.command(req, result, keys...)
	if err != nil {
		return nil, err
	}
	env, err := s.unshareConfig(pkg)
	if err != nil {
		return nil, &StageError{Stage: StageEnvironment, Err: err}
	}
	sum := &sbuildSummary{}
	out := io.Writer(sum)
	if req.Log != nil {
		out = io.MultiWriter(req.Log, sum)
	}
	// In the result directory, so that anything sbuild writes to "." lands
	// there too.
	if err := r.Run(ctx, sandbox.Command{Dir: result, Args: args, Env: env, Output: out}); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("sbuild %s: %w", filepath.Base(req.Source), err)
		}
		sum.flush()
		return nil, fmt.Errorf("sbuild %s: %w", filepath.Base(req.Source), sum.stageError(err))
	}
	files, err := collect(result, map[string]string{
		"*.deb": KindPackage, "*.udeb": KindPackage, "*.ddeb": KindPackage,
		"*.buildinfo": KindBuildInfo, "*.changes": KindOther,
	})
	if err != nil {
		return nil, &StageError{Stage: StageCollect, Err: err}
	}
	for _, o := range files {
		if o.Kind == KindPackage {
			return files, nil
		}
	}
	return nil, fmt.Errorf("sbuild %s: %w", filepath.Base(req.Source),
		&StageError{Stage: StageCollect, Detail: "sbuild succeeded but left no .deb in " + result})
}

// unshareConfig writes, in unshare mode, an sbuild configuration into dir
// (the package's fresh directory, which no build has run in) that unpacks
// the build's chroot beneath dir rather than in /tmp, so that the build's
// tree counts in the work directory's disk use and limit, and returns the
// environment that makes sbuild read it (SBUILD_CONFIG is read after
// /etc/sbuild/sbuild.conf).
func (s sbuild) unshareConfig(dir *beneath.Root) ([]string, error) {
	if s.mode != "unshare" {
		return nil, nil
	}
	if !filepath.IsAbs(dir.Path()) || strings.ContainsAny(dir.Path(), "'\\\n") {
		return nil, fmt.Errorf("sbuild: the build directory %q cannot be written into sbuild's configuration", dir.Path())
	}
	conf := "$unshare_tmpdir_template = '" + filepath.Join(dir.Path(), "chroot.XXXXXXXXXX") + "';\n1;\n"
	path, err := writeNew(dir, "kiln-sbuild.conf", conf, 0o644)
	if err != nil {
		return nil, fmt.Errorf("writing sbuild's configuration: %w", err)
	}
	return []string{"SBUILD_CONFIG=" + path}, nil
}

// chownLike gives dir the owner and group of like, when they differ.
func chownLike(dir, like *beneath.Root) error {
	want, err := like.Stat()
	if err != nil {
		return err
	}
	have, err := dir.Stat()
	if err != nil {
		return err
	}
	w, h := want.Sys().(*syscall.Stat_t), have.Sys().(*syscall.Stat_t)
	if w.Uid == h.Uid && w.Gid == h.Gid {
		return nil
	}
	return dir.Chown(int(w.Uid), int(w.Gid))
}

// sbuildStages maps sbuild's Fail-Stage values to kiln's stages; the ones
// not named are sbuild setting up its chroot (StageEnvironment).
var sbuildStages = map[string]string{
	"fetch-src": StageFetch, "unpack": StageFetch, "check-unpacked-version": StageFetch,
	"install-deps": StageBuildDeps, "explain-bd-uninstallable": StageBuildDeps, "run-build-deps-failed-commands": StageBuildDeps,
	"build": StageBuild, "dpkg-buildpackage": StageBuild, "run-starting-build-commands": StageBuild, "run-build-failed-commands": StageBuild,
	"post-build": StageCollect, "parse-changes": StageCollect, "source-only-changes": StageCollect,
	"run-post-build-commands": StageCollect, "run-post-build-failed-commands": StageCollect, "run-finished-build-commands": StageCollect,
}

// sbuildSummary reads sbuild's output as it streams past: the summary's
// last Status and Fail-Stage lines, and the unsatisfied dependencies and
// conflicts of dose3's report, each with the package whose dependency or
// conflict it is when that is not the build dependencies themselves.
type sbuildSummary struct {
	partial         []byte
	status, stage   string
	unsat           []string
	seenUnsat       map[string]bool
	longLineSkipped bool
	// pkg and version are the last package dose3's report named: the one
	// the next unsat-dependency or unsat-conflict line belongs to.
	pkg, version string
}

// sbuildDummy is the name of the package sbuild makes of a source
// package's build dependencies (sbuild-build-depends-main-dummy and the
// like), which dose3 checks.
var sbuildDummy = regexp.MustCompile(`^sbuild-build-(depends|conflicts)-[a-z0-9-]+-dummy$`)

// sbuildMaxLine bounds the partial line kept between writes; longer lines
// are not summary lines and are skipped.
const sbuildMaxLine = 4096

func (s *sbuildSummary) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(s.partial)+len(p) > sbuildMaxLine {
				s.partial, s.longLineSkipped = s.partial[:0], true
			} else {
				s.partial = append(s.partial, p...)
			}
			break
		}
		if !s.longLineSkipped && len(s.partial)+i <= sbuildMaxLine {
			s.line(string(append(s.partial, p[:i]...)))
		}
		s.partial, s.longLineSkipped = s.partial[:0], false
		p = p[i+1:]
	}
	return n, nil
}

// flush reads a last line that did not end in a newline.
func (s *sbuildSummary) flush() {
	if len(s.partial) > 0 && !s.longLineSkipped {
		s.line(string(s.partial))
	}
	s.partial = s.partial[:0]
}

func (s *sbuildSummary) line(l string) {
	l = strings.TrimRight(l, "\r")
	switch {
	case strings.HasPrefix(l, "Status: "):
		s.status = strings.TrimSpace(strings.TrimPrefix(l, "Status: "))
	case strings.HasPrefix(l, "Fail-Stage: "):
		s.stage = strings.TrimSpace(strings.TrimPrefix(l, "Fail-Stage: "))
	default:
		t := strings.TrimSpace(l)
		if v, ok := strings.CutPrefix(t, "package: "); ok {
			s.pkg, s.version = strings.TrimSpace(v), ""
		}
		if v, ok := strings.CutPrefix(t, "version: "); ok {
			s.version = strings.TrimSpace(v)
		}
		for _, key := range []string{"unsat-dependency: ", "unsat-conflict: "} {
			if v, ok := strings.CutPrefix(t, key); ok && len(s.unsat) < 20 {
				v = strings.TrimSpace(v)
				// Why: a build dependency no package satisfies, or one
				// that a package the build dependencies pull in needs
				// (dose3's depchain leads from the build dependencies to
				// it), or a conflict.
				of := ""
				if s.pkg != "" && !sbuildDummy.MatchString(s.pkg) {
					of = strings.TrimSpace(s.pkg + " " + s.version)
				}
				switch {
				case key == "unsat-conflict: " && of != "":
					v = of + " conflicts with " + v
				case key == "unsat-conflict: ":
					v = "conflict " + v
				case of != "":
					v += " needed by " + of
				}
				if s.seenUnsat == nil {
					s.seenUnsat = map[string]bool{}
				}
				if !s.seenUnsat[v] {
					s.seenUnsat[v] = true
					s.unsat = append(s.unsat, v)
				}
			}
		}
	}
}

// stageError says where the failed run err went wrong.
func (s *sbuildSummary) stageError(err error) *StageError {
	if s.stage == "" {
		return &StageError{Stage: StageEnvironment, Detail: "sbuild stopped before its summary", Err: err}
	}
	stage, ok := sbuildStages[s.stage]
	if !ok {
		stage = StageEnvironment
	}
	e := &StageError{Stage: stage, Detail: "sbuild Fail-Stage " + s.stage, Err: err}
	if s.status != "" {
		e.Detail += ", Status " + s.status
	}
	// dose3 explains only when the build dependencies cannot be installed
	// at all; sbuild runs it before anything of the package has run.
	if stage == StageBuildDeps && len(s.unsat) > 0 {
		e.Unsatisfiable = true
		e.Detail = strings.Join(s.unsat, ", ")
	}
	return e
}
