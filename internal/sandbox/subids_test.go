package sandbox

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
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
	// The tree is made as sbuild makes it, with the whole range mapped (by
	// the test itself, not by the code under test): a directory of the
	// range's last id (inner 65536) is in it too.
	uids, err := subordinateRange("/etc/subuid", u.Name)
	if err != nil {
		t.Fatal(err)
	}
	gids, err := subordinateRange("/etc/subgid", u.Name)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := asUser(t, u, work, `unshare --map-root-user --map-users=`+uids.start+`,1,`+uids.count+
		` --map-groups=`+gids.start+`,1,`+gids.count+` sh -ec '
		mkdir -p task/chroot/var/cache/apt/partial task/chroot/build
		echo x > task/chroot/build/f; echo y > task/chroot/var/cache/apt/partial/g
		mkdir task/chroot/last; touch task/chroot/last/l; chmod 700 task/chroot/last
		ln -s `+outside+` task/chroot/build/link
		chown -R 100:100 task/chroot/build; chown -R 42:0 task/chroot/var/cache/apt
		chown -R `+uids.count+`:`+gids.count+` task/chroot/last
		chmod 700 task/chroot/var/cache/apt/partial; chmod 500 task/chroot/build'`); err != nil {
		t.Fatalf("making the tree: %v\n%s", err, out)
	}
	tree := filepath.Join(work, "task")
	if fi, err := os.Lstat(filepath.Join(tree, "chroot", "last")); err != nil {
		t.Fatal(err)
	} else if st := fi.Sys().(*syscall.Stat_t); uint64(st.Uid)+1 != mustAdd(t, uids) {
		t.Fatalf("the last directory belongs to %d, not the range's last id (range %v)", st.Uid, uids)
	}
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

// mustAdd is the id after range r.
func mustAdd(t *testing.T, r idRange) uint64 {
	t.Helper()
	start, err1 := strconv.ParseUint(r.start, 10, 32)
	count, err2 := strconv.ParseUint(r.count, 10, 32)
	if err1 != nil || err2 != nil {
		t.Fatalf("range %v", r)
	}
	return start + count
}

// The range mapped is the account's first, found by name only, as sbuild
// and mmdebstrap take it (a line keyed by uid is not theirs); a file
// without one, or with a broken one, is refused with the file named.
func TestSubordinateRangeIsTheFirstOfTheAccount(t *testing.T) {
	file := filepath.Join(t.TempDir(), "subuid")
	if err := os.WriteFile(file, []byte("other:200000:65536\n999:500000:65536\nkiln-build:100000:65536\nkiln-build:300000:10\n1234:400000:5\nbad:x:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		want idRange
		err  string
	}{
		{"kiln-build", idRange{"100000", "65536"}, ""},
		{"1234", idRange{"400000", "5"}, ""}, // an account named so
		{"someone", idRange{}, "has no range for someone"},
		{"bad", idRange{}, "unusable range"},
		{"", idRange{}, "has no name"},
	} {
		got, err := subordinateRange(file, c.name)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || !strings.Contains(err.Error(), file) {
				t.Errorf("%q: %v, want an error naming %s with %q", c.name, err, file, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%q: %v %v, want %v", c.name, got, err, c.want)
		}
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
