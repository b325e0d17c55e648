package backend

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/kiln-build/kiln/internal/sandbox"
)

// dpkg builds a Debian source package on the builder host: `dpkg-source -x`
// unpacks it, `dpkg-buildpackage -b -us -uc -rfakeroot` builds the binary
// packages. Packages built earlier in the task are offered in Repo
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
	dirs := []string{req.Dir, src}
	for i, args := range steps {
		if err := r.Run(ctx, sandbox.Command{Dir: dirs[i], Args: args, Env: env, Output: req.Log}); err != nil {
			return nil, fmt.Errorf("%s %s: %w", args[0], filepath.Base(req.Source), err)
		}
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
