// Package sandbox runs build commands isolated from the builder: under
// bubblewrap with no network, a read-only root file system, one writable
// work directory and the builder's credentials out of sight, as an
// unprivileged user when the builder runs as root, and always in a process
// group of their own so that a timeout, a cancel or a shutdown kills every
// process the build started.
package sandbox

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
	"time"
)

// Command is one command of a build.
type Command struct {
	// Dir is the working directory; it must lie inside the writable work
	// directory when the command runs sandboxed.
	Dir string
	// Args is the program and its arguments.
	Args []string
	// Env is added to the sandbox's base environment (PATH, HOME, LANG,
	// TMPDIR); later entries win.
	Env []string
	// Output receives standard output and standard error.
	Output io.Writer
}

// Runner runs commands of a build.
type Runner interface {
	Run(ctx context.Context, c Command) error
}

// User is the unprivileged account builds run as.
type User struct {
	Name     string
	UID, GID uint32
}

// LookupUser finds the account to build as. It returns nil when the builder
// does not run as root: builds then run as the builder's own user (bubblewrap
// still keeps them away from what it hides). As root, name is used when it
// exists and nobody otherwise.
func LookupUser(name string) (*User, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	for _, n := range []string{name, "nobody"} {
		if n == "" {
			continue
		}
		u, err := user.Lookup(n)
		if err != nil {
			continue
		}
		uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
		gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
		if err1 != nil || err2 != nil || uid == 0 {
			return nil, fmt.Errorf("build user %s: unusable uid %s/gid %s", n, u.Uid, u.Gid)
		}
		return &User{Name: n, UID: uint32(uid), GID: uint32(gid)}, nil
	}
	return nil, fmt.Errorf("the builder runs as root but neither build user %q nor nobody exists (create it: useradd --system --no-create-home %s)", name, name)
}

// Chown gives the tree at dir to u (nothing to do when u is nil).
func (u *User) Chown(dir string) error {
	if u == nil {
		return nil
	}
	return walkChown(dir, int(u.UID), int(u.GID))
}

func walkChown(path string, uid, gid int) error {
	if err := os.Lchown(path, uid, gid); err != nil {
		return err
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return nil
	}
	entries, err := os.ReadDir(path)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := walkChown(path+"/"+e.Name(), uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// Sandbox runs commands under bubblewrap.
type Sandbox struct {
	// Bwrap is the bubblewrap program ("bwrap" on PATH when empty).
	Bwrap string
	// Writable is the only directory the build may write to (besides a
	// private /tmp); it is bound at the same path inside.
	Writable string
	// Hide lists paths the build must not see: a directory is covered by an
	// empty tmpfs, a file by /dev/null. Paths that do not exist are skipped.
	// Hide the builder's keytab, its configuration and its work directory
	// root (other builds); Writable is bound after, so it stays visible.
	Hide []string
	// User runs the build as this account; nil keeps the builder's user.
	User *User
}

// Args returns the bubblewrap command line that runs c.
func (s *Sandbox) Args(c Command) []string {
	bwrap := s.Bwrap
	if bwrap == "" {
		bwrap = "bwrap"
	}
	args := []string{bwrap,
		"--ro-bind", "/", "/",
		"--dev", "/dev",
		"--proc", "/proc",
		"--tmpfs", "/tmp",
		"--tmpfs", "/run",
		"--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
		"--hostname", "kiln-build",
		"--die-with-parent",
	}
	for _, h := range s.Hide {
		fi, err := os.Stat(h)
		switch {
		case err != nil:
			continue
		case fi.IsDir():
			args = append(args, "--tmpfs", h)
		default:
			args = append(args, "--ro-bind", "/dev/null", h)
		}
	}
	args = append(args, "--bind", s.Writable, s.Writable, "--chdir", c.Dir, "--")
	return append(args, c.Args...)
}

// Run runs c under bubblewrap and waits for it. When ctx ends first, the
// whole process group is killed; so is whatever the command left running
// when it exits.
func (s *Sandbox) Run(ctx context.Context, c Command) error {
	env := append(baseEnv(s.Writable, s.User), c.Env...)
	return run(ctx, s.Args(c), c.Dir, env, c.Output, s.User)
}

// Plain runs commands without bubblewrap, in their own process group. It is
// for backends that isolate builds themselves (mock).
type Plain struct {
	// Home is HOME for the commands.
	Home string
	// User runs the commands as this account; nil keeps the builder's user.
	User *User
}

// Run runs c and waits for it, killing its process group when ctx ends
// and when it exits.
func (p *Plain) Run(ctx context.Context, c Command) error {
	env := append(baseEnv(p.Home, p.User), c.Env...)
	return run(ctx, c.Args, c.Dir, env, c.Output, p.User)
}

func baseEnv(home string, u *User) []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + home,
		"LANG=C.UTF-8",
		"TMPDIR=/tmp",
	}
	if u != nil {
		env = append(env, "USER="+u.Name, "LOGNAME="+u.Name)
	}
	return env
}

// ErrKilled is the error of a command killed because its context ended.
var ErrKilled = errors.New("killed")

func run(ctx context.Context, args []string, dir string, env []string, out io.Writer, u *User) error {
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
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if u != nil {
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: []uint32{}}
	}
	// Output pipes stay open while any process holds them; after the
	// command exits and its group is killed, stop reading soon.
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", args[0], err)
	}
	pgid := cmd.Process.Pid
	done := make(chan struct{})
	watcher := make(chan struct{})
	killed := false
	go func() {
		defer close(watcher)
		select {
		case <-ctx.Done():
			killed = true
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
		case <-done:
		}
	}()
	err := cmd.Wait()
	close(done)
	<-watcher
	// Whatever the command left behind in its group goes with it.
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	if killed {
		return fmt.Errorf("%s: %w (%w)", args[0], ErrKilled, context.Cause(ctx))
	}
	if err != nil {
		return fmt.Errorf("%s: %w", args[0], err)
	}
	return nil
}
