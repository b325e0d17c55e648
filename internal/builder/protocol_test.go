package builder

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/internal/testsupport/proctest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
	"github.com/kiln-build/kiln/riverjob"
)

// A builder whose attempt was declared lost and replaced cannot finish it,
// log into it or heartbeat it: nothing of the late finish remains.
func TestStaleFinishChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFarm(t)
	f.platform(t, "bench", "x86_64", "rpm", "noop", time.Hour, "")
	_, pool := f.builderPool(t, 1)
	cfg := testConfig(t, "bench")
	b, err := New(ctx, pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.register(ctx); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "x-1-1.src.rpm")
	os.WriteFile(src, []byte("not really an SRPM"), 0o644)
	job, task := f.submit(t, "bench", "retry", src)
	a := riverjob.BuildArgs{TaskID: task, JobID: job, Platform: "bench"}
	if got, err := b.take(ctx, a); err != nil || got.Attempt != 1 {
		t.Fatalf("take: %d %v", got.Attempt, err)
	}
	// The janitor declares attempt 1 lost; attempt 2 starts.
	farmtest.Lose(t, f.db.Pool, task)
	if got, err := b.take(ctx, a); err != nil || got.Attempt != 2 {
		t.Fatalf("second take: %d %v", got.Attempt, err)
	}
	if got, err := b.take(ctx, a); err != nil || got.Attempt != 0 {
		t.Fatalf("a task that is building was taken again: %d %v", got.Attempt, err)
	}

	late := filepath.Join(t.TempDir(), "late.rpm")
	lateContent := []byte("late result " + randomHex(8))
	os.WriteFile(late, lateContent, 0o644)
	info := &buildInfo{Status: "succeeded"}
	body, _ := json.Marshal(info)
	_, err = b.finish(ctx, a, 1, info, body, []artifactFile{{name: "late.rpm", kind: "package", open: func() (*os.File, error) { return os.Open(late) }}}, nil)
	if !errors.Is(err, errStale) {
		t.Fatalf("stale finish: %v, want errStale", err)
	}
	status, attempt, _ := f.taskStatus(t, task)
	var a1Status string
	var a1Info []byte
	var artifacts, blobs int
	f.db.Pool.QueryRow(ctx, "SELECT status, build_info FROM kiln.attempt WHERE task_id = $1 AND attempt = 1", task).Scan(&a1Status, &a1Info)
	f.db.Pool.QueryRow(ctx, "SELECT count(*) FROM kiln.artifact WHERE task_id = $1", task).Scan(&artifacts)
	sum := sha256.Sum256(lateContent)
	f.db.Pool.QueryRow(ctx, "SELECT count(*) FROM kiln.blob WHERE sha256 = $1", sum[:]).Scan(&blobs)
	if status != "building" || attempt != 2 || a1Status != "lost" || a1Info != nil || artifacts != 0 || blobs != 0 {
		t.Fatalf("after a stale finish: task %s/%d, attempt 1 %s %s, %d artifacts, %d blobs", status, attempt, a1Status, a1Info, artifacts, blobs)
	}

	// Its log writes and heartbeats are refused too.
	fenced := make(chan struct{})
	live, err := newLiveLog(b, task, 1, filepath.Join(t.TempDir(), "log"), func() { close(fenced) })
	if err != nil {
		t.Fatal(err)
	}
	live.Write([]byte("late output\n"))
	live.close(ctx)
	<-fenced
	var chunks int
	f.db.Pool.QueryRow(ctx, "SELECT count(*) FROM kiln.log_chunk WHERE task_id = $1", task).Scan(&chunks)
	if chunks != 0 || !live.fenced() {
		t.Fatalf("a stale attempt stored %d log chunks", chunks)
	}
	hbCtx, cancel := context.WithCancelCause(ctx)
	if err := b.heartbeatTasks(ctx, []*attemptRun{{task: task, attempt: 1, cancel: cancel}}); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(context.Cause(hbCtx), errFenced) {
		t.Fatal("a stale heartbeat did not stop the build")
	}

	// The current attempt finishes normally.
	if _, err := b.finish(ctx, a, 2, info, body, []artifactFile{{name: "late.rpm", kind: "package", open: func() (*os.File, error) { return os.Open(late) }}}, nil); err != nil {
		t.Fatal(err)
	}
	if status, _, _ := f.taskStatus(t, task); status != "succeeded" {
		t.Fatalf("current finish: task %s", status)
	}
}

