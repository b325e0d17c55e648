package sandbox

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"syscall"
)

// sbuild's and mmdebstrap's unshare modes make a user namespace with the
// first range of the account's subordinate uids and gids mapped (from
// inner root on), through newuidmap and newgidmap, which are setuid root.
// The files of such a build belong to those ids. kiln's own namespace maps
// the account to root and the same whole ranges after it, read from
// /etc/subuid and /etc/subgid and given to unshare explicitly: util-linux
// 2.38's --map-auto maps one id fewer than the range, which would leave a
// file of the range's last id out of RemoveMapped's reach.

// CheckSubordinateIDs checks that u (the builder itself when nil) can make
// such a namespace, so that a host where it cannot is refused when the
// builder starts rather than failing every build: no ranges in
// /etc/subuid or /etc/subgid, no uidmap package, or a process with
// no_new_privs set (systemd's NoNewPrivileges=yes), which keeps the setuid
// helpers from working.
func CheckSubordinateIDs(ctx context.Context, u *User) error {
	cmd, err := u.mapped(ctx, "true")
	if err != nil {
		return fmt.Errorf("sbuild and mmdebstrap cannot map the subordinate ids of %s: %w: give it ranges in /etc/subuid and "+
			"/etc/subgid (docs/environments.md)", u.name(), err)
	}
	out, err := cmd.CombinedOutput()
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
	cmd, err := u.mapped(ctx, "rm", "-rf", "--one-file-system", "--", dir)
	if err != nil {
		return fmt.Errorf("removing %s with %s's subordinate ids mapped: %w", dir, u.name(), err)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("removing %s with %s's subordinate ids mapped: %w: %s", dir, u.name(), err, bytes.TrimSpace(out))
	}
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("removing %s with %s's subordinate ids mapped: it is still there", dir, u.name())
	}
	return nil
}

// mapped is the command that runs args as root of a user namespace of u's
// (or the builder's) subordinate ids, mapped as sbuild and mmdebstrap map
// them.
func (u *User) mapped(ctx context.Context, args ...string) (*exec.Cmd, error) {
	name := u.account()
	uids, err := subordinateRange("/etc/subuid", name)
	if err != nil {
		return nil, err
	}
	gids, err := subordinateRange("/etc/subgid", name)
	if err != nil {
		return nil, err
	}
	// util-linux 2.38 reads OUTER,INNER,COUNT; later versions still do.
	cmd := exec.CommandContext(ctx, "unshare", append([]string{"--map-root-user",
		"--map-users=" + uids.start + ",1," + uids.count, "--map-groups=" + gids.start + ",1," + gids.count, "--"}, args...)...)
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	if u != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u.UID, Gid: u.GID}}
	}
	return cmd, nil
}

// idRange is a range of subordinate ids, as decimal text.
type idRange struct{ start, count string }

// subordinateRange is the first range file (/etc/subuid or /etc/subgid)
// gives the account name, the one sbuild and mmdebstrap map: they look
// ranges up by name only, so a line keyed by uid is not theirs either.
func subordinateRange(file, name string) (idRange, error) {
	if name == "" {
		return idRange{}, fmt.Errorf("the account has no name to look up in %s (sbuild and mmdebstrap look ranges up by name)", file)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return idRange{}, fmt.Errorf("reading %s: %w", file, err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(strings.TrimSpace(line), ":")
		if len(f) != 3 || f[0] != name {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count > 1<<32-1 {
			return idRange{}, fmt.Errorf("%s: unusable range %q for %s", file, line, name)
		}
		return idRange{f[1], f[2]}, nil
	}
	return idRange{}, fmt.Errorf("%s has no range for %s", file, name)
}

// account is the name of u, or of the builder's own user ("" when it has
// none).
func (u *User) account() string {
	if u != nil {
		return u.Name
	}
	if me, err := user.LookupId(strconv.Itoa(os.Geteuid())); err == nil {
		return me.Username
	}
	return ""
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
