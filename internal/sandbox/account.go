package sandbox

import (
	"fmt"
	"os"
	"os/user"
	"strconv"
)

// User is the unprivileged account that backends isolating builds
// themselves (sbuild, and mmdebstrap making environments, both in unshare
// mode) run as when kiln-builder runs as root: their user namespaces are
// made from the account's subordinate ids (/etc/subuid, /etc/subgid), which
// only a real account has. A rootless builder runs them as itself.
type User struct {
	Name     string
	UID, GID uint32
}

// LookupUser finds that account. It returns nil when the builder does not
// run as root. As root the account must exist and must not be root.
func LookupUser(name string) (*User, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("the builder runs as root and needs the account %q for sbuild and mmdebstrap (create it with subordinate ids: .ci/setup-debian shows how): %w", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil || uid == 0 {
		return nil, fmt.Errorf("account %s: unusable uid %s/gid %s", name, u.Uid, u.Gid)
	}
	return &User{Name: name, UID: uint32(uid), GID: uint32(gid)}, nil
}

// Chown gives dir itself, not what is in it, to u (nothing to do when u is
// nil). It is for a directory the builder has just made, before anything
// else could write into it; it never follows a symbolic link.
func (u *User) Chown(dir string) error {
	if u == nil {
		return nil
	}
	return os.Lchown(dir, int(u.UID), int(u.GID))
}
