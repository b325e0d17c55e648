// Package sandbox runs build commands isolated from the builder and from
// each other: under bubblewrap in a user namespace of their own (uid 0
// inside, mapped to one unprivileged host uid), with no network, their own
// /proc, /dev and PID namespace, only the system directories they need
// (read-only) and their own work directory (writable, with a private /tmp
// inside it), within limits on processes, memory and disk, and always in a
// process group of their own so that a timeout, a cancel, a shutdown or a
// limit kills every process the build started.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Command is one command of a build.
type Command struct {
	// Dir is the working directory; it must lie inside the work directory
	// when the command runs sandboxed.
	Dir string
	// Args is the program and its arguments.
	Args []string
	// Env is added to the sandbox's base environment (PATH, HOME, LANG,
	// TMPDIR); later entries win.
	Env []string
	// Output receives standard output and standard error.
	Output io.Writer
	// Unprivileged runs the command as BuildUID in its user namespace
	// rather than as root (both are the same host uid): for tools that
	// chown files to their recorded owners when they run as root, which
	// fails for owners the namespace does not map (rpm installing an SRPM
	// whose files belong to mockbuild).
	Unprivileged bool
}

// BuildUID is the uid (and gid) inside the build's user namespace of a
// command run Unprivileged.
const BuildUID = 1000

// Runner runs commands of a build.
type Runner interface {
	Run(ctx context.Context, c Command) error
}

// SystemPaths are the host paths a build sees, read-only: the programs,
// libraries and configuration it builds with, and the package databases
// that dpkg-checkbuilddeps and rpmbuild check build dependencies against.
// Symbolic links among them (/bin -> usr/bin) are recreated as links.
// Nothing else of the host is there: no /home, /root, /srv, /run, /var
// (but the package databases), no other build's work directory.
var SystemPaths = []string{"/usr", "/etc", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
	"/var/lib/dpkg", "/var/lib/rpm"}

// DefaultHide are paths below SystemPaths that builds never see: secrets a
// host keeps in /etc.
var DefaultHide = []string{"/etc/krb5.keytab", "/etc/kiln", "/etc/shadow", "/etc/shadow-", "/etc/gshadow",
	"/etc/gshadow-", "/etc/ssh", "/etc/ssl/private", "/etc/sudoers", "/etc/sudoers.d"}

// Sandbox runs commands under bubblewrap.
type Sandbox struct {
	// Bwrap is the bubblewrap program ("bwrap" on PATH when empty).
	Bwrap string
	// Work is the build's work directory, the only place it may write,
	// bound at the same path inside; Work/tmp (made by the caller) is its
	// /tmp and /var/tmp, so what it writes there counts as work directory.
	Work string
	// ReadOnly are further directories bound read-only at their own path
	// (the local repository of packages built earlier in the task).
	ReadOnly []string
	// Hide lists paths below SystemPaths the build must not see, besides
	// DefaultHide: a directory is covered by an empty read-only tmpfs, a
	// file by /dev/null. Paths that do not exist are skipped.
	Hide []string
	// ID is the host uid and gid the build's user namespace maps to; it is
	// needed when the builder runs as root (builds never run as host root).
	// nil: the builder's own uid, for a builder that is not root.
	ID *ID
	// Limits bound what the build may use (no bound where zero).
	Limits Limits
}

// ID is a host uid and gid a build runs as (uid and gid 0 inside its user
// namespace).
type ID struct {
	UID, GID uint32
}

// Args returns the bubblewrap command line that runs c.
func (s *Sandbox) Args(c Command) []string {
	bwrap := s.Bwrap
	if bwrap == "" {
		bwrap = "bwrap"
	}
	// uid 0 inside, so fakeroot and dh_fixperms can chown to root; it is
	// the unprivileged host uid outside.
	uid := "0"
	if c.Unprivileged {
		uid = strconv.Itoa(BuildUID)
	}
	args := []string{bwrap,
		"--unshare-user", "--uid", uid, "--gid", uid, "--disable-userns",
		"--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
		"--hostname", "kiln-build", "--new-session", "--die-with-parent",
	}
	for _, p := range SystemPaths {
		fi, err := os.Lstat(p)
		switch {
		case err != nil:
			continue
		case fi.Mode()&os.ModeSymlink != 0:
			if target, err := os.Readlink(p); err == nil {
				args = append(args, "--symlink", target, p)
			}
		case fi.IsDir():
			args = append(args, "--ro-bind", p, p)
		}
	}
	args = append(args, "--dev", "/dev", "--proc", "/proc")
	for _, h := range append(append([]string{}, DefaultHide...), s.Hide...) {
		fi, err := os.Stat(h)
		switch {
		case err != nil || !visible(h):
			continue
		case fi.IsDir():
			args = append(args, "--tmpfs", h, "--remount-ro", h)
		default:
			args = append(args, "--ro-bind", "/dev/null", h)
		}
	}
	tmp := filepath.Join(s.Work, "tmp")
	args = append(args, "--bind", tmp, "/tmp", "--bind", tmp, "/var/tmp", "--bind", s.Work, s.Work)
	for _, d := range s.ReadOnly {
		args = append(args, "--ro-bind", d, d)
	}
	// The root itself (bubblewrap's tmpfs) is read-only: nothing but the
	// work directory takes writes.
	args = append(args, "--remount-ro", "/", "--chdir", c.Dir, "--")
	return append(append(args, s.Limits.prlimit()...), c.Args...)
}

