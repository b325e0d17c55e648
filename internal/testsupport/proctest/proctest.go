// Package proctest finds a test's processes in /proc, so that tests of
// builds that are killed (timeout, cancel, shutdown, a lost builder) can
// check that nothing the build started survives.
//
// A test starts its build's processes with a marker in their command line,
// usually `sleep MARKER` with a SleepMarker, and looks for that marker.
package proctest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// SleepMarker returns an argument for sleep that no other process uses:
// an hour and a random fraction of a second, such as "3600.042817".
func SleepMarker() string { return fmt.Sprintf("3600.%06d", rand.IntN(1_000_000)) }

// Find returns the PIDs of the processes whose command line (arguments
// joined by spaces) contains marker.
func Find(marker string) []int {
	return scan("cmdline", func(b []byte) bool {
		return strings.Contains(string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})), marker)
	})
}

// Running reports whether a process whose command line contains marker runs.
func Running(marker string) bool { return len(Find(marker)) > 0 }

// InDir returns the PIDs of the processes whose working directory is dir.
func InDir(dir string) []int {
	var pids []int
	for _, pid := range all() {
		if cwd, err := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "cwd")); err == nil && cwd == dir {
			pids = append(pids, pid)
		}
	}
	return pids
}

// NoLeftovers fails the test when processes whose command line contains
// marker remain after a few seconds, the time the kernel may take to reap
// killed ones.
func NoLeftovers(t testing.TB, marker string) {
	t.Helper()
	var left []int
	for range 100 {
		if left = Find(marker); len(left) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("processes of the build survived (%q): PIDs %v", marker, left)
}

// scan returns the PIDs whose /proc/PID/file content satisfies match.
func scan(file string, match func([]byte) bool) []int {
	var pids []int
	for _, pid := range all() {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), file))
		if err == nil && match(b) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// all returns the PIDs of the processes that run now.
func all() []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil && e.IsDir() {
			pids = append(pids, pid)
		}
	}
	return pids
}
