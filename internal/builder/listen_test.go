package builder

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testsupport/proctest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// A builder with nothing to build stops listening after Config.ListenIdle,
// listens again when it takes a task, and a cancel then reaches the running
// build through the notification (the heartbeat, an hour apart here, cannot
// be what stops it). Once the build is over it stops listening again.
func TestIdleBuilderStopsListening(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "el9-x86_64", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	role, pool := f.builderPool(t, 1)
	cfg := testConfig(t, "el9-x86_64")
	cfg.ListenIdle = 300 * time.Millisecond
	cfg.Heartbeat = time.Hour
	r := start(t, pool, cfg)
	// The server's view: the last statement of the builder's listening
	// session (River's own LISTEN session sends other statements).
	session := func() string {
		var q string
		f.db.Pool.QueryRow(context.Background(), `SELECT query FROM pg_stat_activity
			WHERE usename = $1 AND query IN ('UNLISTEN *', 'LISTEN kiln_task; LISTEN kiln_builder')`, role).Scan(&q)
		return q
	}
	waitFor(t, "the idle builder to stop listening", func() bool { return session() == "UNLISTEN *" && !r.b.listening.Load() })

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
