package builder

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/testsupport/proctest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// A builder with nothing to build stops listening after Config.ListenIdle,
// listens again when it takes a task, and a cancel then reaches the running
// build through the notification (the heartbeat, an hour apart here, cannot
// be what stops it). Once the build is over it stops listening again; the
// build's end is what wakes it to count the idle time (while builds run it
// waits with no deadline). Throughout, the session that listens is the one
// that holds the builder name's lock: a builder has one session connection.
func TestIdleBuilderStopsListening(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "el9-x86_64", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	role, pool := f.builderPool(t, 1)
	cfg := testConfig(t, "el9-x86_64")
	cfg.ListenIdle = 300 * time.Millisecond
	cfg.Heartbeat = time.Hour
	r := start(t, pool, cfg)
	// The server's view: the last statement of the session that holds
	// the builder name's advisory lock (River's own LISTEN session sends
	// other statements, and holds no lock).
	session := func() string {
		var q string
		f.db.Pool.QueryRow(context.Background(), `SELECT a.query FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
			WHERE a.usename = $1 AND l.locktype = 'advisory' AND l.granted`, role).Scan(&q)
		return q
	}
	// A builder that was idle for ListenIdle before its listen loop began
	// (a loaded machine) never listened: its session's last statement is
	// then the lock's.
	waitFor(t, "the idle builder to stop listening", func() bool {
		q := session()
		return q != "" && !strings.HasPrefix(q, "LISTEN") && !r.b.listening.Load()
	})

	marker := proctest.SleepMarker()
	srpm := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-listen", Build: "echo SLEEPING-NOW; sleep " + marker})
	job, task := f.submit(t, "el9-x86_64", "retry", srpm)
	waitFor(t, "the build to start", func() bool { return strings.Contains(f.logOf(t, task, 1), "SLEEPING-NOW") })
	waitFor(t, "the busy builder to listen", func() bool { return strings.HasPrefix(session(), "LISTEN") && r.b.listening.Load() })
	// Longer than ListenIdle: a running build keeps the builder listening.
	time.Sleep(time.Second)
	if q := session(); !strings.HasPrefix(q, "LISTEN") {
		t.Fatalf("the builder stopped listening while it builds: %q", q)
	}

	f.exec(t, "SELECT kiln.cancel_job($1)", job)
	proctest.NoLeftovers(t, "sleep "+marker)
	if st := f.waitStatus(t, task, "cancelled", "succeeded", "failed"); st != "cancelled" {
		t.Fatalf("task %s", st)
	}
	waitFor(t, "the builder to stop listening after its build", func() bool { return session() == "UNLISTEN *" })
}

// The builder name's lock lives on the listening session. Lost to another
// session (a connection killed, and someone else took the lock before the
// builder reconnected), it is taken back within heartbeats once freed,
// whether the builder is listening (the wait wakes each heartbeat to try)
// or idle (the idle wait checks each heartbeat).
func TestNameLockIsTakenBackOnTheSessionConnection(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "el9-x86_64", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	for _, c := range []struct {
		name string
		idle time.Duration
	}{{"listening", time.Hour}, {"idle", 200 * time.Millisecond}} {
		t.Run(c.name, func(t *testing.T) {
			role, pool := f.builderPool(t, 1)
			cfg := testConfig(t, "el9-x86_64")
			cfg.ListenIdle = c.idle
			r := start(t, pool, cfg)
			holder := func() (pid int) {
				f.db.Pool.QueryRow(context.Background(), `SELECT a.pid FROM pg_stat_activity a JOIN pg_locks l ON l.pid = a.pid
					WHERE a.usename = $1 AND l.locktype = 'advisory' AND l.granted`, role).Scan(&pid)
				return pid
			}
			waitFor(t, "the builder to hold its name's lock", func() bool { return holder() != 0 })
			waitFor(t, "the builder to be "+c.name, func() bool { return r.b.listening.Load() == (c.name == "listening") })

			other, err := pgx.Connect(context.Background(), f.db.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close(context.Background())
			// The builder reconnects 2 s after the loss: the other session
			// has the lock long before.
			f.exec(t, "SELECT pg_terminate_backend($1, 10000)", holder())
			if _, err := other.Exec(context.Background(), "SELECT pg_advisory_lock(hashtextextended('kiln-builder:' || $1, 0))", cfg.Name); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
			if pid := holder(); pid != 0 {
				t.Fatalf("the builder's session %d holds the lock another session holds", pid)
			}
			if _, err := other.Exec(context.Background(), "SELECT pg_advisory_unlock(hashtextextended('kiln-builder:' || $1, 0))", cfg.Name); err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the builder to take its name's lock back", func() bool { return holder() != 0 })
			if c.name == "listening" {
				if !r.b.listening.Load() {
					t.Fatal("the builder stopped listening")
				}
				// It listened on the session that now holds the lock, not
				// on another.
				var n int
				if err := f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
					WHERE usename = $1 AND pid <> $2 AND query LIKE 'LISTEN kiln_task%'`, role, holder()).Scan(&n); err != nil || n != 0 {
					t.Fatalf("%d other sessions of the builder's role listen: %v", n, err)
				}
			}
		})
	}
}
