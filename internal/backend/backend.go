// Package backend turns one source package into built files. A platform
// names its backend: rpmbuild and dpkg build on the builder host inside
// kiln's bubblewrap sandbox; mock (SRPMs) and sbuild (Debian source
// packages) isolate builds themselves (a chroot or container per build) and
// run unwrapped; noop builds nothing and succeeds, for benchmarks.
package backend

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/beneath"
	"github.com/kiln-build/kiln/internal/sandbox"
)

// Artifact kinds, as kiln.artifact.kind names them.
const (
	KindPackage   = "package"
	KindLog       = "log"
	KindBuildInfo = "buildinfo"
	KindOther     = "other"
)

// Request is the build of one source package.
type Request struct {
	// Source is the path of the SRPM or the .dsc (its files lie next to it).
	Source string
	// Dir is the package's own directory, writable, which holds Source; the
	// backend builds and leaves its results below it.
	Dir string
	// Repo is a directory holding the files built earlier in the same task
	// (a local repository), possibly empty.
	Repo string
	// Repositories are the buckets' signed repositories to install build
	// dependencies from besides the environment's own, in order: APT
	// repositories for sbuild, rpm-md ones for mock. The host backends
	// (rpmbuild, dpkg) install no build dependencies and are given none.
	Repositories []Repository
	// Log receives the build's output.
	Log io.Writer
}

// Repository is a bucket's signed repository as a build reaches it, with
// Key, the armored public key of fingerprint Fingerprint, trusted for the
// build and for nothing else. For sbuild it is an APT repository of one
// suite (the bucket) and component main:
//
//	deb [signed-by=FINGERPRINT] URL SUITE main
//
// for mock an rpm-md repository at URL (Suite names it: kiln-SUITE),
// whose repomd.xml must be signed by Key. A private bucket's URL carries
// the attempt's token as its password (http://kiln-build:TOKEN@host/...);
// mock moves it into dnf's username and password options, so that it is
// in no URL dnf prints.
type Repository struct {
	URL, Suite, Fingerprint, Key string
}

// Output is a file a build produced.
type Output struct {
	Path string
	Kind string
}

// Backend builds source packages of one kind.
type Backend interface {
	// Name is the backend's name as kiln.platform.backend says it.
	Name() string
	// Versions reports the versions of the tools the backend uses, for the
	// build-info record.
	Versions(ctx context.Context) map[string]string
	// SelfIsolating is true when the backend isolates builds itself, so
	// kiln runs it without bubblewrap (but still in its own process group).
	SelfIsolating() bool
	// Build builds req with r and returns the files it produced. A build
	// that fails returns an error; the log says why.
	Build(ctx context.Context, r sandbox.Runner, req Request) ([]Output, error)
}

// Options are the builder's settings for backends.
type Options struct {
	// Mock is the mock program ("mock" on PATH when empty).
	Mock string
	// Createrepo is the createrepo_c program ("createrepo_c" on PATH when
	// empty), which gives mock's local repository its metadata.
	Createrepo string
	// Sbuild is the sbuild program ("sbuild" on PATH when empty).
	Sbuild string
}

// Platform is what New makes a backend for: a row of kiln.platform.
type Platform struct {
	// Backend is the backend's name (kiln.platform.backend).
	Backend string
	// Arch is the architecture the platform builds for, as its package
	// format names it (kiln.platform.arch); empty when unknown.
	Arch string
	// Settings are the platform's backend settings (backend_settings, a
	// JSON object).
	Settings map[string]any
}

// New returns the backend platform p names, configured with its settings.
// sbuild builds for p.Arch unless the settings say otherwise; the other
// backends build for the host's architecture (mock: its root's).
func New(p Platform, opts Options) (Backend, error) {
	name, settings := p.Backend, p.Settings
	switch name {
	case "rpmbuild":
		return rpmbuild{}, nil
	case "dpkg":
		return dpkg{}, nil
	case "noop":
		return newNoop(settings)
	case "mock":
		root, _ := settings["root"].(string)
		if root == "" {
			return nil, fmt.Errorf("backend mock needs a build root: set the platform's backend settings to {\"root\": \"<mock config>\"}")
		}
		if !mockRoot.MatchString(root) {
			return nil, fmt.Errorf("backend mock: root %q must be a mock configuration's name or .cfg path: letters, digits and ._+/-, not starting with a dash", root)
		}
		m := mock{root: root, mock: opts.Mock, createrepo: opts.Createrepo}
		if m.mock == "" {
			m.mock = "mock"
		}
		if m.createrepo == "" {
			m.createrepo = "createrepo_c"
		}
		return m, nil
	case "sbuild":
		return newSbuild(settings, p.Arch, opts)
	}
	return nil, fmt.Errorf("unknown backend %q", name)
}

