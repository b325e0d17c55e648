package builder

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// secretFile writes a root-only file outside every work directory, as the
// builder's keytab or ~/.pgpass are, and returns its path.
func secretFile(t *testing.T, content string) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "kiln-secret-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	p := filepath.Join(dir, "pgpass")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestSwappedResultIsNotStored is the build of finding 7: package 2 of a
// job replaces package 1's result RPM with a symbolic link to a secret. The
// builder stores what package 1 built, never the secret.
func TestSwappedResultIsNotStored(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "el9-x86_64", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	_, pool := f.builderPool(t, 1)
	secret := secretFile(t, "SECRET-PGPASS-CONTENT")
	one := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-one", Noarch: true})
	two := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-two", Noarch: true, Build: `
for f in %{_topdir}/../../p0/rpmbuild/RPMS/*/*.rpm; do rm -f "$f"; ln -s ` + secret + ` "$f"; echo SWAPPED "$f"; done
echo hi > kiln-two.txt`})
	_, task := f.submit(t, "el9-x86_64", "retry", one, two)
	start(t, pool, testConfig(t, "el9-x86_64"))

	if st := f.waitStatus(t, task, "succeeded", "failed", "timed_out"); st != "succeeded" {
		t.Fatalf("task %s\n%s", st, f.logOf(t, task, 1))
	}
	if log := f.logOf(t, task, 1); !strings.Contains(log, "SWAPPED ") {
		t.Fatalf("the attack did not run:\n%s", log)
	}
	arts := f.artifacts(t, task, 1)
	rpm, ok := arts["kiln-one-1.0-1.noarch.rpm"]
	if !ok || !bytes.HasPrefix(rpm.content, []byte{0xed, 0xab, 0xee, 0xdb}) {
		t.Fatalf("package 1's artifact is not the RPM it built (%d bytes)", len(rpm.content))
	}
	for name, a := range arts {
		if bytes.Contains(a.content, []byte("SECRET-PGPASS")) {
			t.Fatalf("artifact %s holds the secret", name)
		}
	}
}

// TestRetryIsBuiltFromPristineSources is the build of finding 8: on its
// first try a package swaps its directory for a symbolic link to a
// root-only directory. The retry builds a fresh copy of the sources the
// builder keeps out of every build's reach; nothing outside the work
// directory changes owner, mode or content.
func TestRetryIsBuiltFromPristineSources(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "el9-x86_64", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	_, pool := f.builderPool(t, 1)
	secret := secretFile(t, "SECRET-ROOT-ONLY")
	secretDir := filepath.Dir(secret)
	os.Chmod(secretDir, 0o700)
	before, _ := os.Stat(secret)
	// The private /tmp lives as long as the attempt: the first try leaves a
	// mark there.
	flaky := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-flaky", Noarch: true, Build: `
d=$(cd %{_topdir}/.. && pwd)
if [ ! -e /tmp/tried ]; then
  touch /tmp/tried
  mv "$d" "$d.moved" && ln -s ` + secretDir + ` "$d" && echo SWAPPED-DIR "$d"
  ln -s ` + secret + ` "$d.moved/kiln-flaky-1.0-1.src.rpm.planted"
  exit 1
fi
echo hi > kiln-flaky.txt`})
	other := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-other", Noarch: true})
	_, task := f.submit(t, "el9-x86_64", "retry", flaky, other)
	start(t, pool, testConfig(t, "el9-x86_64"))

	if st := f.waitStatus(t, task, "succeeded", "failed", "timed_out"); st != "succeeded" {
		t.Fatalf("task %s\n%s", st, f.logOf(t, task, 1))
	}
	if log := f.logOf(t, task, 1); !strings.Contains(log, "SWAPPED-DIR ") || !strings.Contains(log, "pass 2") {
		t.Fatalf("the attack or the retry did not run:\n%s", log)
	}
	after, err := os.Stat(secret)
	if err != nil {
		t.Fatal(err)
	}
	st := after.Sys().(*syscall.Stat_t)
	if st.Uid != uint32(os.Geteuid()) || after.Mode() != before.Mode() || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("the secret changed: uid %d, mode %v", st.Uid, after.Mode())
	}
	if b, _ := os.ReadFile(secret); string(b) != "SECRET-ROOT-ONLY" {
		t.Fatalf("the secret was rewritten: %q", b)
	}
	if entries, _ := os.ReadDir(secretDir); len(entries) != 1 {
		t.Fatalf("files appeared in the root-only directory: %v", entries)
	}
	if info := f.buildInfo(t, task, 1); info.Packages[0].Tries != 2 || info.Packages[0].Status != "succeeded" {
		t.Fatalf("build info %+v", info.Packages)
	}
}

// TestBuildersCannotSeeEachOther is the build of finding 9: two builders on
// one host; while b1 builds a job, a build on b2 looks for b1's work
// directory, its live log and its sources.
func TestBuildersCannotSeeEachOther(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "el9-a", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	f.platform(t, "el9-b", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	_, pool1 := f.builderPool(t, 1)
	_, pool2 := f.builderPool(t, 1)
	cfg1 := testConfig(t, "el9-a")
	cfg2 := testConfig(t, "el9-b")
	private := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-private", Noarch: true, Build: "echo SECRET-B1-LIVE-LOG; sleep 600"})
	_, task1 := f.submit(t, "el9-a", "retry", private)
	b1 := start(t, pool1, cfg1)
	waitFor(t, "b1's build to run", func() bool { return strings.Contains(f.logOf(t, task1, 1), "SECRET-B1-LIVE-LOG") })
	// b1's live log and sources are on disk, readable by a process outside
	// the sandbox, so the check below can fail.
	out, _ := exec.Command("sh", "-c", "cat "+cfg1.WorkDir+"/task-*.log; ls -R "+cfg1.WorkDir).CombinedOutput()
	if !strings.Contains(string(out), "SECRET-B1-LIVE-LOG") || !strings.Contains(string(out), "kiln-private-1.0-1.src.rpm") {
		t.Fatalf("b1's work directory does not hold its build:\n%s", out)
	}

	// Without xtrace, so that only what the probe finds is in its log.
	probe := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-probe", Noarch: true, Build: fmt.Sprintf(`set +x
ls -R %[1]s 2>&1 | head -20
cat %[1]s/task-*.log 2>&1 | head -5
find / -xdev -name 'kiln-priv*' 2>/dev/null | head
grep -rs SECRET-B1-LIVE / --exclude-dir=proc --exclude-dir=sys --exclude-dir=rpmbuild --exclude='rpm-tmp.*' 2>/dev/null | head -3
echo PROBE-DONE
echo hi > kiln-probe.txt`, cfg1.WorkDir)})
	_, task2 := f.submit(t, "el9-b", "retry", probe)
	start(t, pool2, cfg2)
	if st := f.waitStatus(t, task2, "succeeded", "failed", "timed_out"); st != "succeeded" {
		t.Fatalf("task %s\n%s", st, f.logOf(t, task2, 1))
	}
	log := f.logOf(t, task2, 1)
	if !strings.Contains(log, "PROBE-DONE") || !strings.Contains(log, "No such file or directory") {
		t.Fatalf("the probe did not run:\n%s", log)
	}
	for _, s := range []string{"SECRET-B1", "kiln-private"} {
		if strings.Contains(log, s) {
			t.Fatalf("b2's build saw b1's build (%s):\n%s", s, log)
		}
	}
	b1.stop()
}

// TestLimitsEndTheAttemptFailed: a build past a limit of its platform is
// killed; the attempt ends failed at once (no retry, not lost), with the
// limit named in its reason and its log.
func TestLimitsEndTheAttemptFailed(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	cases := map[string]struct{ limit, build, reason string }{
		"disk-tmp": {"max_disk = 64 * 1024 * 1024",
			"for i in $(seq 64); do head -c 16M /dev/zero > /tmp/f$i || exit 1; done; sleep 600",
			"the build used more than 64 MiB of disk in its work directory (limit of platform disk-tmp); it was killed"},
		"disk-work": {"max_disk = 64 * 1024 * 1024", "head -c 1G /dev/zero > big; sleep 600",
			"the build used more than 64 MiB of disk in its work directory (limit of platform disk-work); it was killed"},
		"procs": {"max_processes = 64", "bash -c 'for i in $(seq 1000); do sleep 600 & done; wait'",
			"the build reached its limit of 64 processes (limit of platform procs); it was killed"},
		"memory": {"max_memory = 64 * 1024 * 1024", `perl -e '$x = "k" x (512 << 20); sleep 600'`,
			"the build used more than 64 MiB of memory (limit of platform memory); it was killed"},
	}
	tasks := map[string]int64{}
	var names []string
	for name, c := range cases {
		f.platform(t, name, "x86_64", "rpm", "rpmbuild", time.Hour, "")
		f.exec(t, "UPDATE kiln.platform SET "+c.limit+" WHERE name = $1", name)
		hog := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-hog", Noarch: true, Build: c.build})
		after := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-after", Noarch: true})
		_, tasks[name] = f.submit(t, name, "retry", hog, after)
		names = append(names, name)
	}
	_, pool := f.builderPool(t, 2)
	cfg := testConfig(t, names...)
	cfg.Slots = 2
	start(t, pool, cfg)
	for name, c := range cases {
		task := tasks[name]
		st := f.waitStatus(t, task, "succeeded", "failed", "timed_out", "lost")
		_, attempt, reason := f.taskStatus(t, task)
		log := f.logOf(t, task, 1)
		if st != "failed" || attempt != 1 || reason != c.reason {
			t.Errorf("%s: task %s (attempt %d): %q, want failed: %q\n%s", name, st, attempt, reason, c.reason, log)
			continue
		}
		// At once: the package after it is not built, nor the hog retried.
		if !strings.Contains(log, c.reason) || strings.Contains(log, "building kiln-after") || strings.Contains(log, "pass 2") {
			t.Errorf("%s: the log goes on past the limit:\n%s", name, log)
		}
		if _, ok := f.artifacts(t, task, 1)["build.log"]; !ok {
			t.Errorf("%s: no build.log artifact", name)
		}
	}
}

// TestFullDiskEndsTheAttemptFailed: the builder's work directory is a small
// file system a build fills (far below its disk limit). The attempt ends
// failed at once, with its log and build info; it is not given back to be
// lost and retried.
func TestFullDiskEndsTheAttemptFailed(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small file system needs root")
	}
	f := newFarm(t)
	f.platform(t, "el9-x86_64", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	_, pool := f.builderPool(t, 1)
	cfg := testConfig(t, "el9-x86_64")
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=96m,mode=0755", "tmpfs", cfg.WorkDir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", cfg.WorkDir).Run() })
	fill := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-fill", Noarch: true, Build: "echo FILLING; head -c 1G /dev/zero > /tmp/fill; sleep 600"})
	_, task := f.submit(t, "el9-x86_64", "retry", fill)
	r := start(t, pool, cfg)

	st := f.waitStatus(t, task, "succeeded", "failed", "timed_out", "lost")
	_, attempt, reason := f.taskStatus(t, task)
	log := f.logOf(t, task, 1)
	if st != "failed" || attempt != 1 || !strings.Contains(reason, "the disk of the work directory is full") {
		t.Fatalf("task %s (attempt %d): %q\n%s", st, attempt, reason, log)
	}
	if !strings.Contains(log, "FILLING") || !strings.Contains(log, "ends failed: the disk of the work directory is full") {
		t.Fatalf("the log lacks the build or its end:\n%s", log)
	}
	arts := f.artifacts(t, task, 1)
	if _, ok := arts["kiln-buildinfo.json"]; !ok {
		t.Fatalf("no build info among %v", arts)
	}
	r.stop()
}

// TestLimitDefaults: a platform without limits gets the defaults.
func TestLimitDefaults(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "el9-x86_64", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	f.platform(t, "small", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	f.exec(t, "UPDATE kiln.platform SET max_processes = 100, max_memory = 1073741824, max_disk = 2147483648 WHERE name = 'small'")
	_, pool := f.builderPool(t, 1)
	b, err := New(context.Background(), pool, testConfig(t, "el9-x86_64", "small"))
	if err != nil {
		t.Fatal(err)
	}
	if l := b.platform("el9-x86_64").limits; l.Processes != 1024 || l.Memory != 8<<30 || l.Disk != 20<<30 {
		t.Fatalf("default limits %+v", l)
	}
	if l := b.platform("small").limits; l.Processes != 100 || l.Memory != 1<<30 || l.Disk != 2<<30 {
		t.Fatalf("limits %+v", l)
	}
	if _, err := f.db.Pool.Exec(context.Background(), "UPDATE kiln.platform SET max_disk = 0 WHERE name = 'small'"); err == nil {
		t.Fatal("a zero disk limit was accepted")
	}
}
