package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testsupport/proctest"
)

// workDir returns a work directory the build user can reach.
func workDir(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	for _, p := range []string{d, filepath.Dir(d)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

func newSandbox(t *testing.T) *Sandbox {
	t.Helper()
	u, err := LookupUser("kiln-build")
	if err != nil {
		t.Fatal(err)
	}
	w := workDir(t)
	if err := u.Chown(w); err != nil {
		t.Fatal(err)
	}
	return &Sandbox{Writable: w, User: u}
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
	if out, err := runScript(t, &Plain{Home: s.Writable, User: s.User}, s.Writable, script); err != nil || !strings.Contains(out, "connected") {
		t.Fatalf("outside the sandbox the connection should work: %v %s", err, out)
	}
	out, err := runScript(t, s, s.Writable, script)
	if err == nil || strings.Contains(out, "connected") {
		t.Fatalf("a sandboxed build reached the network: %v %s", err, out)
	}
}

func TestHidesAndReadOnly(t *testing.T) {
	t.Parallel()
	secretDir, err := os.MkdirTemp("/var/tmp", "kiln-sandbox-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(secretDir) })
	os.Chmod(secretDir, 0o755)
	keytab := filepath.Join(secretDir, "krb5.keytab")
	confDir := filepath.Join(secretDir, "conf")
	os.Mkdir(confDir, 0o755)
	// World-readable on purpose: only hiding keeps the build from them.
	os.WriteFile(keytab, []byte("SECRET-KEYTAB"), 0o644)
	os.WriteFile(filepath.Join(confDir, "builder.conf"), []byte("SECRET-CONF"), 0o644)

	s := newSandbox(t)
	script := fmt.Sprintf("cat %s %s/builder.conf", keytab, confDir)
	if out, _ := runScript(t, &Plain{Home: s.Writable, User: s.User}, s.Writable, script); !strings.Contains(out, "SECRET-KEYTAB") {
		t.Fatalf("outside the sandbox the files should be readable: %s", out)
	}
	s.Hide = []string{keytab, confDir}
	out, _ := runScript(t, s, s.Writable, script)
	if strings.Contains(out, "SECRET") {
		t.Fatalf("a sandboxed build read hidden files: %s", out)
	}

	out, err = runScript(t, s, s.Writable, fmt.Sprintf("touch %s/ok && touch %s/escape", s.Writable, secretDir))
	if err == nil {
		t.Fatalf("a sandboxed build wrote outside its work directory: %s", out)
	}
	if _, err := os.Stat(filepath.Join(s.Writable, "ok")); err != nil {
		t.Fatalf("the work directory is not writable: %v %s", err, out)
	}
	if _, err := os.Stat(filepath.Join(secretDir, "escape")); err == nil {
		t.Fatal("file created outside the work directory")
	}
}

func TestRunsUnprivileged(t *testing.T) {
	t.Parallel()
	if os.Geteuid() != 0 {
		t.Skip("the builder does not run as root here, so builds keep its user")
	}
	s := newSandbox(t)
	out, err := runScript(t, s, s.Writable, "id -u")
	if err != nil {
		t.Fatal(err, out)
	}
	if strings.TrimSpace(out) != fmt.Sprint(s.User.UID) || s.User.UID == 0 {
		t.Fatalf("build ran as uid %s, want %d", out, s.User.UID)
	}
}

func TestCancelKillsWholeGroup(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"bwrap", "plain"} {
		t.Run(name, func(t *testing.T) {
			s := newSandbox(t)
			var r Runner = s
			if name == "plain" {
				r = &Plain{Home: s.Writable, User: s.User}
			}
			marker := fmt.Sprintf("%d.%d", 5000+rand.IntN(1000), rand.IntN(1_000_000))
			// A child in the background, one that leaves the process group's
			// session, and a sleeping parent.
			script := fmt.Sprintf("sleep %s & setsid sleep %s & touch %s/started; sleep %s", marker, marker, s.Writable, marker)
			ctx, cancel := context.WithCancel(context.Background())
			errc := make(chan error, 1)
			go func() {
				errc <- r.Run(ctx, Command{Dir: s.Writable, Args: []string{"bash", "-c", script}})
			}()
			for range 600 {
				if _, err := os.Stat(filepath.Join(s.Writable, "started")); err == nil {
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
			survivors := 0
			if name == "plain" {
				survivors = 1
			}
			var left []int
			for range 100 {
				if left = proctest.Find("sleep " + marker); len(left) <= survivors {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if name == "bwrap" && len(left) > 0 {
				t.Fatalf("processes survived the kill: %v", left)
			}
			if name == "plain" {
				// Without a PID namespace, the process that left the group with
				// setsid survives (and only that one): this is why builds run
				// under bubblewrap.
				if len(left) > 1 {
					t.Errorf("more than the setsid child survived: %v", left)
				}
				for _, pid := range left {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		})
	}
}

func TestExitKillsBackgroundChildren(t *testing.T) {
	t.Parallel()
	s := newSandbox(t)
	marker := fmt.Sprintf("%d.%d", 6000+rand.IntN(1000), rand.IntN(1_000_000))
	out, err := runScript(t, s, s.Writable, fmt.Sprintf("sleep %s >/dev/null 2>&1 & echo left a child", marker))
	if err != nil {
		t.Fatal(err, out)
	}
	proctest.NoLeftovers(t, "sleep "+marker)
}
