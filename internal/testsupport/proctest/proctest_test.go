package proctest

import (
	"context"
	"os/exec"
	"slices"
	"testing"
	"time"
)

// A real sleep with a marker is found by its command line and its working
// directory, and is no leftover once killed.
func TestFindAndNoLeftovers(t *testing.T) {
	t.Parallel()
	marker := SleepMarker()
	if Running("sleep " + marker) {
		t.Fatalf("a process with marker %s runs before the test started one", marker)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, "sleep", marker)
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Until the child has exec'd sleep, its command line is still ours.
	for deadline := time.Now().Add(5 * time.Second); len(Find("sleep "+marker)) == 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if got := Find("sleep " + marker); !slices.Equal(got, []int{cmd.Process.Pid}) {
		t.Fatalf("Find = %v, want [%d]", got, cmd.Process.Pid)
	}
	if got := InDir(dir); !slices.Equal(got, []int{cmd.Process.Pid}) {
		t.Fatalf("InDir = %v, want [%d]", got, cmd.Process.Pid)
	}
	if got := Find("sleep " + SleepMarker() + "x"); len(got) != 0 {
		t.Fatalf("Find of another marker = %v", got)
	}
	cancel()
	_ = cmd.Wait()
	NoLeftovers(t, "sleep "+marker)
	if got := InDir(dir); len(got) != 0 {
		t.Fatalf("InDir after the kill = %v", got)
	}
}
