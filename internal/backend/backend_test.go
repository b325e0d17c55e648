package backend

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/beneath"
	"github.com/kiln-build/kiln/internal/sandbox"
	"github.com/kiln-build/kiln/internal/testsupport/proctest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// setup copies the source package at src (with the files next to it) into a
// fresh package directory of a work directory and returns a sandbox for it
// (as a build uid of its own when the test runs as root).
func setup(t *testing.T, src string, withSiblings bool) (*sandbox.Sandbox, Request) {
	t.Helper()
	top := t.TempDir()
	work := filepath.Join(top, "build")
	dir := filepath.Join(work, "p0")
	repo := filepath.Join(top, "repo")
	for _, d := range []string{work, filepath.Join(work, "tmp"), dir, repo} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	files := []string{src}
	if withSiblings {
		files, _ = filepath.Glob(filepath.Join(filepath.Dir(src), "*"))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sb := &sandbox.Sandbox{Work: work, ReadOnly: []string{repo}, Limits: sandbox.Limits{Processes: sandbox.DefaultProcesses}}
	if os.Geteuid() == 0 {
		sb.ID = &sandbox.ID{UID: testUID, GID: testUID}
		for _, d := range []string{top, filepath.Dir(top)} {
			if err := os.Chmod(d, 0o711); err != nil {
				t.Fatal(err)
			}
		}
		err := filepath.WalkDir(work, func(p string, _ os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(p, testUID, testUID)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return sb, Request{Source: filepath.Join(dir, filepath.Base(src)), Dir: dir, Repo: repo}
}

// testUID is the host uid builds of these tests run as when they run as
// root (a test's own files are all it owns).
const testUID = 1_000_065_000

func TestRpmbuild(t *testing.T) {
	t.Parallel()
	srpm := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-hello", Build: "echo RPMBUILD-RAN-BUILD; echo hi > kiln-hello.txt"})
	sb, req := setup(t, srpm, false)
	var log bytes.Buffer
	req.Log = &log
	b, err := New(Platform{Backend: "rpmbuild"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.Build(context.Background(), sb, req)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	if len(out) != 1 || !strings.HasSuffix(out[0].Path, ".rpm") || strings.HasSuffix(out[0].Path, ".src.rpm") || out[0].Kind != KindPackage {
		t.Fatalf("outputs %+v", out)
	}
	if !strings.Contains(log.String(), "RPMBUILD-RAN-BUILD") || !strings.Contains(log.String(), "Wrote: ") {
		t.Fatalf("log lacks rpmbuild's output:\n%s", log.String())
	}
	if v := b.Versions(context.Background())["rpmbuild"]; !strings.Contains(v, "RPM") {
		t.Fatalf("rpmbuild version %q", v)
	}
}

func TestRpmbuildFailure(t *testing.T) {
	t.Parallel()
	srpm := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-broken", Build: "echo BROKEN-ON-PURPOSE; exit 3"})
	sb, req := setup(t, srpm, false)
	var log bytes.Buffer
	req.Log = &log
	b, _ := New(Platform{Backend: "rpmbuild"}, Options{})
	if _, err := b.Build(context.Background(), sb, req); err == nil {
		t.Fatal("a failing build section succeeded")
	}
	if !strings.Contains(log.String(), "BROKEN-ON-PURPOSE") {
		t.Fatalf("log lacks the failure:\n%s", log.String())
	}
}

func TestDpkg(t *testing.T) {
	t.Parallel()
	dsc := testpkg.DSC(t, testpkg.Deb{Name: "kiln-greet", Version: "2.0", Build: "echo DPKG-RAN-BUILD"})
	sb, req := setup(t, dsc, true)
	var log bytes.Buffer
	req.Log = &log
	b, err := New(Platform{Backend: "dpkg"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.Build(context.Background(), sb, req)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	var debs []string
	for _, o := range out {
		if o.Kind == KindPackage {
			debs = append(debs, filepath.Base(o.Path))
		}
	}
	if len(debs) != 1 || debs[0] != "kiln-greet_2.0_all.deb" {
		t.Fatalf("packages %v (outputs %+v)", debs, out)
	}
	if !strings.Contains(log.String(), "DPKG-RAN-BUILD") || !strings.Contains(log.String(), "dpkg-buildpackage") {
		t.Fatalf("log lacks dpkg-buildpackage's output:\n%s", log.String())
	}
}

// TestDpkgDebhelper builds debhelper packages (dh $@, debhelper-compat 13,
// Rules-Requires-Root: binary-targets, so dh_fixperms chowns to root under
// fakeroot): a test package and the demo's own sample. Both failed in
// dh_fixperms ("chown: changing ownership of 'debian/...': Invalid
// argument") while builds were not root of their own user namespace.
func TestDpkgDebhelper(t *testing.T) {
	t.Parallel()
	demo := t.TempDir()
	if out, err := exec.Command("cp", "-r", "../../docs/demo/hello-deb", filepath.Join(demo, "kiln-hello-1.0")).CombinedOutput(); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	cmd := exec.Command("dpkg-source", "-b", "kiln-hello-1.0")
	cmd.Dir = demo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dpkg-source -b: %v %s", err, out)
	}
	os.RemoveAll(filepath.Join(demo, "kiln-hello-1.0"))
	for name, c := range map[string]struct{ dsc, deb, file string }{
		"testpkg": {testpkg.DSC(t, testpkg.Deb{Name: "kiln-dh", Version: "1.0"}), "kiln-dh_1.0_all.deb", "./usr/share/kiln-dh/hello.txt"},
		"demo":    {filepath.Join(demo, "kiln-hello_1.0.dsc"), "kiln-hello_1.0_all.deb", "./usr/bin/kiln-hello"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			sb, req := setup(t, c.dsc, true)
			var log bytes.Buffer
			req.Log = &log
			b, _ := New(Platform{Backend: "dpkg"}, Options{})
			out, err := b.Build(context.Background(), sb, req)
			if err != nil {
				t.Fatalf("%v\n%s", err, log.String())
			}
			for _, want := range []string{"dh_fixperms", "dh_builddeb"} {
				if !strings.Contains(log.String(), want) {
					t.Fatalf("log lacks %s:\n%s", want, log.String())
				}
			}
			var deb string
			for _, o := range out {
				if filepath.Base(o.Path) == c.deb {
					deb = o.Path
				}
			}
			if deb == "" {
				t.Fatalf("no %s among %+v", c.deb, out)
			}
			// Files in the package belong to root, as dh_fixperms made them.
			list, err := exec.Command("dpkg-deb", "-c", deb).CombinedOutput()
			if err != nil || !strings.Contains(string(list), "root/root") || !strings.Contains(string(list), c.file) {
				t.Fatalf("dpkg-deb -c: %v\n%s", err, list)
			}
		})
	}
}

// standIn writes a program that records its arguments and acts like mock:
// it leaves a binary RPM, the rebuilt SRPM and mock's logs in --resultdir.
func standIn(t *testing.T) (mockPath, createrepoPath, record string) {
	t.Helper()
	dir := t.TempDir()
	record = filepath.Join(dir, "calls")
	mockPath = filepath.Join(dir, "mock")
	createrepoPath = filepath.Join(dir, "createrepo_c")
	mockScript := `#!/bin/bash
echo "mock $*" >> ` + record + `
[ "$1" = --version ] && { echo 5.9; exit 0; }
while [ $# -gt 0 ]; do
  case "$1" in --resultdir) shift; out=$1;; --rebuild) shift; srpm=$1;; esac
  shift
done
grep -q FAIL "$srpm" && { echo "mock: build failed"; exit 30; }
mkdir -p "$out"
base=$(basename "$srpm" .src.rpm)
echo binary > "$out/$base.x86_64.rpm"
cp "$srpm" "$out/"
echo "build log" > "$out/build.log"; echo "root log" > "$out/root.log"
echo "mock: done"
`
	if err := os.WriteFile(mockPath, []byte(mockScript), 0o755); err != nil {
		t.Fatal(err)
	}
	cr := "#!/bin/bash\necho \"createrepo_c $*\" >> " + record + "\nmkdir -p \"$2/repodata\"\n"
	if err := os.WriteFile(createrepoPath, []byte(cr), 0o755); err != nil {
		t.Fatal(err)
	}
	return mockPath, createrepoPath, record
}

func TestMockCommandsAndResults(t *testing.T) {
	t.Parallel()
	mockPath, crPath, record := standIn(t)
	if _, err := New(Platform{Backend: "mock", Settings: map[string]any{}}, Options{Mock: mockPath}); err == nil {
		t.Fatal("mock without a root was accepted")
	}
	if _, err := New(Platform{Backend: "mock", Settings: map[string]any{"root": "--enable-network"}}, Options{Mock: mockPath}); err == nil {
		t.Fatal("a root that reads as an option was accepted")
	}
	b, err := New(Platform{Backend: "mock", Settings: map[string]any{"root": "rocky+epel-9-x86_64"}}, Options{Mock: mockPath, Createrepo: crPath})
	if err != nil {
		t.Fatal(err)
	}
	work := t.TempDir()
	dir := filepath.Join(work, "p0")
	repo := filepath.Join(work, "repo")
	os.MkdirAll(dir, 0o755)
	os.MkdirAll(repo, 0o755)
	src := filepath.Join(dir, "foo-1.0-1.src.rpm")
	os.WriteFile(src, []byte("srpm"), 0o644)
	runner := &sandbox.Plain{Home: work}

	// First package: empty local repository, so no createrepo and no --addrepo.
	out, err := b.Build(context.Background(), runner, Request{Source: src, Dir: dir, Repo: repo, Log: io.Discard})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range out {
		got = append(got, o.Kind+":"+filepath.Base(o.Path))
	}
	want := "log:build.log package:foo-1.0-1.x86_64.rpm log:root.log"
	if strings.Join(got, " ") != want {
		t.Fatalf("results %v, want %s", got, want)
	}

	// Second package: the first one's RPM is in the local repository.
	os.WriteFile(filepath.Join(repo, "foo-1.0-1.x86_64.rpm"), []byte("binary"), 0o644)
	dir2 := filepath.Join(work, "p1")
	os.MkdirAll(dir2, 0o755)
	src2 := filepath.Join(dir2, "bar-2.0-1.src.rpm")
	os.WriteFile(src2, []byte("srpm"), 0o644)
	if _, err := b.Build(context.Background(), runner, Request{Source: src2, Dir: dir2, Repo: repo, Log: io.Discard}); err != nil {
		t.Fatal(err)
	}
	calls, _ := os.ReadFile(record)
	wantCalls := "mock -r rocky+epel-9-x86_64 --rebuild " + src + " --resultdir " + dir + "/result\n" +
		"createrepo_c --update " + repo + "\n" +
		"mock -r rocky+epel-9-x86_64 --rebuild " + src2 + " --resultdir " + dir2 + "/result --addrepo file://" + repo + "\n"
	if string(calls) != wantCalls {
		t.Fatalf("commands:\n%s\nwant:\n%s", calls, wantCalls)
	}

	// A failing mock run fails the build and keeps its output in the log.
	dir3 := filepath.Join(work, "p2")
	os.MkdirAll(dir3, 0o755)
	src3 := filepath.Join(dir3, "bad-1-1.src.rpm")
	os.WriteFile(src3, []byte("FAIL"), 0o644)
	var log bytes.Buffer
	if _, err := b.Build(context.Background(), runner, Request{Source: src3, Dir: dir3, Log: &log}); err == nil {
		t.Fatal("a failing mock run succeeded")
	}
	if !strings.Contains(log.String(), "mock: build failed") {
		t.Fatalf("log %q", log.String())
	}
	if v := b.Versions(context.Background())["mock"]; v != "5.9" {
		t.Fatalf("mock version %q", v)
	}
}

func TestNoopAndUnknown(t *testing.T) {
	t.Parallel()
	b, err := New(Platform{Backend: "noop"}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	out, err := b.Build(context.Background(), nil, Request{Source: "x.src.rpm", Log: io.Discard})
	if err != nil || len(out) != 0 {
		t.Fatalf("noop: %v %v", out, err)
	}
	if _, err := New(Platform{Backend: "make"}, Options{}); err == nil || !strings.Contains(err.Error(), `unknown backend "make"`) {
		t.Fatalf("backend make: %v", err)
	}
}

// The lines setting prints numbered lines from a real process.
func TestNoopLines(t *testing.T) {
	t.Parallel()
	b, err := New(Platform{Backend: "noop", Settings: map[string]any{"sleep": "30ms", "lines": float64(3)}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var log bytes.Buffer
	if _, err := b.Build(context.Background(), &sandbox.Plain{Home: dir}, Request{Source: "x.src.rpm", Dir: dir, Log: &log}); err != nil {
		t.Fatalf("noop with lines: %v\n%s", err, log.String())
	}
	if want := "noop line 1 of 3\nnoop line 2 of 3\nnoop line 3 of 3\nnoop backend: nothing built for x.src.rpm\n"; log.String() != want {
		t.Fatalf("log %q, want %q", log.String(), want)
	}
	for _, bad := range []any{"3", float64(0), float64(1.5), float64(maxNoopLines + 1)} {
		if _, err := New(Platform{Backend: "noop", Settings: map[string]any{"lines": bad}}, Options{}); err == nil || !strings.Contains(err.Error(), "lines must be a whole number") {
			t.Errorf("lines %v: %v", bad, err)
		}
	}
}

// The sleep setting runs a real process, which a cancelled build kills.
func TestNoopSleep(t *testing.T) {
	t.Parallel()
	b, err := New(Platform{Backend: "noop", Settings: map[string]any{"sleep": "10ms"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var log bytes.Buffer
	runner := &sandbox.Plain{Home: dir}
	if _, err := b.Build(context.Background(), runner, Request{Source: "x.src.rpm", Dir: dir, Log: &log}); err != nil {
		t.Fatalf("noop with sleep: %v\n%s", err, log.String())
	}
	if !strings.Contains(log.String(), "nothing built for x.src.rpm") {
		t.Fatalf("log %q", log.String())
	}

	long, err := New(Platform{Backend: "noop", Settings: map[string]any{"sleep": "1h"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := make(chan bool, 1)
	go func() {
		// Cancel once the sleep runs (its process is in the build's
		// directory), or after a minute, so the test ends either way.
		deadline := time.Now().Add(time.Minute)
		for len(proctest.InDir(dir)) == 0 {
			if time.Now().After(deadline) {
				seen <- false
				cancel()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		seen <- true
		cancel()
	}()
	_, err = long.Build(ctx, runner, Request{Source: "x.src.rpm", Dir: dir, Log: io.Discard})
	if !<-seen {
		t.Fatal("the noop backend's sleep process did not appear within a minute")
	}
	if !errors.Is(err, sandbox.ErrKilled) {
		t.Fatalf("cancelled noop sleep returned %v, want it killed", err)
	}
	if len(proctest.InDir(dir)) > 0 {
		t.Fatal("the sleep outlived its cancelled build")
	}

	for _, bad := range []any{"soon", "-1s", 5} {
		if _, err := New(Platform{Backend: "noop", Settings: map[string]any{"sleep": bad}}, Options{}); err == nil || !strings.Contains(err.Error(), "sleep must be a duration") {
			t.Errorf("sleep %v: %v", bad, err)
		}
	}
}

// sbuildStandIn writes a program that records its arguments and acts like
// sbuild: it leaves the .deb, .changes, .buildinfo and the build log (a
// time-stamped file and a link to it) in --build-dir, and prints the .debs
// --extra-package offered it.
func sbuildStandIn(t *testing.T) (prog, record string) {
	t.Helper()
	dir := t.TempDir()
	record = filepath.Join(dir, "calls")
	prog = filepath.Join(dir, "sbuild")
	script := `#!/bin/bash
echo "sbuild $*" >> ` + record + `
[ "$1" = --version ] && { echo "sbuild (Debian sbuild) 0.85.0 (04 January 2023)"; exit 0; }
for a in "$@"; do
  case "$a" in --build-dir=*) out=${a#--build-dir=};; --extra-package=*) extra=${a#--extra-package=};; esac
done
dsc=${!#}
[ -n "$extra" ] && for d in "$extra"/*.deb; do echo "offered $(basename "$d")"; done
grep -q FAIL "$dsc" && { echo "sbuild: Build-Depends dependency installation failed"; exit 1; }
[ "$PWD" = "$out" ] || { echo "sbuild ran in $PWD, not in $out"; exit 2; }
base=$(basename "$dsc" .dsc)
echo deb > "$out/${base}_amd64.deb"
echo changes > "$out/${base}_amd64.changes"
echo buildinfo > "$out/${base}_amd64.buildinfo"
echo "full log" > "$out/${base}_amd64-2024-05-01T10:00:00Z.build"
ln -s "${base}_amd64-2024-05-01T10:00:00Z.build" "$out/${base}_amd64.build"
echo "sbuild: Status: successful"
`
	if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return prog, record
}

func TestSbuildSettings(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		settings map[string]any
		err      string
	}{
		{nil, "needs a distribution"},
		{map[string]any{"arch": "amd64"}, "needs a distribution"},
		{map[string]any{"dist": ""}, "dist must be a non-empty string"},
		{map[string]any{"dist": 12}, "dist must be a non-empty string"},
		{map[string]any{"dist": "-x"}, "not a distribution or architecture name"},
		{map[string]any{"dist": "bookworm", "arch": "amd 64"}, "not a distribution or architecture name"},
		{map[string]any{"dist": "bookworm", "chroot": "--enable-network"}, "must not start with a dash"},
		{map[string]any{"dist": "bookworm", "chroot_mode": "docker"}, "is not one of schroot"},
		{map[string]any{"dist": "bookworm", "extra_args": "--jobs=4"}, "extra_args must be a list"},
		{map[string]any{"dist": "bookworm", "extra_args": []any{"foo.dsc"}}, "is not an option"},
		{map[string]any{"dist": "bookworm", "extra_args": []any{3}}, "is not an option"},
		{map[string]any{"dist": "bookworm", "distribution": "trixie"}, `unknown setting "distribution"`},
	} {
		_, err := New(Platform{Backend: "sbuild", Settings: c.settings}, Options{})
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("settings %v: error %v, want one containing %q", c.settings, err, c.err)
		}
	}
	// The arch setting overrides the platform's.
	b, err := New(Platform{Backend: "sbuild", Arch: "amd64", Settings: map[string]any{"dist": "bookworm-backports", "arch": "arm64", "chroot": "/srv/chroots/bookworm-arm64.tar.zst",
		"chroot_mode": "unshare", "extra_args": []any{"--jobs=4", "--run-lintian"}}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := b.(sbuild).command(Request{Source: "/w/p0/foo_1.0-1.dsc", Dir: "/w/p0"}, "/w/p0/result")
	if err != nil {
		t.Fatal(err)
	}
	want := "sbuild --dist=bookworm-backports --arch=arm64 --chroot=/srv/chroots/bookworm-arm64.tar.zst --chroot-mode=unshare " +
		"--build-dir=/w/p0/result --no-run-lintian --no-run-piuparts --no-run-autopkgtest --bd-uninstallable-explainer=dose3 --no-apt-upgrade --no-apt-distupgrade --nolog --jobs=4 --run-lintian /w/p0/foo_1.0-1.dsc"
	if strings.Join(got, " ") != want {
		t.Fatalf("command\n%s\nwant\n%s", strings.Join(got, " "), want)
	}

	// Without the setting sbuild builds for the platform's architecture,
	// and without either for sbuild's default (the host's).
	for arch, want := range map[string]string{
		"arm64": "sbuild --dist=trixie --arch=arm64 --build-dir=/w/p0/result --no-run-lintian --no-run-piuparts --no-run-autopkgtest --bd-uninstallable-explainer=dose3 --no-apt-upgrade --no-apt-distupgrade --nolog /w/p0/foo_1.0-1.dsc",
		"":      "sbuild --dist=trixie --build-dir=/w/p0/result --no-run-lintian --no-run-piuparts --no-run-autopkgtest --bd-uninstallable-explainer=dose3 --no-apt-upgrade --no-apt-distupgrade --nolog /w/p0/foo_1.0-1.dsc",
	} {
		b, err := New(Platform{Backend: "sbuild", Arch: arch, Settings: map[string]any{"dist": "trixie"}}, Options{})
		if err != nil {
			t.Fatal(err)
		}
		got, err := b.(sbuild).command(Request{Source: "/w/p0/foo_1.0-1.dsc", Dir: "/w/p0"}, "/w/p0/result")
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(got, " ") != want {
			t.Errorf("platform arch %q: command\n%s\nwant\n%s", arch, strings.Join(got, " "), want)
		}
	}
}

func TestSbuildCommandsAndResults(t *testing.T) {
	t.Parallel()
	prog, record := sbuildStandIn(t)
	b, err := New(Platform{Backend: "sbuild", Arch: "amd64", Settings: map[string]any{"dist": "bookworm"}}, Options{Sbuild: prog})
	if err != nil {
		t.Fatal(err)
	}
	if !b.SelfIsolating() || b.Name() != "sbuild" {
		t.Fatalf("sbuild backend: name %q, self-isolating %v", b.Name(), b.SelfIsolating())
	}
	work := t.TempDir()
	repo := filepath.Join(work, "repo")
	if err := os.Mkdir(repo, 0o755); err != nil {
		t.Fatal(err)
	}
	runner := &sandbox.Plain{Home: work}
	pkg := func(dir, dsc, content string) Request {
		t.Helper()
		d := filepath.Join(work, dir)
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		src := filepath.Join(d, dsc)
		if err := os.WriteFile(src, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return Request{Source: src, Dir: d, Repo: repo}
	}

	// First package: the local repository is empty, so no --extra-package.
	req := pkg("p0", "foo_1.0-1.dsc", "Source: foo")
	var log bytes.Buffer
	req.Log = &log
	out, err := b.Build(context.Background(), runner, req)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.String())
	}
	var got []string
	for _, o := range out {
		got = append(got, o.Kind+":"+filepath.Base(o.Path))
	}
	want := "buildinfo:foo_1.0-1_amd64.buildinfo other:foo_1.0-1_amd64.changes package:foo_1.0-1_amd64.deb"
	if strings.Join(got, " ") != want {
		t.Fatalf("results %v, want %s", got, want)
	}
	if !strings.Contains(log.String(), "sbuild: Status: successful") {
		t.Fatalf("log lacks sbuild's output: %q", log.String())
	}

	// Second package: the first one's .deb is offered through --extra-package.
	if err := os.WriteFile(filepath.Join(repo, "foo_1.0-1_amd64.deb"), []byte("deb"), 0o644); err != nil {
		t.Fatal(err)
	}
	req2 := pkg("p1", "bar_2.0-1.dsc", "Source: bar")
	var log2 bytes.Buffer
	req2.Log = &log2
	if _, err := b.Build(context.Background(), runner, req2); err != nil {
		t.Fatalf("%v\n%s", err, log2.String())
	}
	if !strings.Contains(log2.String(), "offered foo_1.0-1_amd64.deb") {
		t.Fatalf("the earlier .deb was not offered: %q", log2.String())
	}
	calls, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	wantCalls := "sbuild --dist=bookworm --arch=amd64 --build-dir=" + req.Dir + "/result --no-run-lintian --no-run-piuparts --no-run-autopkgtest --bd-uninstallable-explainer=dose3 --no-apt-upgrade --no-apt-distupgrade --nolog " + req.Source + "\n" +
		"sbuild --dist=bookworm --arch=amd64 --build-dir=" + req2.Dir + "/result --no-run-lintian --no-run-piuparts --no-run-autopkgtest --bd-uninstallable-explainer=dose3 --no-apt-upgrade --no-apt-distupgrade --nolog --extra-package=" + repo + " " + req2.Source + "\n"
	if string(calls) != wantCalls {
		t.Fatalf("commands:\n%s\nwant:\n%s", calls, wantCalls)
	}

	// A failing sbuild run fails the build and keeps its output in the log.
	bad := pkg("p2", "bad_1-1.dsc", "FAIL")
	var log3 bytes.Buffer
	bad.Log = &log3
	if _, err := b.Build(context.Background(), runner, bad); err == nil || !strings.Contains(err.Error(), "sbuild bad_1-1.dsc") {
		t.Fatalf("a failing sbuild run returned %v", err)
	}
	if !strings.Contains(log3.String(), "dependency installation failed") {
		t.Fatalf("log %q", log3.String())
	}

	// An sbuild that succeeds without a .deb is a failed build.
	empty, err := New(Platform{Backend: "sbuild", Settings: map[string]any{"dist": "bookworm"}}, Options{Sbuild: "true"})
	if err != nil {
		t.Fatal(err)
	}
	none := pkg("p3", "none_1-1.dsc", "Source: none")
	none.Log = io.Discard
	if _, err := empty.Build(context.Background(), runner, none); err == nil || !strings.Contains(err.Error(), "left no .deb") {
		t.Fatalf("an sbuild run without results returned %v", err)
	}

	if v := b.Versions(context.Background())["sbuild"]; v != "sbuild (Debian sbuild) 0.85.0 (04 January 2023)" {
		t.Fatalf("sbuild version %q", v)
	}
}

// The buckets' repositories reach sbuild as one --extra-repository (signed-by
// the bucket's fingerprint) and one --extra-repository-key each; a URL,
// suite or fingerprint that would smuggle another option or source into
// apt's one-line format is refused.
func TestSbuildCommandRepositories(t *testing.T) {
	b, err := New(Platform{Backend: "sbuild", Arch: "amd64", Settings: map[string]any{"dist": "bookworm"}}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	const fpr = "0123456789ABCDEF0123456789ABCDEF01234567"
	ok := Repository{URL: "http://kiln:8080/repos/devel/snapshots/3/bookworm-amd64", Suite: "devel", Fingerprint: fpr}
	got, err := b.(sbuild).command(Request{Source: "/w/p0/foo_1.0-1.dsc", Dir: "/w/p0", Repositories: []Repository{ok}}, "/w/p0/result", "/w/p0/k1.asc")
	if err != nil {
		t.Fatal(err)
	}
	want := "--extra-repository=deb [signed-by=" + fpr + "] http://kiln:8080/repos/devel/snapshots/3/bookworm-amd64 devel main|--extra-repository-key=/w/p0/k1.asc|/w/p0/foo_1.0-1.dsc"
	if s := strings.Join(got, "|"); !strings.HasSuffix(s, want) {
		t.Fatalf("command %s\nwant it to end in %s", s, want)
	}
	for _, bad := range []Repository{
		{URL: "http://kiln/repos/d/p trusted=yes", Suite: "devel", Fingerprint: fpr},
		{URL: "http://kiln/repos/d/p\ndeb [trusted=yes] http://evil/ x", Suite: "devel", Fingerprint: fpr},
		{URL: "file:///etc", Suite: "devel", Fingerprint: fpr},
		{URL: ok.URL, Suite: "devel main contrib", Fingerprint: fpr},
		{URL: ok.URL, Suite: "devel", Fingerprint: fpr + "] trusted=yes [x=y"},
		{URL: ok.URL, Suite: "devel", Fingerprint: ""},
	} {
		if _, err := b.(sbuild).command(Request{Source: "/w/p0/foo_1.0-1.dsc", Dir: "/w/p0", Repositories: []Repository{bad}}, "/w/p0/result", "/w/p0/k1.asc"); err == nil {
			t.Errorf("repository %+v accepted", bad)
		}
	}
	dir, err := beneath.OpenRoot(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer dir.Close()
	if _, err := repositoryKeys(Request{Repositories: []Repository{{URL: ok.URL, Key: "not a key"}}}, dir); err == nil {
		t.Error("a key that is not an armored public key was written")
	}
}
