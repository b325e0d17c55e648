package roles_test

import (
	"context"
	"testing"
)

// The retry path of kiln.task_finish (schema/0024_failure_stage.sql)
// replayed by hostile builders: a failure stage that is the farm's fault
// puts a task back to pending, so it must not become a way to reset tasks
// the caller does not hold, to lie about stages, or to retry forever.

// failStage finishes an attempt as failed at stage through the task
// protocol, as role, and reports whether it was accepted and whether the
// task was retried.
func (f *attackFarm) failStage(role, builder string, task, attempt int64, stage string) (finished, retried bool) {
	f.t.Helper()
	if err := f.conn(role).QueryRow(context.Background(), `SELECT finished, retry_after_seconds IS NOT NULL
		FROM kiln.task_finish($1, $2, $3, 'failed', 'it broke', NULL, false, '{}', '{}', '{}', '{}', $4)`,
		builder, task, attempt, stage).Scan(&finished, &retried); err != nil {
		f.t.Fatalf("task_finish as %s: %v", role, err)
	}
	return finished, retried
}

// taskState is what the attacks must not change.
func (f *attackFarm) taskState(task int64) (status string, attempt, retries int64, builder string) {
	f.t.Helper()
	if err := f.conn("postgres").QueryRow(context.Background(), `SELECT status, attempt, infra_retries, coalesce(builder, '')
		FROM kiln.task WHERE id = $1`, task).Scan(&status, &attempt, &retries, &builder); err != nil {
		f.t.Fatal(err)
	}
	return
}

func TestAttackRetryPathCannotResetTasksNotHeld(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	if n := f.take(f.b1, "one", f.t1); n != 1 {
		t.Fatalf("take: attempt %d", n)
	}
	// b2 claims an infrastructure failure of b1's building attempt, in its
	// own builder's name and in b1's.
	if done, _ := f.failStage(f.b2, "two", f.t1, 1, "prepare-environment"); done {
		t.Error("b2 failed b1's attempt through the retry path")
	}
	f.refused(f.b2, "is not one of the builders", `SELECT kiln.task_finish('one', $1, 1, 'failed', 'x', NULL, false,
		'{}', '{}', '{}', '{}', 'prepare-environment')`, f.t1)
	// Nor may it reset a pending task nobody holds, at any attempt number.
	for _, attempt := range []int64{0, 1, 2} {
		if done, _ := f.failStage(f.b2, "two", f.t2, attempt, "upload"); done {
			t.Errorf("b2 finished pending task %d attempt %d", f.t2, attempt)
		}
	}
	if s, a, r, b := f.taskState(f.t1); s != "building" || a != 1 || r != 0 || b != "one" {
		t.Fatalf("t1 after the attacks: %s attempt %d, %d retries, builder %q; want building 1 by one", s, a, r, b)
	}
	if s, a, r, _ := f.taskState(f.t2); s != "pending" || a != 0 || r != 0 {
		t.Fatalf("t2 after the attacks: %s attempt %d, %d retries", s, a, r)
	}
	// The retry bookkeeping is not writable directly.
	f.refused(f.b1, "permission denied", `UPDATE kiln.task SET infra_retries = 0, avoid_builder = NULL WHERE id = $1`, f.t1)
	f.refused(f.b1, "permission denied", `UPDATE kiln.attempt SET retried = true, failure_stage = 'upload' WHERE task_id = $1`, f.t1)
	f.refused(f.b1, "permission denied", `UPDATE kiln.platform SET max_infra_retries = 100`)
	f.refused(f.b1, "permission denied", `INSERT INTO kiln.failure_stage VALUES ('anything', true, 'x')`)
	// Stages are the fixed vocabulary, and only failures have one.
	f.refusedCode(f.b1, "22023", `SELECT kiln.task_finish('one', $1, 1, 'failed', 'x', NULL, false, '{}', '{}', '{}', '{}', 'cosmic-rays')`, f.t1)
	f.refusedCode(f.b1, "22023", `SELECT kiln.task_finish('one', $1, 1, 'succeeded', NULL, NULL, false, '{}', '{}', '{}', '{}', 'upload')`, f.t1)
	f.refusedCode(f.b1, "22023", `SELECT kiln.task_finish('one', $1, 1, 'timed_out', 'x', NULL, false, '{}', '{}', '{}', '{}', 'build')`, f.t1)
}

// The holder itself may claim the farm's fault, but only as often as the
// platform allows: past max_infra_retries the task ends failed.
func TestAttackRetryPathIsBounded(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	f.exec("postgres", `UPDATE kiln.platform SET max_infra_retries = 2, infra_retry_backoff = '0 seconds' WHERE name = 'p1'`)
	// b2 goes offline, so that b1 is the only builder and takes its own
	// retries again.
	f.exec("postgres", `UPDATE kiln.builder SET state = 'offline' WHERE name = 'two'`)
	for attempt := int64(1); attempt <= 3; attempt++ {
		if n := f.take(f.b1, "one", f.t1); n != attempt {
			t.Fatalf("take %d: attempt %d", attempt, n)
		}
		done, retried := f.failStage(f.b1, "one", f.t1, attempt, "install-build-deps")
		if !done || retried != (attempt < 3) {
			t.Fatalf("attempt %d: finished %v retried %v", attempt, done, retried)
		}
	}
	if s, a, r, _ := f.taskState(f.t1); s != "failed" || a != 3 || r != 2 {
		t.Fatalf("after three infrastructure failures: %s attempt %d, %d retries; want failed 3, 2", s, a, r)
	}
	if n := f.take(f.b1, "one", f.t1); n != 0 {
		t.Fatalf("the failed task was taken again: attempt %d", n)
	}
}
