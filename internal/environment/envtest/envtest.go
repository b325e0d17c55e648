// Package envtest gives tests one real bookworm build environment per day
// and machine: made once with mmdebstrap (about 40 s) and shared by every
// test binary of the run (and later runs the same day) under /var/tmp.
package envtest

import (
	"bufio"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/environment"
	"github.com/kiln-build/kiln/internal/sandbox"
)

// BuildUser is the unprivileged account sbuild and mmdebstrap run as when
// the tests run as root (.ci/setup-debian gives it subordinate ids).
const BuildUser = "kiln-build"

// Dir holds the shared environments.
const Dir = "/var/tmp/kiln-test-environments"

// Spec is the environment the tests build in: bookworm for amd64 from the
// host's Debian mirror.
func Spec(t testing.TB) environment.Spec {
	t.Helper()
	return environment.Spec{Dist: "bookworm", Arch: "amd64", Mirror: HostMirror(t), Components: []string{"main"}}
}

// Runner runs commands as the build user (the builder's own user when the
// tests do not run as root), with HOME in a temporary directory.
func Runner(t testing.TB) (*sandbox.Plain, *sandbox.User) {
	t.Helper()
	u, err := sandbox.LookupUser(BuildUser)
	if err != nil {
		t.Fatal(err)
	}
	if u != nil && u.Name != BuildUser {
		t.Fatalf("the build user %s is missing (run .ci/setup-debian as root)", BuildUser)
	}
	home := t.TempDir()
	if err := u.Chown(home); err != nil {
		t.Fatal(err)
	}
	// t.TempDir's parent is 0700 and the test's own.
	for d := filepath.Dir(home); u != nil && d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return &sandbox.Plain{Home: home, User: u}, u
}

// Shared returns the path of today's shared environment, making it when no
// test binary has yet; a lock file keeps parallel test binaries from
// making it twice.
func Shared(t testing.TB) (string, environment.Spec) {
	t.Helper()
	if _, err := os.Stat("/usr/bin/mmdebstrap"); err != nil {
		t.Fatal("mmdebstrap is not installed (run .ci/setup-debian as root)")
	}
	spec := Spec(t)
	if err := spec.Check(); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	name := time.Now().UTC().Format("2006-01-02") + "-" + spec.Key()
	path := filepath.Join(Dir, name+".tar.zst")
	lock, err := os.OpenFile(filepath.Join(Dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err == nil {
		return path, spec
	}
	r, u := Runner(t)
	work := filepath.Join(Dir, ".make-"+name)
	if err := os.RemoveAll(work); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(work)
	if err := u.Chown(work); err != nil {
		t.Fatal(err)
	}
	into := work + ".out"
	if err := os.RemoveAll(into); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(into, 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(into)
	var log strings.Builder
	start := time.Now()
	made, err := environment.Create(context.Background(), r, spec, work, into, &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	t.Logf("made the shared environment %s in %s: %d bytes, %d packages", path, time.Since(start).Round(time.Second), made.Size, len(made.Packages))
	if err := os.Rename(made.Path, path); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	// Yesterday's environments are not used again.
	old, _ := filepath.Glob(filepath.Join(Dir, "*.tar.zst"))
	for _, o := range old {
		if o != path && !strings.HasPrefix(filepath.Base(o), name[:10]) {
			os.Remove(o)
		}
	}
	return path, spec
}

// HostMirror is the first Debian mirror in the host's apt sources (deb822
// .sources files, then one-line sources.list entries).
func HostMirror(t testing.TB) string {
	t.Helper()
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*.sources")
	for _, f := range files {
		if m := firstURI(f, "URIs:"); m != "" {
			return m
		}
	}
	lists, _ := filepath.Glob("/etc/apt/sources.list.d/*.list")
	for _, f := range append([]string{"/etc/apt/sources.list"}, lists...) {
		if m := firstURI(f, "deb "); m != "" {
			return m
		}
	}
	t.Fatal("no Debian mirror in /etc/apt/sources.list*")
	return ""
}

// firstURI returns the first URL of a line starting with prefix that
// points at a Debian archive (its path ends in /debian).
func firstURI(path, prefix string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		for _, field := range strings.Fields(rest) {
			if strings.HasPrefix(field, "[") || strings.HasSuffix(field, "]") {
				continue
			}
			if strings.HasPrefix(field, "http") && strings.HasSuffix(strings.TrimSuffix(field, "/"), "/debian") {
				return strings.TrimSuffix(field, "/")
			}
		}
	}
	return ""
}

// GiveTree gives a test's own tree at dir, and everything in it, to u (the
// account sbuild and mmdebstrap run as; nothing to do when u is nil).
// Product code never does this: it gives away only fresh directories
// (sandbox.User.Chown).
func GiveTree(t testing.TB, u *sandbox.User, dir string) {
	t.Helper()
	if u == nil {
		return
	}
	err := filepath.WalkDir(dir, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, int(u.UID), int(u.GID))
	})
	if err != nil {
		t.Fatal(err)
	}
}
