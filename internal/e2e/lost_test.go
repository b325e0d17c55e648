package e2e

import (
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/proctest"
)

// A builder killed with SIGKILL in the middle of a build: the janitor takes
// the task back, another builder builds it, exactly one success is
// recorded, and the lost attempt stays in the history.
func TestKilledBuilderTaskBuiltElsewhere(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.startJanitor(t, f.role(t, "kiln_janitor"))
	a := f.startBuilder(t, "ka", f.role(t, "kiln_builder"))
	marker := proctest.SleepMarker()
	_, task := f.submit(t, hangingFirstAttempt(t, "kiln-killed", marker))
	f.waitBuilding(t, task, 1, "ka", "SLEEPING-NOW")
	// The second builder starts only now, so the first took the task.
	b := f.startBuilder(t, "kb", f.role(t, "kiln_builder"))
	b.waitLog(t, "builder ready")

	a.kill(t)
	// bubblewrap dies with its parent and takes the build with it.
	proctest.NoLeftovers(t, "sleep "+marker)

	got := f.waitTask(t, task, "succeeded", "failed", "timed_out", "lost")
	if got.Status != "succeeded" || got.Attempt != 2 || got.LostCount != 1 {
		t.Fatalf("task %+v; want succeeded on attempt 2, lost once", got)
	}
	want := []attemptRow{{1, "ka", "lost"}, {2, "kb", "succeeded"}}
	if h := f.attempts(t, task); !reflect.DeepEqual(h, want) {
		t.Fatalf("attempts %+v, want %+v", h, want)
	}
	if n := f.count(t, `SELECT count(*) FROM kiln.event WHERE kind = 'janitor.requeue' AND task_id = $1 AND attempt = 1`, task); n != 1 {
		t.Fatalf("%d janitor.requeue events for attempt 1, want 1", n)
	}
	if n := f.count(t, `SELECT count(*) FROM kiln.event WHERE kind = 'attempt.status' AND task_id = $1 AND new_status = 'succeeded'`, task); n != 1 {
		t.Fatalf("%d attempt successes recorded, want 1", n)
	}
	// Results belong to the successful attempt only.
	if n := f.count(t, `SELECT count(*) FROM kiln.artifact WHERE task_id = $1 AND attempt = 1`, task); n != 0 {
		t.Fatalf("%d artifacts of the lost attempt", n)
	}
	if n := f.count(t, `SELECT count(*) FROM kiln.artifact WHERE task_id = $1 AND attempt = 2 AND kind = 'package'`, task); n != 1 {
		t.Fatalf("%d packages of attempt 2, want 1", n)
	}
	if n := f.count(t, `SELECT count(*) FROM kiln.builder WHERE name = 'ka' AND state = 'offline'`); n != 1 {
		t.Fatal("the killed builder is not marked offline")
	}
}

// A builder paused with SIGSTOP past the horizon and then continued: the
// task was built again meanwhile; the old builder's writes are refused, it
// kills its build (no process of it remains) and abandons the attempt, the
// new attempt's result stands, and the old builder goes on working.
func TestStoppedBuilderAbandonsItsBuild(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.startJanitor(t, f.role(t, "kiln_janitor"))
	a := f.startBuilder(t, "sa", f.role(t, "kiln_builder"))
	marker := proctest.SleepMarker()
	_, task := f.submit(t, hangingFirstAttempt(t, "kiln-paused", marker))
	f.waitBuilding(t, task, 1, "sa", "SLEEPING-NOW")

	a.signal(t, syscall.SIGSTOP)
	b := f.startBuilder(t, "sb", f.role(t, "kiln_builder"))
	if got := f.waitTask(t, task, "succeeded", "failed", "timed_out", "lost"); got.Status != "succeeded" || got.Attempt != 2 {
		t.Fatalf("task %+v; want succeeded on attempt 2", got)
	}
	// The paused builder's build still runs: only the daemon was stopped.
	if !proctest.Running("sleep " + marker) {
		t.Fatal("the first attempt's build is not running while its builder is paused")
	}
	logChunks := f.count(t, `SELECT count(*) FROM kiln.log_chunk WHERE task_id = $1 AND attempt = 1`, task)

	a.signal(t, syscall.SIGCONT)
	a.waitLog(t, "attempt abandoned")
	proctest.NoLeftovers(t, "sleep "+marker)

	checkLateWritesRefused(t, f, task, logChunks, "sa", "sb")

	// The old builder goes on working: with the other one gone, it builds
	// the next task.
	b.stop(t)
	_, next := f.submit(t, quick(t, "kiln-after-pause"))
	if got := f.waitTask(t, next, "succeeded", "failed", "timed_out"); got.Status != "succeeded" {
		t.Fatalf("next task %+v", got)
	}
	if h := f.attempts(t, next); len(h) != 1 || h[0].Builder != "sa" {
		t.Fatalf("next task's attempts %+v; want one by sa", h)
	}
}

