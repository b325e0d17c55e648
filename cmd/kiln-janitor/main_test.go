package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// seedLostTask makes a task whose builder stopped heart-beating ten minutes
// ago, as the builder protocol would have left it, and returns its id.
func seedLostTask(t *testing.T, db *pgtest.DB, builder string) int64 {
	t.Helper()
	ctx := context.Background()
	var taskID int64
	err := db.Pool.QueryRow(ctx, `WITH
		p AS (INSERT INTO kiln.platform (name, arch, package_format, backend) VALUES ('el9-x86_64', 'x86_64', 'rpm', 'rpmbuild')
		      ON CONFLICT DO NOTHING),
		bk AS (INSERT INTO kiln.bucket (name) VALUES ('devel') ON CONFLICT DO NOTHING)
		SELECT 1`).Scan(new(int))
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`INSERT INTO kiln.builder (name, host, state, heartbeat_at) VALUES ($1, 'h', 'online', now() - interval '10 minutes')`,
		`INSERT INTO kiln.builder_platform (builder, platform) VALUES ($1, 'el9-x86_64')`,
	} {
		if _, err := db.Pool.Exec(ctx, sql, builder); err != nil {
			t.Fatal(err)
		}
	}
	err = db.Pool.QueryRow(ctx, `WITH j AS (INSERT INTO kiln.job (bucket, submission_key) VALUES ('devel', $1) RETURNING id)
		INSERT INTO kiln.task (job_id, platform) SELECT id, 'el9-x86_64' FROM j RETURNING id`, builder).Scan(&taskID)
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		`UPDATE kiln.task SET status = 'building', builder = $2, attempt = 1, started_at = now() - interval '10 minutes',
		 heartbeat_at = now() - interval '10 minutes' WHERE id = $1`,
		`INSERT INTO kiln.attempt (task_id, attempt, builder, started_at) VALUES ($1, 1, $2, now() - interval '10 minutes')`,
	} {
		if _, err := db.Pool.Exec(ctx, sql, taskID, builder); err != nil {
			t.Fatal(err)
		}
	}
	return taskID
}

func janitorURL(t *testing.T, db *pgtest.DB) (url, role string) {
	t.Helper()
	buf := make([]byte, 5)
	_, _ = rand.Read(buf)
	role = "janitor_" + hex.EncodeToString(buf)
	if _, err := db.Pool.Exec(context.Background(), "CREATE ROLE "+role+" LOGIN IN ROLE kiln_janitor"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = db.Pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	return db.URLAs(role), role
}

func taskStatus(t *testing.T, db *pgtest.DB, id int64) (status string, riverState *string) {
	t.Helper()
	err := db.Pool.QueryRow(context.Background(), `SELECT t.status, r.state::text FROM kiln.task t
		LEFT JOIN river.river_job r ON r.id = t.river_job_id WHERE t.id = $1`, id).Scan(&status, &riverState)
	if err != nil {
		t.Fatal(err)
	}
	return status, riverState
}

func TestOnceDoesOneRoundAndExits(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	url, role := janitorURL(t, db)
	task := seedLostTask(t, db, "b1")

	err := app().RunContext(context.Background(), []string{"kiln-janitor", "--db", url, "--once", "--horizon", "30s"})
	if err != nil {
		t.Fatalf("--once: %v", err)
	}
	if status, river := taskStatus(t, db, task); status != "pending" || river == nil || *river != "available" {
		t.Fatalf("task %s, River job %v; want pending with an available River job", status, river)
	}
	var parts string
	var requeued int
	err = db.Pool.QueryRow(context.Background(), `SELECT detail->>'parts', (detail->>'requeued')::int FROM kiln.event
		WHERE kind = 'janitor.round' AND actor = $1`, role).Scan(&parts, &requeued)
	if err != nil || parts != `["upkeep", "retention"]` || requeued != 1 {
		t.Fatalf("janitor.round event: parts %s requeued %d, %v", parts, requeued, err)
	}
}

func TestBadFlagsAreRefused(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--once", "--horizon", "0s"},
		{"--once", "--retention", "24h", "--delete-jobs-after", "1h"},
		{"--once", "--batch", "0"},
		{"--once", "extra"},
	} {
		err := app().RunContext(context.Background(), append([]string{"kiln-janitor", "--db", "postgres://nowhere.invalid/x"}, args...))
		if err == nil || strings.Contains(err.Error(), "nowhere") {
			t.Errorf("%v: got %v, want a configuration error before connecting", args, err)
		}
	}
}