// toolVersion runs `prog args...` and returns the first line it prints, or
// a note that it could not be run.
func toolVersion(ctx context.Context, prog string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, prog, args...).CombinedOutput()
	line, _, _ := strings.Cut(string(bytes.TrimSpace(out)), "\n")
	if err != nil && line == "" {
		return "unavailable: " + err.Error()
	}
	return strings.TrimSpace(line)
}

// collect returns the regular files below dir whose names match one of
// the patterns, as outputs of the pattern's kind, sorted by path. It never
// follows a symbolic link (dir's own path must hold none): a build cannot
// make it list or return anything outside its work directory.
func collect(dir string, kinds map[string]string) ([]Output, error) {
	root, err := beneath.OpenPath(dir)
	if err != nil {
		return nil, fmt.Errorf("collecting results in %s: %w", dir, err)
	}
	defer root.Close()
	var out []Output
	err = root.Walk(func(e beneath.Entry) error {
		if !e.Mode.IsRegular() {
			return nil
		}
		name := filepath.Base(e.Path)
		for pattern, kind := range kinds {
			if ok, _ := filepath.Match(pattern, name); ok {
				out = append(out, Output{Path: filepath.Join(dir, e.Path), Kind: kind})
				break
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("collecting results in %s: %w", dir, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	return out, nil
}

// list returns the regular files directly in dir (never following a
// symbolic link, in dir's path or in it).
func list(dir string) ([]string, error) {
	root, err := beneath.OpenPath(dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	var names []string
	err = root.Walk(func(e beneath.Entry) error {
		if e.Mode.IsDir() {
			return beneath.SkipDir
		}
		if e.Mode.IsRegular() {
			names = append(names, e.Path)
		}
		return nil
	})
	return names, err
}

// noop builds nothing and succeeds. With the setting {"sleep": "500ms"} (a
// Go duration) it first runs `sleep` for that long, a real process in the
// build's process group, so that benchmarks and the soak (cmd/kiln-soak)
// have builds that take time and can be killed, timed out and cancelled
// like real ones. With {"lines": N} too, that process is a shell printing
// "noop line I of N" for I from 1 to N, spread over the sleep, so that the
// soak can count the lines a build printed against those stored.
type noop struct {
	sleep time.Duration
	lines int
}

// maxNoopLines bounds the lines setting.
const maxNoopLines = 10000

func newNoop(settings map[string]any) (noop, error) {
	var n noop
	if v, ok := settings["sleep"]; ok {
		s, _ := v.(string)
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			return noop{}, fmt.Errorf("backend noop: sleep must be a duration such as \"500ms\", not %v", v)
		}
		n.sleep = d
	}
	if v, ok := settings["lines"]; ok {
		f, _ := v.(float64) // a JSON number
		if f != float64(int(f)) || f < 1 || f > maxNoopLines {
			return noop{}, fmt.Errorf("backend noop: lines must be a whole number from 1 to %d, not %v", maxNoopLines, v)
		}
		n.lines = int(f)
	}
	return n, nil
}

func (noop) Name() string                               { return "noop" }
func (noop) Versions(context.Context) map[string]string { return map[string]string{} }
func (noop) SelfIsolating() bool                        { return true }
func (n noop) Build(ctx context.Context, r sandbox.Runner, req Request) ([]Output, error) {
	switch {
	case n.lines > 0:
		pause := strconv.FormatFloat(n.sleep.Seconds()/float64(n.lines), 'f', -1, 64)
		script := `i=1; while [ $i -le ` + strconv.Itoa(n.lines) + ` ]; do echo "noop line $i of ` + strconv.Itoa(n.lines) +
			`"; sleep ` + pause + `; i=$((i+1)); done`
		if err := r.Run(ctx, sandbox.Command{Dir: req.Dir, Args: []string{"sh", "-c", script}, Output: req.Log}); err != nil {
			return nil, fmt.Errorf("noop backend: printing %d lines: %w", n.lines, err)
		}
	case n.sleep > 0:
		secs := strconv.FormatFloat(n.sleep.Seconds(), 'f', -1, 64)
		if err := r.Run(ctx, sandbox.Command{Dir: req.Dir, Args: []string{"sleep", secs}, Output: req.Log}); err != nil {
			return nil, fmt.Errorf("noop backend: sleep %s: %w", secs, err)
		}
	}
	fmt.Fprintf(req.Log, "noop backend: nothing built for %s\n", filepath.Base(req.Source))
	return nil, nil
}