// SIGTERM's path: the running build is given back without spending an
// attempt; another builder takes it; cancelling the job stops that build.
func TestShutdownGivesBackAndCancelStops(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFarm(t)
	f.platform(t, "el9-x86_64", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	_, pool1 := f.builderPool(t, 1)
	_, pool2 := f.builderPool(t, 1)
	marker := proctest.SleepMarker()
	srpm := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-long", Build: "echo SLEEPING-NOW; sleep " + marker})
	job, task := f.submit(t, "el9-x86_64", "retry", srpm)

	cfg1 := testConfig(t, "el9-x86_64")
	r1 := start(t, pool1, cfg1)
	waitFor(t, "the first build to start", func() bool { return strings.Contains(f.logOf(t, task, 1), "SLEEPING-NOW") })
	r1.stop()

	status, attempt, _ := f.taskStatus(t, task)
	var a1Status string
	var lost int
	var riverState string
	var riverAttempt int
	f.db.Pool.QueryRow(ctx, "SELECT status FROM kiln.attempt WHERE task_id = $1 AND attempt = 1", task).Scan(&a1Status)
	f.db.Pool.QueryRow(ctx, "SELECT lost_count FROM kiln.task WHERE id = $1", task).Scan(&lost)
	f.db.Pool.QueryRow(ctx, "SELECT j.state, j.attempt FROM river.river_job j JOIN kiln.task t ON t.river_job_id = j.id WHERE t.id = $1",
		task).Scan(&riverState, &riverAttempt)
	if status != "pending" || attempt != 1 || a1Status != "returned" || lost != 0 || riverState != "available" || riverAttempt != 0 {
		t.Fatalf("after shutdown: task %s attempt %d, attempt 1 %s, lost %d, River job %s attempt %d",
			status, attempt, a1Status, lost, riverState, riverAttempt)
	}
	if log := f.logOf(t, task, 1); !strings.Contains(log, "given back") {
		t.Fatalf("the log does not say the task was given back:\n%s", log)
	}
	proctest.NoLeftovers(t, "sleep "+marker)

	r2 := start(t, pool2, testConfig(t, "el9-x86_64"))
	waitFor(t, "the second build to start", func() bool { return strings.Contains(f.logOf(t, task, 2), "SLEEPING-NOW") })
	f.exec(t, "SELECT kiln.cancel_job($1)", job)
	proctest.NoLeftovers(t, "sleep "+marker)
	status, attempt, reason := f.taskStatus(t, task)
	var a2Status string
	f.db.Pool.QueryRow(ctx, "SELECT status FROM kiln.attempt WHERE task_id = $1 AND attempt = 2", task).Scan(&a2Status)
	if status != "cancelled" || attempt != 2 || a2Status != "cancelled" || !strings.HasPrefix(reason, "cancelled by") {
		t.Fatalf("after cancel: task %s attempt %d (%s), attempt 2 %s", status, attempt, reason, a2Status)
	}
	// The slot is free again: the next job builds.
	quick := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-quick"})
	_, next := f.submit(t, "el9-x86_64", "retry", quick)
	if st := f.waitStatus(t, next, "succeeded", "failed", "timed_out"); st != "succeeded" {
		t.Fatalf("next task %s", st)
	}
	r2.stop()
	if status, _, _ := f.taskStatus(t, task); status != "cancelled" {
		t.Fatalf("the cancelled task became %s", status)
	}
}

// Killing every connection of the builder (what a PostgreSQL restart does)
// loses nothing: the running build finishes, the builder's session
// connection comes back holding the name's lock and listening, and the
// next job is taken.
func TestSurvivesLostConnections(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "el9-x86_64", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	role, pool := f.builderPool(t, 1)
	srpm := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-steady", Build: "echo BEFORE-RESTART; sleep 4; echo AFTER-RESTART; echo hi > kiln-steady.txt"})
	_, task := f.submit(t, "el9-x86_64", "retry", srpm)
	r := start(t, pool, testConfig(t, "el9-x86_64"))
	waitFor(t, "the build to start", func() bool { return strings.Contains(f.logOf(t, task, 1), "BEFORE-RESTART") })
	var killed int
	if err := f.db.Pool.QueryRow(context.Background(),
		"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1", role).Scan(&killed); err != nil || killed == 0 {
		t.Fatalf("terminated %d connections: %v", killed, err)
	}
	// One session of the role holds the lock again, no other one listens,
	// and the builder listens: on that session.
	waitFor(t, "the name's lock to be held again by the listening session", func() bool {
		var held, others int
		f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FILTER (WHERE held),
				count(*) FILTER (WHERE NOT held AND query = 'LISTEN kiln_task; LISTEN kiln_builder')
			FROM (SELECT a.query, EXISTS (SELECT FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' AND l.granted) AS held
				FROM pg_stat_activity a WHERE a.usename = $1) s`, role).Scan(&held, &others)
		return held == 1 && others == 0 && r.b.listening.Load()
	})
	if st := f.waitStatus(t, task, "succeeded", "failed", "timed_out"); st != "succeeded" {
		t.Fatalf("task %s", st)
	}
	if log := f.logOf(t, task, 1); !strings.Contains(log, "AFTER-RESTART") {
		t.Fatalf("log lost output:\n%s", log)
	}
	quick := testpkg.SRPM(t, testpkg.Spec{Name: "kiln-after"})
	_, next := f.submit(t, "el9-x86_64", "retry", quick)
	if st := f.waitStatus(t, next, "succeeded", "failed", "timed_out"); st != "succeeded" {
		t.Fatalf("next task %s", st)
	}
}

// Anyone may NOTIFY kiln_task with any payload. A forged "cancelled" for a
// task the builder is building makes it ask the database, which says the
// attempt is still held: the build goes on. Only a real cancel stops it.
func TestForgedNotifyDoesNotStopABuild(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFarm(t)
	f.platform(t, "bench", "x86_64", "rpm", "noop", time.Hour, "")
	_, pool := f.builderPool(t, 1)
	b, err := New(ctx, pool, testConfig(t, "bench"))
	if err != nil {
		t.Fatal(err)
	}
	if err := b.register(ctx); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "x-1-1.src.rpm")
	os.WriteFile(src, []byte("not really an SRPM"), 0o644)
	job, task := f.submit(t, "bench", "retry", src)
	taken, err := b.take(ctx, riverjob.BuildArgs{TaskID: task, JobID: job, Platform: "bench"})
	if err != nil || taken.Attempt != 1 {
		t.Fatalf("take: %d %v", taken.Attempt, err)
	}
	buildCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	b.running[task] = &attemptRun{task: task, attempt: 1, cancel: cancel, takenBy: taken.Session}

	// The forged payload, sent by another builder's role as any session could.
	other, otherPool := f.builderPool(t, 1)
	payload := fmt.Sprintf(`{"job": %d, "task": %d, "status": "cancelled"}`, job, task)
	if _, err := otherPool.Exec(ctx, "SELECT pg_notify('kiln_task', $1)", payload); err != nil {
		t.Fatalf("NOTIFY as %s: %v", other, err)
	}
	b.onNotify(ctx, "kiln_task", payload, 1)
	b.onNotify(ctx, "kiln_task", fmt.Sprintf(`{"task": %d, "status": "lost"}`, task), 1)
	if cause := context.Cause(buildCtx); cause != nil {
		t.Fatalf("a forged NOTIFY stopped the build: %v", cause)
	}
	if status, attempt, _ := f.taskStatus(t, task); status != "building" || attempt != 1 {
		t.Fatalf("after a forged NOTIFY: task %s attempt %d", status, attempt)
	}

	// A real cancel, told by the same payload, stops it.
	f.exec(t, "SELECT kiln.cancel_job($1)", job)
	b.onNotify(ctx, "kiln_task", payload, 1)
	if !errors.Is(context.Cause(buildCtx), errFenced) {
		t.Fatalf("a real cancel did not stop the build: %v", context.Cause(buildCtx))
	}
}

// A take's own NOTIFY kiln_task comes from the backend that ran it (through
// PgBouncer too), and the builder does not check the attempt for it: no
// heartbeat runs. A second notification from that backend, or any from
// another, is checked, and a real cancel still stops the build.
func TestOwnTakeNotificationIsNotChecked(t *testing.T) {
	t.Parallel()
	for _, via := range []string{"direct", "pgbouncer"} {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newFarm(t)
			f.platform(t, "bench", "x86_64", "rpm", "noop", time.Hour, "")
			role, pool := f.builderPool(t, 1)
			if via == "pgbouncer" {
				var err error
				pool, err = dbconn.Open(ctx, dbconn.Config{URL: f.db.ViaAs(t, pgtest.EnvPgBouncerURL, role), AppName: "kiln-builder-test", MaxConns: 8, Pooled: true})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(pool.Close)
			}
			b, err := New(ctx, pool, testConfig(t, "bench"))
			if err != nil {
				t.Fatal(err)
			}
			if err := b.register(ctx); err != nil {
				t.Fatal(err)
			}
			listener, err := f.db.Pool.Acquire(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer listener.Release()
			if _, err := listener.Exec(ctx, "LISTEN kiln_task"); err != nil {
				t.Fatal(err)
			}
			// next is the next notification of the task.
			next := func(task int64) *pgconn.Notification {
				t.Helper()
				for {
					wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					n, err := listener.Conn().WaitForNotification(wctx)
					cancel()
					if err != nil {
						t.Fatalf("waiting for a notification of task %d: %v", task, err)
					}
					var msg struct{ Task int64 }
					if json.Unmarshal([]byte(n.Payload), &msg) == nil && msg.Task == task {
						return n
					}
				}
			}

			src := filepath.Join(t.TempDir(), "x-1-1.src.rpm")
			os.WriteFile(src, []byte("not really an SRPM"), 0o644)
			job, task := f.submit(t, "bench", "retry", src)
			next(task) // the task's insert, by the submitter
			taken, err := b.take(ctx, riverjob.BuildArgs{TaskID: task, JobID: job, Platform: "bench"})
			if err != nil || taken.Attempt != 1 {
				t.Fatalf("take: %d %v", taken.Attempt, err)
			}
			own := next(task)
			if own.PID != taken.Session {
				t.Fatalf("the take's notification came from backend %d, the take reported %d", own.PID, taken.Session)
			}
			buildCtx, cancel := context.WithCancelCause(ctx)
			defer cancel(nil)
			b.running[task] = &attemptRun{task: task, attempt: 1, cancel: cancel, takenBy: taken.Session}

			// heartbeat is the task's heartbeat_at as text (microseconds).
			heartbeat := func() string {
				var at string
				if err := f.db.Pool.QueryRow(ctx, "SELECT heartbeat_at::text FROM kiln.task WHERE id = $1", task).Scan(&at); err != nil {
					t.Fatal(err)
				}
				return at
			}
			before := heartbeat()
			time.Sleep(10 * time.Millisecond)
			b.onNotify(ctx, own.Channel, own.Payload, own.PID)
			if after := heartbeat(); after != before {
				t.Fatalf("the take's own notification was checked: heartbeat %s, then %s", before, after)
			}
			b.onNotify(ctx, own.Channel, own.Payload, own.PID)
			if after := heartbeat(); after == before {
				t.Fatal("a second notification from the take's backend was not checked")
			}

			f.exec(t, "SELECT kiln.cancel_job($1)", job)
			cancelled := next(task)
			b.onNotify(ctx, cancelled.Channel, cancelled.Payload, cancelled.PID)
			if !errors.Is(context.Cause(buildCtx), errFenced) {
				t.Fatalf("a real cancel did not stop the build: %v", context.Cause(buildCtx))
			}
		})
	}
}

// A log batch whose store committed but whose answer was lost (the
// connection cut at a failover) is sent again as it was, under its
// number, and stored once; the output after it, and the end of the log
// that the finish carries, follow it, and the attempt finishes. (Before,
// the builder folded the batch into its next one under the same number,
// and the finish failed on the log's primary key for good.)
func TestLogBatchWithLostAnswerIsSentAgainAsItWas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFarm(t)
	f.platform(t, "bench", "x86_64", "rpm", "noop", time.Hour, "")
	_, pool := f.builderPool(t, 1)
	cfg := testConfig(t, "bench")
	b, err := New(ctx, pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.register(ctx); err != nil {
		t.Fatal(err)
	}
	src := filepath.Join(t.TempDir(), "x-1-1.src.rpm")
	os.WriteFile(src, []byte("not really an SRPM"), 0o644)
	job, taskID := f.submit(t, "bench", "retry", src)
	a := riverjob.BuildArgs{TaskID: taskID, JobID: job, Platform: "bench"}
	if got, err := b.take(ctx, a); err != nil || got.Attempt != 1 {
		t.Fatalf("take: %d %v", got.Attempt, err)
	}
	// The first store of a batch commits and then loses its answer.
	store := b.logs.run
	lost := false
	b.logs.run = func(ctx context.Context, items []task.Logging) ([]bool, error) {
		held, err := store(ctx, items)
		if err == nil && !lost {
			lost = true
			return nil, errors.New("unexpected EOF")
		}
		return held, err
	}
	live, err := newLiveLog(b, taskID, 1, filepath.Join(t.TempDir(), "log"), func() { t.Error("the attempt was fenced off") })
	if err != nil {
		t.Fatal(err)
	}
	live.Write([]byte("first line\n"))
	if _, err := live.flush(ctx, false); err == nil || !lost {
		t.Fatalf("the first store: %v, want its answer lost", err)
	}
	live.Write([]byte("second line\n"))
	live.Write([]byte("third, unterminated"))
	live.closeForFinish(ctx)
	info := &buildInfo{Status: "succeeded"}
	body, _ := json.Marshal(info)
	if _, err := b.finish(ctx, a, 1, info, body, nil, live); err != nil {
		t.Fatalf("finish after a batch sent again: %v", err)
	}
	var text string
	var chunks int
	if err := f.db.Pool.QueryRow(ctx, `SELECT string_agg(data, '' ORDER BY seq), count(*) FROM kiln.log_chunk WHERE task_id = $1 AND attempt = 1`, taskID).
		Scan(&text, &chunks); err != nil {
		t.Fatal(err)
	}
	if want := "first line\nsecond line\nthird, unterminated\n"; text != want || chunks != 2 {
		t.Errorf("stored log %q in %d chunks, want %q in 2 (the batch sent again, then the finish's end)", text, chunks, want)
	}
	if status, _, _ := f.taskStatus(t, taskID); status != "succeeded" {
		t.Errorf("task %s, want succeeded", status)
	}
}
