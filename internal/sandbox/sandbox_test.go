package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testsupport/proctest"
)

// testUID is the host uid builds of these tests run as when they run as
// root.
const testUID = 1_000_065_001

// newSandbox returns a sandbox with a fresh work directory (and its tmp/),
// as testUID when the test runs as root.
func newSandbox(t *testing.T) *Sandbox {
	t.Helper()
	top := t.TempDir()
	work := filepath.Join(top, "build")
	for _, d := range []string{work, filepath.Join(work, "tmp")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	s := &Sandbox{Work: work}
	if os.Geteuid() == 0 {
		s.ID = &ID{UID: testUID, GID: testUID}
		for _, d := range []string{top, filepath.Dir(top)} {
			if err := os.Chmod(d, 0o711); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range []string{work, filepath.Join(work, "tmp")} {
			if err := os.Chown(d, testUID, testUID); err != nil {
				t.Fatal(err)
			}
		}
	}
	return s
}

func runScript(t *testing.T, r Runner, dir, script string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := r.Run(context.Background(), Command{Dir: dir, Args: []string{"bash", "-c", script}, Output: &out})
	return out.String(), err
}

func TestNoNetwork(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	script := fmt.Sprintf("exec 3<>/dev/tcp/127.0.0.1/%d && echo connected", port)
	s := newSandbox(t)
	// The same command outside the sandbox connects, so the check can fail.
	if out, err := runScript(t, &Plain{Home: s.Work}, s.Work, script); err != nil || !strings.Contains(out, "connected") {
		t.Fatalf("outside the sandbox the connection should work: %v %s", err, out)
	}
	out, err := runScript(t, s, s.Work, script)
	if err == nil || strings.Contains(out, "connected") {
		t.Fatalf("a sandboxed build reached the network: %v %s", err, out)
	}
}

// TestSeesOnlyItsWorkDir is the build of finding 9 and of the hide list's
// gaps: it looks for another build's work directory, the builder's keytab
// and secrets, /root, and writes outside its work directory.
func TestSeesOnlyItsWorkDir(t *testing.T) {
	t.Parallel()
	secretDir, err := os.MkdirTemp("/var/tmp", "kiln-sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(secretDir) })
	os.Chmod(secretDir, 0o755)
	// World-readable on purpose: only the sandbox keeps the build from them.
	keytab := filepath.Join(secretDir, "kiln-builder.keytab")
	os.WriteFile(keytab, []byte("SECRET-KEYTAB"), 0o644)
	other := newSandbox(t) // another build's work directory, on the same host
	os.WriteFile(filepath.Join(other.Work, "live.log"), []byte("SECRET-OTHER-BUILD"), 0o644)
	// A secret in /etc, hidden by name (as /etc/krb5.keytab is by default).
	etcSecret, etcContent := fmt.Sprintf("/etc/kiln-sandbox-test-%d", rand.IntN(1_000_000)), "SECRET-ETC"
	if os.Geteuid() == 0 {
		os.WriteFile(etcSecret, []byte(etcContent), 0o644)
		t.Cleanup(func() { os.Remove(etcSecret) })
	} else {
		etcSecret, etcContent = keytab, "SECRET-KEYTAB" // only root can write to /etc
	}

	s := newSandbox(t)
	s.Hide = []string{etcSecret}
	script := fmt.Sprintf("cat %s %s/live.log %s; ls /root /home /run /srv /var/lib/postgresql; ls %s",
		keytab, other.Work, etcSecret, filepath.Dir(other.Work))
	if out, _ := runScript(t, &Plain{Home: s.Work}, s.Work, script); !strings.Contains(out, "SECRET-KEYTAB") ||
		!strings.Contains(out, "SECRET-OTHER-BUILD") || !strings.Contains(out, etcContent) {
		t.Fatalf("outside the sandbox the files should be readable: %s", out)
	}
	out, _ := runScript(t, s, s.Work, script)
	if strings.Contains(out, "SECRET") {
		t.Fatalf("a sandboxed build read what is not its own: %s", out)
	}
	for _, p := range []string{"/root", "/home", "/run", "/srv", filepath.Dir(other.Work)} {
		if !strings.Contains(out, "cannot access '"+p+"'") {
			t.Errorf("%s exists in the sandbox: %s", p, out)
		}
	}
	// What the build needs is there: the tools and the package databases.
	if out, err := runScript(t, s, s.Work, "dpkg-query -W dpkg && rpmbuild --version && ls /var/lib/dpkg/status"); err != nil {
		t.Fatalf("the sandbox lacks what builds need: %v %s", err, out)
	}

	for _, p := range []string{"/escape", "/usr/escape", "/etc/escape", secretDir + "/escape"} {
		if out, err := runScript(t, s, s.Work, "touch "+p); err == nil {
			t.Errorf("a sandboxed build wrote %s: %s", p, out)
		}
	}
	if _, err := os.Stat(filepath.Join(secretDir, "escape")); err == nil {
		t.Fatal("file created outside the work directory")
	}
	out, err = runScript(t, s, s.Work, "touch ok /tmp/tmp-ok /var/tmp/vartmp-ok")
	if err != nil {
		t.Fatalf("the work directory or /tmp is not writable: %v %s", err, out)
	}
	// /tmp and /var/tmp are the work directory's tmp/.
	for _, p := range []string{"ok", "tmp/tmp-ok", "tmp/vartmp-ok"} {
		if _, err := os.Stat(filepath.Join(s.Work, p)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// TestRootInItsOwnUserNamespace: the build is uid 0 inside (so fakeroot and
// dh_fixperms can chown to root), an unprivileged host uid outside, and
// cannot make further user namespaces.
func TestRootInItsOwnUserNamespace(t *testing.T) {
	t.Parallel()
	s := newSandbox(t)
	out, err := runScript(t, s, s.Work, "id -u; touch f; chown 0:0 f; fakeroot sh -c 'touch g; chown root:root g; chmod 4755 g'; cat /proc/self/uid_map")
	if err != nil {
		t.Fatal(err, out)
	}
	if !strings.HasPrefix(out, "0\n") {
		t.Fatalf("the build is not uid 0 inside: %s", out)
	}
	fi, err := os.Stat(filepath.Join(s.Work, "f"))
	if err != nil {
		t.Fatal(err)
	}
	want := uint32(os.Geteuid())
	if s.ID != nil {
		want = s.ID.UID
	}
	if got := fi.Sys().(*syscall.Stat_t).Uid; got != want || got == 0 {
		t.Fatalf("a file the build made is owned by host uid %d, want %d (never 0)", got, want)
	}
	if out, err := runScript(t, s, s.Work, "unshare --user true"); err == nil {
		t.Fatalf("the build made a user namespace of its own: %s", out)
	}
}

// TestUnprivilegedCommand: a command run Unprivileged is an ordinary uid
// inside, the same host uid outside.
func TestUnprivilegedCommand(t *testing.T) {
	t.Parallel()
	s := newSandbox(t)
	var out bytes.Buffer
	err := s.Run(context.Background(), Command{Dir: s.Work, Args: []string{"sh", "-c", "id -u; touch f"}, Output: &out, Unprivileged: true})
	if err != nil || out.String() != fmt.Sprintf("%d\n", BuildUID) {
		t.Fatalf("%v %q", err, out.String())
	}
	fi, err := os.Stat(filepath.Join(s.Work, "f"))
	if err != nil {
		t.Fatal(err)
	}
	want := uint32(os.Geteuid())
	if s.ID != nil {
		want = s.ID.UID
	}
	if got := fi.Sys().(*syscall.Stat_t).Uid; got != want {
		t.Fatalf("host uid %d, want %d", got, want)
	}
}

func TestCancelKillsWholeGroup(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"bwrap", "plain"} {
		t.Run(name, func(t *testing.T) {
			s := newSandbox(t)
			var r Runner = s
			if name == "plain" {
				r = &Plain{Home: s.Work}
			}
			marker := fmt.Sprintf("%d.%d", 5000+rand.IntN(1000), rand.IntN(1_000_000))
			// A child in the background, one that leaves the process group's
			// session, and a sleeping parent.
			script := fmt.Sprintf("sleep %s & setsid sleep %s & touch %s/started; sleep %s", marker, marker, s.Work, marker)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				errc <- r.Run(ctx, Command{Dir: s.Work, Args: []string{"bash", "-c", script}})
			}()
			for range 600 {
				if _, err := os.Stat(filepath.Join(s.Work, "started")); err == nil {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if n := len(proctest.Find("sleep " + marker)); n == 0 {
				t.Fatal("the build's processes never started")
			}
			cancel()
			err := <-errc
			if !errors.Is(err, ErrKilled) {
				t.Fatalf("Run = %v, want ErrKilled", err)
			}
			// Killed processes vanish once reaped; give the kernel a moment.
			// The one that left the group with setsid goes too, even
			// without bubblewrap's PID namespace (sbuild and mock run so,
			// and sbuild's unshare mode puts the build in a session of its
			// own): it is a descendant of the group's processes.
			var left []int
			for range 100 {
				if left = proctest.Find("sleep " + marker); len(left) == 0 {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			for _, pid := range left {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			if len(left) > 0 {
				t.Fatalf("processes survived the kill: %v", left)
			}
		})
	}
}

func TestExitKillsBackgroundChildren(t *testing.T) {
	t.Parallel()
	s := newSandbox(t)
	marker := fmt.Sprintf("%d.%d", 6000+rand.IntN(1000), rand.IntN(1_000_000))
	out, err := runScript(t, s, s.Work, fmt.Sprintf("sleep %s >/dev/null 2>&1 & echo left a child", marker))
	if err != nil {
		t.Fatal(err, out)
	}
	proctest.NoLeftovers(t, "sleep "+marker)
}

// limited runs script in a fresh sandbox with limits and returns the limit
// it was killed for.
func limited(t *testing.T, l Limits, script string) (*LimitError, string) {
	t.Helper()
	s := newSandbox(t)
	s.Limits = l
	out, err := runScript(t, s, s.Work, script)
	var le *LimitError
	if !errors.As(err, &le) {
		t.Fatalf("Run = %v, want a *LimitError\n%s", err, out)
	}
	return le, out
}

// TestForkBomb: the build of finding 10 that started 1,000 processes.
func TestForkBomb(t *testing.T) {
	t.Parallel()
	marker := fmt.Sprintf("%d.%d", 7000+rand.IntN(1000), rand.IntN(1_000_000))
	le, out := limited(t, Limits{Processes: 64}, fmt.Sprintf("for i in $(seq 1000); do sleep %s & done; wait", marker))
	if le.Limit != "processes" || !strings.Contains(le.Error(), "limit of 64 processes") {
		t.Fatalf("killed for %v, want the processes limit\n%s", le, out)
	}
	proctest.NoLeftovers(t, "sleep "+marker)
}

// TestMemoryHog: a build that holds 512 MiB against a limit of 64 MiB.
func TestMemoryHog(t *testing.T) {
	t.Parallel()
	le, out := limited(t, Limits{Memory: 64 << 20}, `perl -e '$x = "k" x (512 << 20); sleep 60'`)
	if le.Limit != "memory" || !strings.Contains(le.Describe("platform p"), "more than 64 MiB of memory (limit of platform p)") {
		t.Fatalf("killed for %v, want the memory limit\n%s", le, out)
	}
}

// TestDiskLimit: the build of finding 10 that wrote 1 GiB into its work
// directory, and 1 GiB into /tmp, in files each below the limit (the
// watcher) and in one file (RLIMIT_FSIZE, then the measure at exit).
func TestDiskLimit(t *testing.T) {
	t.Parallel()
	for name, script := range map[string]string{
		"work dir, many files": "for i in $(seq 64); do head -c 16M /dev/zero > f$i || exit 1; done; sleep 60",
		"/tmp, many files":     "for i in $(seq 64); do head -c 16M /dev/zero > /tmp/f$i || exit 1; done; sleep 60",
		"work dir, one file":   "head -c 1G /dev/zero > big",
		"/var/tmp, one file":   "head -c 1G /dev/zero > /var/tmp/big",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			le, out := limited(t, Limits{Disk: 64 << 20}, script)
			if le.Limit != "disk" || !strings.Contains(le.Error(), "more than 64 MiB of disk in its work directory") {
				t.Fatalf("killed for %v, want the disk limit\n%s", le, out)
			}
		})
	}
}

// TestDiskFull: a work directory on a small file system the build fills
// (below its disk limit) is killed while the builder can still write.
func TestDiskFull(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("mounting a small file system needs root")
	}
	s := newSandbox(t)
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=48m,mode=0755", "tmpfs", s.Work).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", s.Work).Run() })
	os.Mkdir(filepath.Join(s.Work, "tmp"), 0o755)
	os.Chown(s.Work, testUID, testUID)
	os.Chown(filepath.Join(s.Work, "tmp"), testUID, testUID)
	s.Limits = Limits{Disk: 1 << 30}
	out, err := runScript(t, s, s.Work, "head -c 100M /dev/zero > /tmp/fill; sleep 60")
	var le *LimitError
	if !errors.As(err, &le) || le.Limit != "disk full" || !strings.Contains(le.Error(), "is full") {
		t.Fatalf("Run = %v, want the disk full limit\n%s", err, out)
	}
}

// TestWithinLimits: an ordinary command under all limits runs as usual.
func TestWithinLimits(t *testing.T) {
	t.Parallel()
	s := newSandbox(t)
	s.Limits = Limits{Processes: DefaultProcesses, Memory: DefaultMemory, Disk: DefaultDisk}
	if out, err := runScript(t, s, s.Work, "head -c 1M /dev/zero > f; (sleep 0.1 &); echo fine"); err != nil || !strings.Contains(out, "fine") {
		t.Fatalf("%v %s", err, out)
	}
}

func TestBytes(t *testing.T) {
	for n, want := range map[int64]string{20 << 30: "20 GiB", 64 << 20: "64 MiB", 1536 << 20: "1.5 GiB", 100: "100 bytes"} {
		if got := Bytes(n); got != want {
			t.Errorf("Bytes(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestIDPool: two builders of a host never get the same build uid; a
// range with too few free uids is refused.
func TestIDPool(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	first := uint32(1_000_066_000)
	a, err := ClaimIDs(dir, first, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := ClaimIDs(dir, first, 4, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	seen := map[uint32]bool{}
	for _, p := range []*IDPool{a, b} {
		for range 2 {
			id := p.Get()
			if seen[id.UID] || id.UID < first || id.UID >= first+4 {
				t.Fatalf("uid %d handed out twice or out of range", id.UID)
			}
			seen[id.UID] = true
		}
	}
	if _, err := ClaimIDs(dir, first, 4, 1); err == nil || !strings.Contains(err.Error(), "only 0 of the 1") {
		t.Fatalf("a third builder got uids of a full range: %v", err)
	}
}

// A build cannot take itself out of reach by joining another process
// group of the builder's session: it runs in a session of its own, so the
// move is refused, and a cancel kills it.
func TestBuildCannotJoinAnotherGroup(t *testing.T) {
	t.Parallel()
	s := newSandbox(t)
	other := exec.Command("sleep", "3600")
	other.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = other.Process.Kill(); _ = other.Wait() }()
	marker := fmt.Sprintf("%d.%d", 7000+rand.IntN(1000), rand.IntN(1_000_000))
	script := fmt.Sprintf(`setpgrp(0, %d) and print "MOVED\n"; open(my $f, ">", "%s/started"); close $f; exec "sleep", "%s"`,
		other.Process.Pid, s.Work, marker)
	ctx, cancel := context.WithCancel(context.Background())
	var out strings.Builder
	errc := make(chan error, 1)
	go func() {
		errc <- (&Plain{Home: s.Work}).Run(ctx, Command{Dir: s.Work, Args: []string{"perl", "-e", script}, Output: &out})
	}()
	for range 600 {
		if _, err := os.Stat(filepath.Join(s.Work, "started")); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, ErrKilled) {
			t.Fatalf("Run = %v, want ErrKilled\n%s", err, out.String())
		}
	case <-time.After(time.Minute):
		for _, pid := range proctest.Find("sleep " + marker) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		t.Fatalf("the cancelled build is still running a minute later (it moved to another group?)\n%s", out.String())
	}
	if strings.Contains(out.String(), "MOVED") {
		t.Fatal("the build joined another process group")
	}
	proctest.NoLeftovers(t, "sleep "+marker)
}

// In a PID namespace whose /proc is another's (unshare --pid without
// --mount-proc, as a container with the host's /proc mounted), CheckProc
// refuses: the pids /proc shows are not the ones signals reach.
func TestCheckProcRefusesAnotherNamespacesProc(t *testing.T) {
	if os.Getenv("KILN_TEST_PROC_CHILD") != "" {
		if err := CheckProc(); err == nil || !strings.Contains(err.Error(), "not of this process's PID namespace") {
			t.Fatalf("CheckProc = %v", err)
		}
		return
	}
	if err := CheckProc(); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root for unshare --pid")
	}
	cmd := exec.Command("unshare", "--pid", "--fork", os.Args[0], "-test.run=^TestCheckProcRefusesAnotherNamespacesProc$", "-test.count=1")
	cmd.Env = append(os.Environ(), "KILN_TEST_PROC_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("in a PID namespace of its own: %v\n%s", err, out)
	}
}
