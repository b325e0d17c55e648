package janitor

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/task"
)

func TestLostTaskIsRequeuedWithHistory(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	jobID, taskID, riverJob := b.submitTask(t, 3)
	if a := b.take(t, taskID, "b1"); a != 1 {
		t.Fatalf("first take got attempt %d", a)
	}

	// A builder that heart-beats is left alone.
	if c := b.round(t, Upkeep); c.Requeued != 0 || c.BuildersOffline != 0 {
		t.Fatalf("round on a live builder acted: %+v", c)
	}

	b.silence(t, taskID, "b1")
	c := b.round(t, Upkeep)
	if c.Requeued != 1 || c.BuildersOffline != 1 || c.Lost != 0 {
		t.Fatalf("counts %+v, want one requeue and one builder offline", c)
	}

	var (
		status, jobStatus, riverState string
		builder, reason               *string
		attempt, lostCount            int32
		riverJobNow                   int64
	)
	b.scan(t, `SELECT t.status, t.builder, t.attempt, t.lost_count, t.reason, t.river_job_id, j.status, r.state::text
		FROM kiln.task t JOIN kiln.job j ON j.id = t.job_id JOIN river.river_job r ON r.id = t.river_job_id WHERE t.id = $1`,
		[]any{taskID}, &status, &builder, &attempt, &lostCount, &reason, &riverJobNow, &jobStatus, &riverState)
	if status != "pending" || builder != nil || attempt != 1 || lostCount != 1 || reason == nil || !strings.Contains(*reason, "b1 went silent") {
		t.Fatalf("task after requeue: %s builder=%v attempt=%d lost_count=%d reason=%v", status, builder, attempt, lostCount, reason)
	}
	if riverJobNow != riverJob || riverState != "available" {
		t.Fatalf("River job after requeue: %d %s, want %d available", riverJobNow, riverState, riverJob)
	}
	if jobStatus != "queued" {
		t.Fatalf("job status %s, want queued", jobStatus)
	}
	var attemptStatus, builderState string
	b.scan(t, `SELECT status FROM kiln.attempt WHERE task_id = $1 AND attempt = 1`, []any{taskID}, &attemptStatus)
	b.scan(t, `SELECT state FROM kiln.builder WHERE name = 'b1'`, nil, &builderState)
	if attemptStatus != "lost" || builderState != "offline" {
		t.Fatalf("attempt 1 %s, builder b1 %s; want lost, offline", attemptStatus, builderState)
	}

	req := b.events(t, "janitor.requeue")
	if len(req) != 1 || req[0]["actor"] != b.role || req[0]["builder"] != "b1" || req[0]["new_status"] != "pending" ||
		int64(req[0]["task_id"].(float64)) != taskID || int64(req[0]["job_id"].(float64)) != jobID {
		t.Fatalf("janitor.requeue events: %v", req)
	}
	if off := b.events(t, "janitor.offline"); len(off) != 1 || off[0]["builder"] != "b1" || off[0]["actor"] != b.role {
		t.Fatalf("janitor.offline events: %v", off)
	}
	var lostEvents int
	b.scan(t, `SELECT count(*) FROM kiln.event WHERE kind = 'attempt.status' AND task_id = $1 AND attempt = 1 AND new_status = 'lost' AND actor = $2`,
		[]any{taskID, b.role}, &lostEvents)
	if lostEvents != 1 {
		t.Fatalf("%d attempt.status lost events by %s, want 1", lostEvents, b.role)
	}
	rounds := b.events(t, "janitor.round")
	if len(rounds) != 2 {
		t.Fatalf("%d janitor.round events, want 2", len(rounds))
	}
	if d := rounds[1]["detail"].(map[string]any); d["requeued"] != float64(1) || d["builders_offline"] != float64(1) {
		t.Fatalf("round detail %v", d)
	}

	// Another builder takes it: the next attempt, with the lost one in the history.
	if a := b.take(t, taskID, "b2"); a != 2 {
		t.Fatalf("second take got attempt %d, want 2", a)
	}
	rows, err := b.db.Pool.Query(b.ctx, `SELECT attempt || ':' || builder || ':' || status FROM kiln.attempt WHERE task_id = $1 ORDER BY attempt`, taskID)
	if err != nil {
		t.Fatal(err)
	}
	hist, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(hist, " ") != "1:b1:lost 2:b2:building" {
		t.Fatalf("attempt history %v", hist)
	}
	// The next round leaves the new attempt alone.
	if c := b.round(t, Upkeep); c.Requeued != 0 || c.RiverJobsInserted != 0 {
		t.Fatalf("round after the new take acted: %+v", c)
	}
}