// visible reports whether path lies below one of SystemPaths (only those
// need hiding).
func visible(path string) bool {
	for _, p := range SystemPaths {
		if path == p || len(path) > len(p) && path[:len(p)] == p && path[len(p)] == '/' {
			return true
		}
	}
	return false
}

// Run runs c under bubblewrap and waits for it, watching its limits. When
// ctx ends first, or a limit is passed, the whole process group is killed;
// so is whatever the command left running when it exits. A passed limit is
// returned as a *LimitError.
func (s *Sandbox) Run(ctx context.Context, c Command) error {
	user := "root"
	if c.Unprivileged {
		user = "build"
	}
	env := append(baseEnv(s.Work, user), c.Env...)
	var cred *syscall.Credential
	if s.ID != nil {
		cred = &syscall.Credential{Uid: s.ID.UID, Gid: s.ID.GID, Groups: []uint32{}}
	}
	return run(ctx, s.Args(c), c.Dir, env, c.Output, cred, &watch{limits: s.Limits, work: s.Work})
}

// Plain runs commands without bubblewrap, in their own process group, as
// the builder's own user. It is for backends that isolate builds
// themselves (mock, sbuild).
type Plain struct {
	// Home is HOME for the commands.
	Home string
	// User runs the commands as this account (see User); nil keeps the
	// builder's own user.
	User *User
	// Work and Limits, when Work is set, bound the command as a Sandbox's
	// are bound, but by measurement only (no rlimits: they would count
	// every process of the user, not the build's): its process tree's
	// processes and memory, Work's disk use (walked where the builder may
	// read) and its file system's free space.
	Work   string
	Limits Limits
}

// Run runs c and waits for it, killing its process group when ctx ends,
// when it passes a limit and when it exits.
func (p *Plain) Run(ctx context.Context, c Command) error {
	var w *watch
	if p.Work != "" {
		w = &watch{limits: p.Limits, work: p.Work}
	}
	if p.User == nil {
		return run(ctx, c.Args, c.Dir, append(baseEnv(p.Home, ""), c.Env...), c.Output, nil, w)
	}
	env := append(baseEnv(p.Home, p.User.Name), c.Env...)
	cred := &syscall.Credential{Uid: p.User.UID, Gid: p.User.GID, Groups: []uint32{}}
	return run(ctx, c.Args, c.Dir, env, c.Output, cred, w)
}

func baseEnv(home, user string) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home,
		"LANG=C.UTF-8",
		"TMPDIR=/tmp",
	}
	if user != "" {
		env = append(env, "USER="+user, "LOGNAME="+user)
	}
	return env
}

// ErrKilled is the error of a command killed because its context ended.
var ErrKilled = errors.New("killed")

func run(ctx context.Context, args []string, dir string, env []string, out io.Writer, cred *syscall.Credential, w *watch) error {
	if len(args) == 0 {
		return errors.New("no command to run")
	}
	if out == nil {
		out = io.Discard
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = out
	cmd.Stderr = out
	// A session of its own: a session leader cannot change its process group,
	// and no process of the build can join a group of another session, such
	// as the builder's or another build's, and so leave killBuild's reach.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Pdeathsig: syscall.SIGKILL, Credential: cred}
	// Output pipes stay open while any process holds them; after the
	// command exits and its group is killed, stop reading soon.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", args[0], err)
	}
	pgid := cmd.Process.Pid
	kill := func() { killBuild(pgid) }
	done := make(chan struct{})
	watcher := make(chan struct{})
	killed := false
	var limit *LimitError
	go func() {
		defer close(watcher)
		var tick <-chan time.Time
		if w.active() {
			t := time.NewTicker(watchInterval)
			defer t.Stop()
			tick = t.C
		}
		for {
			select {
			case <-ctx.Done():
				killed = true
				kill()
				return
			case <-done:
				return
			case <-tick:
				if limit = w.check(pgid); limit != nil {
					kill()
					return
				}
			}
		}
	}()
	err := cmd.Wait()
	close(done)
	<-watcher
	// Whatever the command left behind in its group goes with it.
	kill()
	if limit == nil && !killed && w.active() {
		// A writer stopped by RLIMIT_FSIZE, or a build that finished
		// past its disk limit, fails on the disk limit too.
		limit = w.checkDisk()
	}
	switch {
	case limit != nil:
		return fmt.Errorf("%s: %w", args[0], limit)
	case killed:
		return fmt.Errorf("%s: %w (%w)", args[0], ErrKilled, context.Cause(ctx))
	case err != nil:
		return fmt.Errorf("%s: %w", args[0], err)
	}
	return nil
}

// prlimit is the prlimit(1) command that sets the build's rlimits inside
// its user namespace, so that RLIMIT_NPROC counts this build's processes
// only (the kernel counts per user namespace and uid).
func (l Limits) prlimit() []string {
	if l.Processes <= 0 && l.Disk <= 0 {
		return nil
	}
	args := []string{"prlimit", "--core=0"}
	if l.Processes > 0 {
		n := strconv.Itoa(l.Processes)
		args = append(args, "--nproc="+n+":"+n)
	}
	if l.Disk > 0 {
		// One byte more than the limit, so that a single file that hits it
		// is measured as past the limit.
		n := strconv.FormatInt(l.Disk+1, 10)
		args = append(args, "--fsize="+n+":"+n)
	}
	return append(args, "--")
}
