package backend

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/kiln-build/kiln/internal/sandbox"
)

// rpmbuild rebuilds an SRPM on the builder host with `rpmbuild --rebuild`,
// with its _topdir in the package's directory. Packages built earlier in the
// task are offered in Repo (environment KILN_REPO, macro %_kiln_repo) but
// nothing is installed: BuildRequires are checked against the host's rpm
// database, so rpmbuild platforms suit packages whose build dependencies the
// host already has. Use mock to build against earlier packages properly.
type rpmbuild struct{}

func (rpmbuild) Name() string        { return "rpmbuild" }
func (rpmbuild) SelfIsolating() bool { return false }

func (rpmbuild) Versions(ctx context.Context) map[string]string {
	return map[string]string{
		"rpmbuild": toolVersion(ctx, "rpmbuild", "--version"),
		"bwrap":    toolVersion(ctx, "bwrap", "--version"),
	}
}

func (rpmbuild) Build(ctx context.Context, r sandbox.Runner, req Request) ([]Output, error) {
	// rpmbuild creates the tree itself, as the build user.
	top := filepath.Join(req.Dir, "rpmbuild")
	args := []string{"rpmbuild", "--rebuild",
		"--define", "_topdir " + top,
		"--define", "_tmppath /tmp",
		"--define", "_kiln_repo " + req.Repo,
		req.Source}
	// Not root in its user namespace: rpm, as root, chowns the SRPM's
	// files to their recorded owner, which the namespace does not map.
	// rpmbuild checks the BuildRequires against the host's rpm database
	// before building; its "Failed build dependencies" list makes the
	// unsatisfiable outcome.
	deps := &rpmDeps{}
	output := io.Writer(deps)
	if req.Log != nil {
		output = io.MultiWriter(req.Log, deps)
	}
	err := r.Run(ctx, sandbox.Command{
		Dir: req.Dir, Args: args, Output: output, Unprivileged: true,
		Env: []string{"KILN_REPO=" + req.Repo},
	})
	if err != nil {
		if ctx.Err() == nil && len(deps.missing) > 0 {
			err = &StageError{Stage: StageBuildDeps, Unsatisfiable: true, Detail: strings.Join(deps.missing, "; "), Err: err}
		}
		return nil, fmt.Errorf("rpmbuild --rebuild %s: %w", filepath.Base(req.Source), err)
	}
	out, err := collect(filepath.Join(top, "RPMS"), map[string]string{"*.rpm": KindPackage})
	if err != nil {
		return nil, err
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("rpmbuild --rebuild %s succeeded but made no RPM", filepath.Base(req.Source))
	}
	return out, nil
}

// mock rebuilds an SRPM in a mock build root:
//
//	mock -r ROOT --rebuild SRPM --resultdir DIR [--addrepo file://REPO]
//
// Earlier results of the task are offered through --addrepo, after
// createrepo_c has given the local repository its metadata, so later
// packages can BuildRequire earlier ones. mock sets up its own chroot or
// container, so it runs outside bubblewrap.
type mock struct {
	root, mock, createrepo string
}

func (m mock) Name() string        { return "mock" }
func (m mock) SelfIsolating() bool { return true }

func (m mock) Versions(ctx context.Context) map[string]string {
	return map[string]string{
		"mock":         toolVersion(ctx, m.mock, "--version"),
		"createrepo_c": toolVersion(ctx, m.createrepo, "--version"),
	}
}

// Commands returns the commands a build of req runs, in order.
func (m mock) commands(req Request) ([][]string, error) {
	var cmds [][]string
	args := []string{m.mock, "-r", m.root, "--rebuild", req.Source, "--resultdir", filepath.Join(req.Dir, "result")}
	if req.Repo != "" {
		entries, err := os.ReadDir(req.Repo)
		if err != nil {
			return nil, fmt.Errorf("reading the local repository: %w", err)
		}
		if hasRPM(entries) {
			cmds = append(cmds, []string{m.createrepo, "--update", req.Repo})
			args = append(args, "--addrepo", "file://"+req.Repo)
		}
	}
	return append(cmds, args), nil
}

func hasRPM(entries []os.DirEntry) bool {
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".rpm") {
			return true
		}
	}
	return false
}

func (m mock) Build(ctx context.Context, r sandbox.Runner, req Request) ([]Output, error) {
	cmds, err := m.commands(req)
	if err != nil {
		return nil, err
	}
	for _, args := range cmds {
		if err := r.Run(ctx, sandbox.Command{Dir: req.Dir, Args: args, Output: req.Log}); err != nil {
			return nil, fmt.Errorf("%s: %w", strings.Join(args[:2], " "), err)
		}
	}
	result := filepath.Join(req.Dir, "result")
	out, err := collect(result, map[string]string{"*.rpm": KindPackage, "*.log": KindLog})
	if err != nil {
		return nil, err
	}
	// The rebuilt SRPM is the input again; the binaries are the results.
	kept := out[:0]
	built := 0
	for _, o := range out {
		if strings.HasSuffix(o.Path, ".src.rpm") {
			continue
		}
		if o.Kind == KindPackage {
			built++
		}
		kept = append(kept, o)
	}
	if built == 0 {
		return nil, fmt.Errorf("mock --rebuild %s succeeded but left no binary RPM in %s", filepath.Base(req.Source), result)
	}
	return kept, nil
}

// rpmDeps reads rpmbuild's output for its list of failed build
// dependencies:
//
//	error: Failed build dependencies:
//		kiln-base >= 1.2 is needed by kiln-user-1.0-1.x86_64
type rpmDeps struct {
	partial []byte
	in      bool
	missing []string
}

func (d *rpmDeps) Write(p []byte) (int, error) {
	d.partial = append(d.partial, p...)
	for {
		i := bytes.IndexByte(d.partial, '\n')
		if i < 0 {
			break
		}
		line := string(d.partial[:i])
		d.partial = d.partial[i+1:]
		switch {
		case strings.Contains(line, "Failed build dependencies:"):
			d.in = true
		case d.in && strings.HasPrefix(line, "\t") && len(d.missing) < 50:
			d.missing = append(d.missing, strings.TrimSpace(line))
		default:
			d.in = false
		}
	}
	if len(d.partial) > 64<<10 {
		d.partial = d.partial[:0]
	}
	return len(p), nil
}
