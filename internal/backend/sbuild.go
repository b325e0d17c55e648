package backend

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/kiln-build/kiln/internal/sandbox"
)

// sbuild builds a Debian source package in an sbuild chroot:
//
//	sbuild --dist=DIST [--arch=ARCH] [--chroot=CHROOT] [--chroot-mode=MODE]
//	       --build-dir=DIR/result --no-run-lintian [--extra-package=REPO] [EXTRA...] DSC
//
// sbuild installs the Build-Depends in its chroot, so later packages of a
// task can build-depend on earlier ones: the local repository is offered
// with --extra-package (sbuild adds every .deb of the directory to a
// temporary archive). Like mock, sbuild isolates builds itself (schroot, or
// its own unshare mode), so it runs outside bubblewrap.
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

// command is the sbuild command line that builds req into the directory
// result.
func (s sbuild) command(req Request, result string) ([]string, error) {
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
	args = append(args, "--build-dir="+result, "--no-run-lintian")
	if req.Repo != "" {
		debs, err := filepath.Glob(filepath.Join(req.Repo, "*.deb"))
		if err != nil {
			return nil, fmt.Errorf("reading the local repository: %w", err)
		}
		if len(debs) > 0 {
			args = append(args, "--extra-package="+req.Repo)
		}
	}
	args = append(args, s.extra...)
	return append(args, req.Source), nil
}

func (s sbuild) Build(ctx context.Context, r sandbox.Runner, req Request) ([]Output, error) {
	result := filepath.Join(req.Dir, "result")
	if err := os.MkdirAll(result, 0o755); err != nil {
		return nil, fmt.Errorf("making sbuild's build directory: %w", err)
	}
	args, err := s.command(req, result)
	if err != nil {
		return nil, err
	}
	// In the result directory, so that a log sbuild writes to "." lands
	// there too.
	if err := r.Run(ctx, sandbox.Command{Dir: result, Args: args, Output: req.Log}); err != nil {
		return nil, fmt.Errorf("sbuild %s: %w", filepath.Base(req.Source), err)
	}
	// sbuild writes its log as PKG_VERSION_ARCH-TIMESTAMP.build with a
	// symbolic link PKG_VERSION_ARCH.build to it; collect takes regular
	// files only, so the log is stored once.
	out, err := collect(result, map[string]string{
		"*.deb": KindPackage, "*.udeb": KindPackage, "*.ddeb": KindPackage,
		"*.buildinfo": KindBuildInfo, "*.changes": KindOther, "*.build": KindLog,
	})
	if err != nil {
		return nil, err
	}
	for _, o := range out {
		if o.Kind == KindPackage {
			return out, nil
		}
	}
	return nil, fmt.Errorf("sbuild %s succeeded but left no .deb in %s", filepath.Base(req.Source), result)
}