// TestDaemonRequeuesAndStops runs the daemon as kiln_janitor: it becomes
// River's leader, enqueues its periodic rounds, works them, and stops
// cleanly when its context ends (as on SIGTERM).
func TestDaemonRequeuesAndStops(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	url, role := janitorURL(t, db)
	first := seedLostTask(t, db, "b1")

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- app().RunContext(ctx, []string{"kiln-janitor", "--db", url, "--interval", "1s", "--horizon", "3s", "--log-level", "warn"})
	}()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(2 * time.Minute)
		for !cond() {
			select {
			case err := <-done:
				t.Fatalf("daemon exited while waiting for %s: %v", what, err)
			case <-time.After(100 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("gave up waiting for %s", what)
			}
		}
	}
	waitFor("the first task to be requeued", func() bool { s, _ := taskStatus(t, db, first); return s == "pending" })
	// Later rounds keep coming: a task lost now is found too.
	second := seedLostTask(t, db, "b2")
	waitFor("the second task to be requeued", func() bool { s, _ := taskStatus(t, db, second); return s == "pending" })

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("daemon stopped with %v", err)
	}
	var rounds, riverJobs int
	if err := db.Pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM kiln.event WHERE kind = 'janitor.round' AND actor = $1),
		(SELECT count(*) FROM river.river_job WHERE kind IN ('janitor_upkeep', 'janitor_prune'))`, role).Scan(&rounds, &riverJobs); err != nil {
		t.Fatal(err)
	}
	if rounds < 2 || riverJobs < 2 {
		t.Fatalf("%d rounds recorded, %d janitor River jobs; want at least 2 of each", rounds, riverJobs)
	}
}

// TestTwoDaemonsActOnce runs two janitor daemons (separate roles and
// connections) on one farm: a lost task is requeued once, whichever of
// them does it.
func TestTwoDaemonsActOnce(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	task := seedLostTask(t, db, "b1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 2)
	for i := 0; i < 2; i++ {
		url, _ := janitorURL(t, db)
		go func() {
			done <- app().RunContext(ctx, []string{"kiln-janitor", "--db", url, "--interval", "1s", "--horizon", "3s", "--log-level", "warn"})
		}()
	}
	count := func(sql string) int {
		var n int
		if err := db.Pool.QueryRow(context.Background(), sql, task).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	deadline := time.Now().Add(2 * time.Minute)
	for count(`SELECT count(*) FROM kiln.task WHERE id = $1 AND status = 'pending'`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("gave up waiting for the requeue")
		}
		time.Sleep(100 * time.Millisecond)
	}
	// A few more rounds after the requeue, then stop both.
	after := count(`SELECT count(*) FROM kiln.event WHERE kind = 'janitor.round' AND $1 > 0`)
	for count(`SELECT count(*) FROM kiln.event WHERE kind = 'janitor.round' AND $1 > 0`) < after+3 {
		if time.Now().After(deadline) {
			t.Fatal("gave up waiting for further rounds")
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	for i := 0; i < 2; i++ {
		if err := <-done; err != nil {
			t.Fatalf("daemon stopped with %v", err)
		}
	}
	if n := count(`SELECT count(*) FROM kiln.event WHERE kind = 'janitor.requeue' AND task_id = $1`); n != 1 {
		t.Fatalf("%d requeue events, want 1", n)
	}
	if n := count(`SELECT lost_count FROM kiln.task WHERE id = $1`); n != 1 {
		t.Fatalf("lost_count %d, want 1", n)
	}
}