func TestTaskLostTooOftenEndsLost(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	b.exec(t, `SELECT kiln.set_max_lost(2)`)
	jobID, taskID, riverJob := b.submitTask(t, 2)
	for i := 1; i <= 3; i++ {
		builder := []string{"b1", "b2"}[i%2]
		b.exec(t, `UPDATE kiln.builder SET state = 'online', heartbeat_at = now() WHERE name = $1`, builder)
		if a := b.take(t, taskID, builder); int(a) != i {
			t.Fatalf("take %d got attempt %d", i, a)
		}
		b.silence(t, taskID, builder)
		c := b.round(t, Upkeep)
		if i <= 2 && (c.Requeued != 1 || c.Lost != 0) {
			t.Fatalf("loss %d: %+v, want a requeue", i, c)
		}
		if i == 3 && (c.Requeued != 0 || c.Lost != 1) {
			t.Fatalf("loss %d: %+v, want the task ended as lost", i, c)
		}
	}
	var status, reason, jobStatus, riverState string
	var lostCount int
	b.scan(t, `SELECT t.status, t.reason, t.lost_count, j.status, r.state::text FROM kiln.task t JOIN kiln.job j ON j.id = t.job_id
		JOIN river.river_job r ON r.id = $2 WHERE t.id = $1`, []any{taskID, riverJob}, &status, &reason, &lostCount, &jobStatus, &riverState)
	if status != "lost" || lostCount != 3 || !strings.Contains(reason, "lost 3 times (more than 2)") {
		t.Fatalf("task %s lost_count=%d reason=%q", status, lostCount, reason)
	}
	if jobStatus != "failed" || riverState != "cancelled" {
		t.Fatalf("job %s, River job %s; want failed, cancelled", jobStatus, riverState)
	}
	ev := b.events(t, "janitor.lost")
	if len(ev) != 1 || int64(ev[0]["job_id"].(float64)) != jobID || ev[0]["new_status"] != "lost" {
		t.Fatalf("janitor.lost events %v", ev)
	}
	var statuses string
	b.scan(t, `SELECT string_agg(status, ',' ORDER BY attempt) FROM kiln.attempt WHERE task_id = $1`, []any{taskID}, &statuses)
	if statuses != "lost,lost,lost" {
		t.Fatalf("attempts %s", statuses)
	}
}

