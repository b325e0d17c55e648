package builder

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The real kiln-builder binary: it registers, tells systemd it is ready,
// feeds the watchdog, builds, and stops cleanly on SIGTERM.
func TestDaemonBinary(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "bench", "x86_64", "rpm", "noop", time.Hour, "")
	role, _ := f.builderPool(t, 1)
	dir := t.TempDir()
	bin := filepath.Join(dir, "kiln-builder")
	if out, err := exec.Command("go", "build", "-o", bin, "../../cmd/kiln-builder").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	sock := filepath.Join(dir, "notify")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var notes []string
	go func() {
		buf := make([]byte, 256)
		for {
			n, _, err := ln.ReadFromUnix(buf)
			if err != nil {
				return
			}
			mu.Lock()
			notes = append(notes, string(buf[:n]))
			mu.Unlock()
		}
	}()
	seen := func(note string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, n := range notes {
			if n == note {
				return true
			}
		}
		return false
	}

	cfg := testConfig(t, "bench")
	cmd := exec.Command(bin, "--db", f.db.URLAs(role), "--name", "daemon-test", "--platform", "bench",
		"--slots", "2", "--workdir", cfg.WorkDir, "--heartbeat", "500ms", "--grace", "1s")
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=1000000")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	src := filepath.Join(t.TempDir(), "x-1-1.src.rpm")
	os.WriteFile(src, []byte("anything: the noop backend reads nothing"), 0o644)
	_, task := f.submit(t, "bench", "retry", src)
	if st := f.waitStatus(t, task, "succeeded", "failed", "timed_out"); st != "succeeded" {
		t.Fatalf("task %s\n%s", st, stderr.String())
	}
	waitFor(t, "READY=1 and WATCHDOG=1", func() bool { return seen("READY=1") && seen("WATCHDOG=1") })
	var state string
	f.db.Pool.QueryRow(context.Background(), "SELECT state FROM kiln.builder WHERE name = 'daemon-test'").Scan(&state)
	if state != "online" {
		t.Fatalf("builder %s", state)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("kiln-builder after SIGTERM: %v\n%s", err, stderr.String())
	}
	waitFor(t, "STOPPING=1", func() bool { return seen("STOPPING=1") })
	f.db.Pool.QueryRow(context.Background(), "SELECT state FROM kiln.builder WHERE name = 'daemon-test'").Scan(&state)
	if state != "offline" {
		t.Fatalf("builder %s after SIGTERM", state)
	}
}