// A builder paused while its build ends, and continued after the task was
// built elsewhere: its late finish is refused and nothing of it is stored.
func TestStoppedBuilderLateFinishRefused(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.startJanitor(t, f.role(t, "kiln_janitor"))
	a := f.startBuilder(t, "la", f.role(t, "kiln_builder"))
	// Attempt 1 sleeps briefly and succeeds while its builder is paused.
	srpm := quickAfterFirst(t, "kiln-late")
	_, task := f.submit(t, srpm)
	f.waitBuilding(t, task, 1, "la", "SLEEPING-NOW")

	a.signal(t, syscall.SIGSTOP)
	f.startBuilder(t, "lb", f.role(t, "kiln_builder"))
	if got := f.waitTask(t, task, "succeeded", "failed", "timed_out", "lost"); got.Status != "succeeded" || got.Attempt != 2 {
		t.Fatalf("task %+v; want succeeded on attempt 2", got)
	}
	logChunks := f.count(t, `SELECT count(*) FROM kiln.log_chunk WHERE task_id = $1 AND attempt = 1`, task)

	a.signal(t, syscall.SIGCONT)
	// On waking, its build is over and it would write the end of the log,
	// the artifacts and the final status. Whichever write comes first is
	// refused (in practice the heartbeat, else the log's last lines, else
	// the finish) and the attempt is given up without storing anything.
	waitFor(t, "the paused builder to give up its attempt", func() bool {
		out := a.output()
		return strings.Contains(out, "attempt abandoned") || strings.Contains(out, "finish refused")
	})
	checkLateWritesRefused(t, f, task, logChunks, "la", "lb")
}

// quickAfterFirst makes an SRPM whose first attempt sleeps 3 seconds before
// it succeeds, and whose later attempts build at once.
func quickAfterFirst(t testing.TB, name string) string {
	t.Helper()
	return hangingFirstAttempt(t, name, "3")
}

// checkLateWritesRefused checks that attempt 1 of task (by old) stayed lost
// with no artifacts and no log beyond logChunks, and that attempt 2 (by
// current) is the one success.
func checkLateWritesRefused(t *testing.T, f *farm, task int64, logChunks int, old, current string) {
	t.Helper()
	want := []attemptRow{{1, old, "lost"}, {2, current, "succeeded"}}
	if h := f.attempts(t, task); !reflect.DeepEqual(h, want) {
		t.Fatalf("attempts %+v, want %+v", h, want)
	}
	if got := f.task(t, task); got.Status != "succeeded" || got.Attempt != 2 {
		t.Fatalf("task %+v after the old builder woke", got)
	}
	if n := f.count(t, `SELECT count(*) FROM kiln.artifact WHERE task_id = $1 AND attempt = 1`, task); n != 0 {
		t.Fatalf("%d artifacts of the lost attempt were stored", n)
	}
	if n := f.count(t, `SELECT count(*) FROM kiln.log_chunk WHERE task_id = $1 AND attempt = 1`, task); n != logChunks {
		t.Fatalf("the lost attempt's log grew from %d to %d chunks after it was lost", logChunks, n)
	}
	if n := f.count(t, `SELECT count(*) FROM kiln.event WHERE kind = 'attempt.status' AND task_id = $1 AND new_status = 'succeeded'`, task); n != 1 {
		t.Fatalf("%d attempt successes recorded, want 1", n)
	}
}