func TestRunawayBuildTimesOutDespiteHeartbeat(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.TimeoutGrace = time.Minute
	b := setup(t, cfg)
	b.exec(t, `UPDATE kiln.platform SET timeout = '5 minutes' WHERE name = $1`, platform)
	_, taskID, riverJob := b.submitTask(t, 2)
	_, inTime, _ := b.submitTask(t, 2)
	b.take(t, taskID, "b1")
	b.take(t, inTime, "b2")
	// Both builders heart-beat; one task started 7 minutes ago (past 5+1),
	// the other 5½ minutes ago (within the grace).
	b.exec(t, `UPDATE kiln.task SET started_at = now() - interval '7 minutes', heartbeat_at = now() WHERE id = $1`, taskID)
	b.exec(t, `UPDATE kiln.task SET started_at = now() - interval '330 seconds', heartbeat_at = now() WHERE id = $1`, inTime)

	c := b.round(t, Upkeep)
	if c.TimedOut != 1 || c.Requeued != 0 {
		t.Fatalf("counts %+v, want one timed out", c)
	}
	var status, attemptStatus, riverState, reason string
	var builder *string
	b.scan(t, `SELECT t.status, t.builder, t.reason, a.status, r.state::text FROM kiln.task t
		JOIN kiln.attempt a ON a.task_id = t.id AND a.attempt = t.attempt JOIN river.river_job r ON r.id = $2 WHERE t.id = $1`,
		[]any{taskID, riverJob}, &status, &builder, &reason, &attemptStatus, &riverState)
	if status != "timed_out" || builder != nil || attemptStatus != "timed_out" || riverState != "cancelled" || !strings.Contains(reason, "past the platform timeout") {
		t.Fatalf("task %s builder %v attempt %s River job %s reason %q", status, builder, attemptStatus, riverState, reason)
	}
	b.scan(t, `SELECT status FROM kiln.task WHERE id = $1`, []any{inTime}, &status)
	if status != "building" {
		t.Fatalf("the task within its grace is %s", status)
	}
	if ev := b.events(t, "janitor.timeout"); len(ev) != 1 || ev[0]["actor"] != b.role || ev[0]["builder"] != "b1" {
		t.Fatalf("janitor.timeout events %v", ev)
	}
	// The builder's next heartbeat is refused (it then kills the build).
	if n := b.exec(t, `UPDATE kiln.task SET heartbeat_at = now() WHERE id = $1 AND attempt = 1 AND builder = 'b1' AND status = 'building'`, taskID); n != 0 {
		t.Fatalf("heartbeat of a timed-out attempt updated %d rows", n)
	}
}

// TestStaleBuilderWritesAreRefused: a builder declared lost comes back and
// writes for its old attempt (heartbeat, log, finish) as its own role; none
// of it changes anything, and the new attempt's writes work.
func TestStaleBuilderWritesAreRefused(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	r1, r2 := loginRole(t, b.db, "builder", "kiln_builder"), loginRole(t, b.db, "builder", "kiln_builder")
	b1, b2 := b.connectAs(t, r1), b.connectAs(t, r2)
	// Each builder row belongs to its own login role (row-level security).
	b.exec(t, "UPDATE kiln.builder SET role = $1 WHERE name = 'b1'", r1)
	b.exec(t, "UPDATE kiln.builder SET role = $1 WHERE name = 'b2'", r2)
	jobID, taskID, _ := b.submitTask(t, 2)
	b.take(t, taskID, "b1")
	b.silence(t, taskID, "b1")
	if c := b.round(t, Upkeep); c.Requeued != 1 {
		t.Fatalf("counts %+v", c)
	}
	b.take(t, taskID, "b2")

	ctx := context.Background()
	heartbeat := func(pool *pgxpool.Pool, attempt int, builder string) ([]int64, error) {
		return task.Heartbeat(ctx, pool, builder, []task.Held{{Task: taskID, Attempt: attempt}})
	}
	finish := func(pool *pgxpool.Pool, attempt int, builder string) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			_, err := task.Finish(ctx, tx, task.Attempt{Task: taskID, Number: attempt, Builder: builder}, task.Result{Status: task.Succeeded})
			return err
		})
	}

	// The stale builder b1, attempt 1.
	if fenced, err := heartbeat(b1, 1, "b1"); err != nil || len(fenced) != 1 {
		t.Fatalf("stale heartbeat: fenced %v, %v", fenced, err)
	}
	if err := task.Log(ctx, b1, task.Attempt{Task: taskID, Number: 1, Builder: "b1"}, 0, "late line\n", false); !errors.Is(err, task.ErrStale) {
		t.Fatalf("stale log: %v", err)
	}
	if err := finish(b1, 1, "b1"); !errors.Is(err, task.ErrStale) {
		t.Fatalf("stale finish: %v", err)
	}
	var status, a1, a2 string
	var holder *string
	var logs int
	b.scan(t, `SELECT t.status, t.builder, (SELECT status FROM kiln.attempt WHERE task_id = t.id AND attempt = 1),
		(SELECT status FROM kiln.attempt WHERE task_id = t.id AND attempt = 2), (SELECT count(*) FROM kiln.log_chunk WHERE task_id = t.id)
		FROM kiln.task t WHERE t.id = $1`, []any{taskID}, &status, &holder, &a1, &a2, &logs)
	if status != "building" || holder == nil || *holder != "b2" || a1 != "lost" || a2 != "building" || logs != 0 {
		t.Fatalf("after stale writes: task %s by %v, attempts %s/%s, %d log chunks", status, holder, a1, a2, logs)
	}

	// The current builder b2, attempt 2: the same writes work.
	if fenced, err := heartbeat(b2, 2, "b2"); err != nil || len(fenced) != 0 {
		t.Fatalf("current heartbeat: fenced %v, %v", fenced, err)
	}
	if err := task.Log(ctx, b2, task.Attempt{Task: taskID, Number: 2, Builder: "b2"}, 0, "line\n", false); err != nil {
		t.Fatalf("current log: %v", err)
	}
	if err := finish(b2, 2, "b2"); err != nil {
		t.Fatalf("current finish: %v", err)
	}
	var jobStatus string
	b.scan(t, `SELECT t.status, j.status FROM kiln.task t JOIN kiln.job j ON j.id = t.job_id WHERE t.id = $1`, []any{taskID}, &status, &jobStatus)
	if status != "succeeded" || jobStatus != "succeeded" {
		t.Fatalf("task %s job %s after the current finish", status, jobStatus)
	}
	// A round now cancels nothing and requeues nothing; the one success stands.
	if c := b.round(t, Upkeep); c.Requeued != 0 || c.JobsRecomputed != 0 {
		t.Fatalf("round after success: %+v", c)
	}
	var successes int
	b.scan(t, `SELECT count(*) FROM kiln.attempt WHERE task_id = $1 AND status = 'succeeded'`, []any{taskID}, &successes)
	if successes != 1 {
		t.Fatalf("%d successful attempts of job %d, want exactly 1", successes, jobID)
	}
}

