package sandbox

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// subUser is an account with subordinate ids for these tests: the build
// user .ci/setup-debian makes, when the tests run as root.
func subUser(t *testing.T) *User {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root, to act as the build user")
	}
	u, err := LookupUser("kiln-build")
	if err != nil {
		t.Skipf("no build user: %v", err)
	}
	if err := CheckSubordinateIDs(context.Background(), u); err != nil {
		t.Skipf("the build user cannot map its subordinate ids: %v", err)
	}
	return u
}

// asUser runs a shell script as u in dir.
func asUser(t *testing.T, u *User, dir, script string) (string, error) {
	t.Helper()
	cmd := exec.Command("sh", "-c", script)
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// A tree as an sbuild build killed part way leaves it: directories and
// files of the build user's subordinate ids, some unreadable. The user
// cannot remove it from outside; RemoveMapped does, and removes only it,
// not what a symbolic link in it points to.
func TestRemoveMappedRemovesATreeOfSubordinateIDs(t *testing.T) {
	u := subUser(t)
	top := t.TempDir()
	if err := os.Chmod(top, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Dir(top), 0o755); err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(top, "work")
	outside := filepath.Join(top, "outside")
	for _, d := range []string{work, outside} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Chown(d, int(u.UID), int(u.GID)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "keep"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := asUser(t, u, work, `unshare --map-auto --map-root-user sh -ec '
		mkdir -p task/chroot/var/cache/apt/partial task/chroot/build
		echo x > task/chroot/build/f; echo y > task/chroot/var/cache/apt/partial/g
		ln -s `+outside+` task/chroot/build/link
		chown -R 100:100 task/chroot/build; chown -R 42:0 task/chroot/var/cache/apt
		chmod 700 task/chroot/var/cache/apt/partial; chmod 500 task/chroot/build'`); err != nil {
		t.Fatalf("making the tree: %v\n%s", err, out)
	}
	tree := filepath.Join(work, "task")
	if out, err := asUser(t, u, work, "rm -rf task"); err == nil {
		t.Fatalf("the build user removed the tree from outside, so this tests nothing:\n%s", out)
	}
	if err := RemoveMapped(context.Background(), u, tree); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(tree); !os.IsNotExist(err) {
		t.Fatalf("the tree is still there: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(outside, "keep")); err != nil || string(b) != "keep" {
		t.Fatalf("what the link pointed to was touched: %q %v", b, err)
	}
}

// A process with no_new_privs set (systemd's NoNewPrivileges=yes) cannot
// map subordinate ids, and the check says why and what to change. The
// check runs in a child with no_new_privs set (setpriv), since it cannot
// be unset.
func TestCheckSubordinateIDsNamesNoNewPrivileges(t *testing.T) {
	if os.Getenv("KILN_TEST_NNP_CHILD") != "" {
		u, err := LookupUser("kiln-build")
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckSubordinateIDs(context.Background(), u); err != nil {
			t.Fatal(err)
		}
		return
	}
	subUser(t)
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		t.Skip("no setpriv")
	}
	cmd := exec.Command(setpriv, "--no-new-privs", os.Args[0], "-test.run=^TestCheckSubordinateIDsNamesNoNewPrivileges$", "-test.count=1")
	cmd.Env = append(os.Environ(), "KILN_TEST_NNP_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "NoNewPrivileges=yes") || !strings.Contains(string(out), "sbuild.conf") {
		t.Fatalf("with no_new_privs: %v\n%s", err, out)
	}
}
