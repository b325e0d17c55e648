package e2e

import (
	"context"
	"fmt"
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/proctest"
)

// A build that runs past its platform's timeout plus the grace, while its
// builder still heart-beats, is ended by the janitor; the builder then
// finds its attempt fenced off and kills the build.
//
// A kiln-builder enforces the timeout it read when it took the task. To get
// a builder that ignores the platform's timeout, the platform's timeout is
// cut from an hour to one second after the builder took the task: the
// builder keeps waiting for its hour, exactly like a builder whose own timer
// failed, while the janitor measures against the platform row.
func TestRunawayBuildEndedByJanitor(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.exec(t, `UPDATE kiln.platform SET timeout = interval '1 hour' WHERE name = $1`, platform)
	a := f.startBuilder(t, "ra", f.role(t, "kiln_builder"))
	marker := proctest.SleepMarker()
	_, task := f.submit(t, hangingFirstAttempt(t, "kiln-runaway", marker))
	f.waitBuilding(t, task, 1, "ra", "SLEEPING-NOW")

	f.exec(t, `UPDATE kiln.platform SET timeout = interval '1 second' WHERE name = $1`, platform)
	f.startJanitor(t, f.role(t, "kiln_janitor"))

	got := f.waitTask(t, task, "succeeded", "failed", "timed_out", "lost", "pending")
	if got.Status != "timed_out" || got.Attempt != 1 {
		t.Fatalf("task %+v; want timed_out on attempt 1", got)
	}
	if h := f.attempts(t, task); len(h) != 1 || h[0].Status != "timed_out" {
		t.Fatalf("attempts %+v; want attempt 1 timed_out", h)
	}
	if n := f.count(t, `SELECT count(*) FROM kiln.event WHERE kind = 'janitor.timeout' AND task_id = $1`, task); n != 1 {
		t.Fatalf("%d janitor.timeout events, want 1", n)
	}
	if n := f.count(t, `SELECT count(*) FROM kiln.task t JOIN river.river_job r ON r.id = t.river_job_id
		WHERE t.id = $1 AND r.state = 'cancelled'`, task); n != 1 {
		t.Fatal("the task's River job was not cancelled")
	}
	// The builder, still heart-beating, learns it and kills its build.
	a.waitLog(t, "attempt abandoned")
	proctest.NoLeftovers(t, "sleep "+marker)
	if n := f.count(t, `SELECT count(*) FROM kiln.artifact WHERE task_id = $1`, task); n != 0 {
		t.Fatalf("%d artifacts stored for a build the janitor ended", n)
	}
}

// Two kiln-janitor daemons at once, and two kiln-janitor --once runs
// started together (cron on two hosts): no lost task is taken back twice.
func TestTwoJanitorProcessesActOnce(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	p := f.db.Pool
	farmtest.Builder(t, p, "ghost", 4, true, platform)
	lose := func(n int) []int64 {
		var ids []int64
		for i := range n {
			_, task := f.submit(t, quick(t, fmt.Sprintf("kiln-lost%d", i)))
			farmtest.Take(t, p, task, "ghost")
			ids = append(ids, task)
		}
		f.exec(t, `UPDATE kiln.task SET heartbeat_at = now() - interval '10 minutes' WHERE id = ANY($1)`, ids)
		f.exec(t, `UPDATE kiln.builder SET heartbeat_at = now() - interval '10 minutes' WHERE name = 'ghost'`)
		return ids
	}
	check := func(ids []int64) {
		t.Helper()
		for _, id := range ids {
			if n := f.count(t, `SELECT count(*) FROM kiln.event WHERE kind = 'janitor.requeue' AND task_id = $1`, id); n != 1 {
				t.Errorf("task %d: %d janitor.requeue events, want 1", id, n)
			}
			if got := f.task(t, id); got.Status != "pending" || got.LostCount != 1 {
				t.Errorf("task %d: %+v; want pending, lost once", id, got)
			}
		}
	}

	// Cron: two --once runs race over the same lost tasks.
	ids := lose(12)
	first := startProc(t, "once-1", binary(t, "kiln-janitor"), "--db", f.db.URLAs(f.role(t, "kiln_janitor")), "--once", "--horizon", "3s")
	second := startProc(t, "once-2", binary(t, "kiln-janitor"), "--db", f.db.URLAs(f.role(t, "kiln_janitor")), "--once", "--horizon", "3s")
	for _, j := range []*proc{first, second} {
		<-j.done
		if j.err != nil {
			t.Fatalf("%s: %v\n%s", j.name, j.err, j.output())
		}
	}
	check(ids)

	// Daemons: two janitors, then more lost tasks.
	f.exec(t, `UPDATE kiln.builder SET state = 'online' WHERE name = 'ghost'`)
	more := lose(3)
	j1 := f.startJanitor(t, f.role(t, "kiln_janitor"))
	j2 := f.startJanitor(t, f.role(t, "kiln_janitor"))
	rounds := func() int {
		return f.count(t, `SELECT count(*) FROM kiln.event WHERE kind = 'janitor.round' AND detail->'parts' ? 'upkeep'`)
	}
	waitFor(t, "the lost tasks to be requeued", func() bool {
		return f.count(t, `SELECT count(*) FROM kiln.task WHERE id = ANY($1) AND status = 'pending'`, more) == len(more)
	})
	after := rounds()
	waitFor(t, "three more rounds", func() bool { return rounds() >= after+3 })
	j1.stop(t)
	j2.stop(t)
	check(append(ids, more...))
	var byRole int
	if err := p.QueryRow(context.Background(), `SELECT count(DISTINCT actor) FROM kiln.event WHERE kind = 'janitor.round'`).Scan(&byRole); err != nil {
		t.Fatal(err)
	}
	t.Logf("rounds recorded by %d janitor roles (two --once runs and two daemons)", byRole)
}
