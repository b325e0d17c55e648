package backend

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/kiln-build/kiln/internal/sandbox"
)

// dpkg builds a Debian source package on the builder host: `dpkg-source -x`
// unpacks it, `dpkg-buildpackage -b -us -uc -rfakeroot` builds the binary
// packages. `dpkg-checkbuilddeps` runs in between, so that missing build
// dependencies end as unsatisfiable (a *StageError) rather than a failed
// build. Packages built earlier in the task are offered in Repo
// (environment KILN_REPO) but nothing is installed: Build-Depends are
// checked against the host's installed packages, so dpkg platforms suit
// packages whose build dependencies the host already has.
type dpkg struct{}

func (dpkg) Name() string        { return "dpkg" }
func (dpkg) SelfIsolating() bool { return false }

func (dpkg) Versions(ctx context.Context) map[string]string {
	return map[string]string{
		"dpkg-buildpackage": toolVersion(ctx, "dpkg-buildpackage", "--version"),
		"dpkg-source":       toolVersion(ctx, "dpkg-source", "--version"),
		"fakeroot":          toolVersion(ctx, "fakeroot", "--version"),
		"bwrap":             toolVersion(ctx, "bwrap", "--version"),
	}
}

func (dpkg) Build(ctx context.Context, r sandbox.Runner, req Request) ([]Output, error) {
	env := []string{"KILN_REPO=" + req.Repo, "DEB_BUILD_OPTIONS=nocheck"}
	src := filepath.Join(req.Dir, "src")
	steps := [][]string{
		{"dpkg-source", "-x", req.Source, src},
		{"dpkg-buildpackage", "-b", "-us", "-uc", "-rfakeroot"},
	}
	if err := r.Run(ctx, sandbox.Command{Dir: req.Dir, Args: steps[0], Env: env, Output: req.Log}); err != nil {
		return nil, fmt.Errorf("dpkg-source %s: %w", filepath.Base(req.Source), err)
	}
	// The build dependencies first, so that missing ones are their own
	// outcome rather than a failed build.
	var check bytes.Buffer
	checkOut := io.Writer(&check)
	if req.Log != nil {
		checkOut = io.MultiWriter(req.Log, &check)
	}
	if err := r.Run(ctx, sandbox.Command{Dir: src, Args: []string{"dpkg-checkbuilddeps"}, Env: env, Output: checkOut}); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("dpkg-checkbuilddeps %s: %w", filepath.Base(req.Source), err)
		}
		return nil, fmt.Errorf("dpkg-checkbuilddeps %s: %w", filepath.Base(req.Source), checkBuildDepsError(check.String(), err))
	}
	if err := r.Run(ctx, sandbox.Command{Dir: src, Args: steps[1], Env: env, Output: req.Log}); err != nil {
		return nil, fmt.Errorf("dpkg-buildpackage %s: %w", filepath.Base(req.Source), err)
	}
	// dpkg-buildpackage leaves its results next to the source directory.
	names, err := list(req.Dir)
	if err != nil {
		return nil, fmt.Errorf("collecting results in %s: %w", req.Dir, err)
	}
	var out []Output
	kinds := map[string]string{"*.deb": KindPackage, "*.udeb": KindPackage, "*.ddeb": KindPackage,
		"*.buildinfo": KindBuildInfo, "*.changes": KindOther}
	built := 0
	for _, name := range names {
		for pattern, kind := range kinds {
			if ok, _ := filepath.Match(pattern, name); ok {
				out = append(out, Output{Path: filepath.Join(req.Dir, name), Kind: kind})
				if kind == KindPackage {
					built++
				}
				break
			}
		}
	}
	if built == 0 {
		return nil, fmt.Errorf("dpkg-buildpackage %s succeeded but made no .deb", filepath.Base(req.Source))
	}
	return out, nil
}

// checkBuildDepsError makes dpkg-checkbuilddeps' failure a *StageError:
// unsatisfiable build dependencies when it names unmet dependencies or
// conflicts ("dpkg-checkbuilddeps: error: Unmet build dependencies: X"),
// otherwise a failure of that stage.
func checkBuildDepsError(out string, err error) *StageError {
	var unmet []string
	for _, line := range strings.Split(out, "\n") {
		for _, marker := range []string{"Unmet build dependencies: ", "Build conflicts: "} {
			if i := strings.Index(line, marker); i >= 0 {
				what := strings.TrimSpace(line[i+len(marker):])
				if marker == "Build conflicts: " {
					what = "conflicts with " + what
				}
				unmet = append(unmet, what)
			}
		}
	}
	if len(unmet) == 0 {
		return &StageError{Stage: StageBuildDeps, Detail: "dpkg-checkbuilddeps failed", Err: err}
	}
	return &StageError{Stage: StageBuildDeps, Unsatisfiable: true, Detail: strings.Join(unmet, "; "), Err: err}
}
