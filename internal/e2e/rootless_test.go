package e2e

import (
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/environment/envtest"
	"github.com/kiln-build/kiln/internal/sandbox"
	"github.com/kiln-build/kiln/internal/testsupport/proctest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// A kiln-builder that is not root (the build user itself, as a rootless
// host runs it) builds on an sbuild platform in unshare mode. Stopped while
// a debhelper build runs, it kills the build and removes sbuild's chroot,
// whose files belong to its subordinate ids and which it cannot remove
// from outside (sandbox.RemoveMapped); started again on the same work
// directory, it starts and builds the next package.
func TestRootlessSbuildBuilderCleansUpAfterItself(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to run the builder as the build user")
	}
	u, err := sandbox.LookupUser("kiln-build")
	if err != nil {
		t.Skipf("no build user: %v", err)
	}
	if err := sandbox.CheckSubordinateIDs(context.Background(), u); err != nil {
		t.Skipf("the build user cannot map its subordinate ids: %v", err)
	}
	const deb = "bookworm-amd64"
	path, spec := envtest.Shared(t)

	f := sbuildFarm(t, deb, spec)
	role := f.role(t, "kiln_builder")
	top := t.TempDir()
	work, cache := filepath.Join(top, "work"), filepath.Join(top, "envs")
	for _, d := range []string{top, filepath.Dir(top), filepath.Dir(binary(t, "kiln-builder"))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []string{work, cache} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, int(u.UID), int(u.GID)); err != nil {
			t.Fatal(err)
		}
	}
	builder := func() *proc {
		cmd := exec.Command(binary(t, "kiln-builder"), append(f.login(role), "--name", "rl", "--platform", deb, "--workdir", work,
			"--environment-cache", cache, "--heartbeat", "1s", "--grace", "1s")...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/var/lib/kiln-build", "LC_ALL=C.UTF-8"}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID}}
		return startCmd(t, "rootless builder", cmd)
	}
	b := builder()
	waitFor(t, "the rootless builder to register", func() bool {
		return f.count(t, `SELECT count(*) FROM kiln.builder WHERE name = 'rl' AND state = 'online'`) == 1
	})
	installEnvironment(t, f, role, "rl", deb, path, spec)

	as := f.login(f.person)
	submit := func(d testpkg.Deb) int64 {
		out, code := kiln(t, nil, append(as, "submit", "--bucket", "devel", "--platform", deb, testpkg.DSC(t, d))...)
		if code != 0 {
			t.Fatalf("kiln submit %s: exit %d\n%s", d.Name, code, out)
		}
		return f.taskOf(t, submittedJob(t, out))
	}
	marker := proctest.SleepMarker()
	hanging := submit(testpkg.Deb{Name: "kiln-rootless-hang", Build: "echo SLEEPING-NOW; sleep " + marker})
	deadline := time.Now().Add(20 * time.Minute)
	for !strings.Contains(f.attemptLog(t, hanging, 1), "SLEEPING-NOW") {
		if st := f.task(t, hanging); st.Status != "pending" && st.Status != "building" || time.Now().After(deadline) {
			t.Fatalf("the build did not start sleeping: task %+v\n%s", st, f.attemptLog(t, hanging, 1))
		}
		time.Sleep(time.Second)
	}
	if n := subordinateOwned(t, work, u.UID); n == 0 {
		t.Fatal("sbuild's chroot in the work directory has no file of a subordinate id, so this tests nothing")
	}

	b.stop(t)
	proctest.NoLeftovers(t, "sleep "+marker)
	if left, _ := filepath.Glob(filepath.Join(work, "task-*")); len(left) != 0 {
		t.Fatalf("the stopped builder left %v (%d files of subordinate ids)", left, subordinateOwned(t, work, u.UID))
	}
	f.exec(t, "SELECT kiln.cancel_task($1)", hanging)

	builder()
	quick := submit(testpkg.Deb{Name: "kiln-rootless-next"})
	if st := f.waitEnd(t, quick); st.Status != "succeeded" {
		t.Fatalf("the restarted rootless builder's build: task %+v\n%s", st, f.attemptLog(t, quick, 1))
	}
}

// subordinateOwned counts the files under dir that belong to neither root
// nor uid: what sbuild's user namespace made.
func subordinateOwned(t *testing.T, dir string, uid uint32) int {
	t.Helper()
	n := 0
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok && st.Uid != 0 && st.Uid != uid {
				n++
			}
		}
		return nil
	})
	return n
}