// TestTwoJanitorsNeverBothAct runs two janitors (own roles, own
// connections) against the same lost tasks at the same moment, several
// times; each task must be taken back exactly once.
func TestTwoJanitorsNeverBothAct(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	other, err := New(b.connectAs(t, loginRole(t, b.db, "janitor", "kiln_janitor")), testConfig(), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	const tasks = 6
	var ids []int64
	for i := 0; i < tasks; i++ {
		_, id, _ := b.submitTask(t, 2)
		b.take(t, id, []string{"b1", "b2"}[i%2])
		ids = append(ids, id)
	}
	for _, id := range ids {
		b.exec(t, `UPDATE kiln.task SET heartbeat_at = now() - interval '10 minutes' WHERE id = $1`, id)
	}
	for round := 0; round < 3; round++ {
		var (
			wg     sync.WaitGroup
			start  = make(chan struct{})
			counts [2]Counts
			errs   [2]error
		)
		for i, jan := range []*Janitor{b.jan, other} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				counts[i], errs[i] = jan.Round(b.ctx, Upkeep)
			}()
		}
		close(start)
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: %v / %v", round, errs[0], errs[1])
		}
		if got := counts[0].Requeued + counts[1].Requeued; round == 0 && got != tasks || round > 0 && got != 0 {
			t.Fatalf("round %d: requeued %d + %d", round, counts[0].Requeued, counts[1].Requeued)
		}
		t.Logf("round %d: janitors requeued %d and %d", round, counts[0].Requeued, counts[1].Requeued)
	}
	for _, id := range ids {
		var lostCount, events, lostAttempts int
		b.scan(t, `SELECT lost_count, (SELECT count(*) FROM kiln.event WHERE kind = 'janitor.requeue' AND task_id = $1),
			(SELECT count(*) FROM kiln.attempt WHERE task_id = $1 AND status = 'lost') FROM kiln.task WHERE id = $1`,
			[]any{id}, &lostCount, &events, &lostAttempts)
		if lostCount != 1 || events != 1 || lostAttempts != 1 {
			t.Fatalf("task %d: lost_count %d, %d requeue events, %d lost attempts; want 1 each", id, lostCount, events, lostAttempts)
		}
	}
}
