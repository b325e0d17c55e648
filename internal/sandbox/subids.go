package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// sbuild's and mmdebstrap's unshare modes make a user namespace with the
// account's subordinate uids and gids mapped, through newuidmap and
// newgidmap, which are setuid root. The files of such a build belong to
// those ids. unshare --map-auto --map-root-user (util-linux 2.38) maps the
// account to root and 65,535 of the range, one id fewer than sbuild maps:
// a file of the range's last id is out of RemoveMapped's reach.

// CheckSubordinateIDs checks that u (the builder itself when nil) can make
// such a namespace, so that a host where it cannot is refused when the
// builder starts rather than failing every build: no ranges in
// /etc/subuid or /etc/subgid, no uidmap package, or a process with
// no_new_privs set (systemd's NoNewPrivileges=yes), which keeps the setuid
// helpers from working.
func CheckSubordinateIDs(ctx context.Context, u *User) error {
	out, err := u.mapped(ctx, "true").CombinedOutput()
	if err == nil {
		return nil
	}
	why := strings.TrimSpace(string(out))
	if why == "" {
		why = err.Error()
	}
	if noNewPrivs() {
		return fmt.Errorf("sbuild and mmdebstrap cannot map the subordinate ids of %s (%s): this process has no_new_privs set "+
			"(systemd's NoNewPrivileges=yes), which stops newuidmap and newgidmap, setuid root, from writing the maps; "+
			"sbuild hosts need NoNewPrivileges=no (docs/systemd/kiln-builder@.service.d/sbuild.conf)", u.name(), why)
	}
	return fmt.Errorf("sbuild and mmdebstrap cannot map the subordinate ids of %s (%s): give it ranges in /etc/subuid and "+
		"/etc/subgid and install uidmap (docs/environments.md)", u.name(), why)
}

// RemoveMapped removes dir and everything beneath it from inside such a
// namespace of u (the builder itself when nil): what an sbuild build killed
// part way leaves, whose files belong to subordinate ids that u cannot
// remove from outside. rm does not follow symbolic links nor leave dir's
// file system, and has only the powers of u and its subordinate ids, which
// the build had too.
func RemoveMapped(ctx context.Context, u *User, dir string) error {
	if out, err := u.mapped(ctx, "rm", "-rf", "--one-file-system", "--", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("removing %s with %s's subordinate ids mapped: %w: %s", dir, u.name(), err, bytes.TrimSpace(out))
	}
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("removing %s with %s's subordinate ids mapped: it is still there", dir, u.name())
	}
	return nil
}

// mapped is the command that runs args as root of a user namespace of u's
// (or the builder's) subordinate ids.
func (u *User) mapped(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"--map-auto", "--map-root-user", "--"}, args...)...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	if u != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID}}
	}
	return cmd
}

// name names u for messages.
func (u *User) name() string {
	if u == nil {
		return fmt.Sprintf("the builder's user (uid %d)", os.Geteuid())
	}
	return u.Name
}

// noNewPrivs says whether this process has no_new_privs set.
func noNewPrivs() bool {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "NoNewPrivs:"); ok {
			return strings.TrimSpace(v) == "1"
		}
	}
	return false
}
