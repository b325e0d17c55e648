package e2e

import (
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/internal/testsupport/proctest"
)

// A builder whose --db goes through PgBouncer in transaction pooling mode,
// with --listen-db straight to the primary, builds tasks (every statement
// of the take, log, artifact and finish path through the pooler), and a
// cancel still reaches it at once (LISTEN on the direct connection): the
// cancelled build is killed and the builder goes on to the next task.
func TestBuilderThroughPgBouncer(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	role := f.role(t, "kiln_builder")
	pooled := f.db.ViaAs(t, pgtest.EnvPgBouncerURL, role)
	b := f.startBuilder(t, "pb", role, "--db", pooled, "--listen-db", f.db.URLAs(role), "--slots", "2")
	b.waitLog(t, "builder ready")

	_, first := f.submit(t, quick(t, "kiln-pooled"))
	if got := f.waitTask(t, first, "succeeded", "failed", "timed_out"); got.Status != "succeeded" {
		t.Fatalf("task through PgBouncer %+v\n%s", got, b.output())
	}
	if n := f.count(t, `SELECT count(*) FROM kiln.artifact WHERE task_id = $1`, first); n == 0 {
		t.Fatal("no artifacts stored through PgBouncer")
	}

	marker := proctest.SleepMarker()
	job, hanging := f.submit(t, hangingFirstAttempt(t, "kiln-pooled-cancel", marker))
	f.waitBuilding(t, hanging, 1, "pb", "SLEEPING-NOW")
	farmtest.Cancel(t, f.db.Pool, f.person, job)
	if got := f.waitTask(t, hanging, "cancelled", "succeeded", "failed"); got.Status != "cancelled" {
		t.Fatalf("cancelled task %+v", got)
	}
	waitFor(t, "the cancelled build's processes to end", func() bool { return !proctest.Running("sleep " + marker) })

	_, next := f.submit(t, quick(t, "kiln-pooled-next"))
	if got := f.waitTask(t, next, "succeeded", "failed", "timed_out"); got.Status != "succeeded" {
		t.Fatalf("task after the cancel %+v", got)
	}
	// The name lock is session state and so was taken on the direct
	// connection: once the builder stops it is gone. Taken through the
	// pooler it would stay behind on a pooled server connection.
	if n := f.count(t, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND a.usename = $1`, role); n != 1 {
		t.Fatalf("%d advisory locks held by the builder's role, want its one name lock", n)
	}
	b.stop(t)
	waitFor(t, "the builder's name lock to go with it", func() bool {
		return f.count(t, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
			WHERE l.locktype = 'advisory' AND a.usename = $1`, role) == 0
	})
}
