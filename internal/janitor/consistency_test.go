package janitor

import (
	"testing"
)

func TestPendingTaskGetsARiverJob(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	_, gone, goneRJ := b.submitTask(t, 4)       // its River job was deleted
	_, stuck, stuckRJ := b.submitTask(t, 1)     // its builder died between fetch and take
	_, done, doneRJ := b.submitTask(t, 2)       // its River job was completed without a take
	_, healthy, healthyRJ := b.submitTask(t, 3) // nothing wrong
	b.exec(t, `DELETE FROM river.river_job WHERE id = $1`, goneRJ)
	b.exec(t, `UPDATE river.river_job SET state = 'running', attempt = 1, attempted_at = now() - interval '10 minutes' WHERE id = $1`, stuckRJ)
	b.exec(t, `UPDATE river.river_job SET state = 'completed', attempt = 1, attempted_at = now(), finalized_at = now() WHERE id = $1`, doneRJ)

	c := b.round(t, Upkeep)
	if c.RiverJobsInserted != 3 || c.RiverJobsCancelled != 0 {
		t.Fatalf("counts %+v, want 3 River jobs inserted", c)
	}
	for _, tc := range []struct {
		task, old int64
		priority  int
	}{{gone, goneRJ, 4}, {stuck, stuckRJ, 1}, {done, doneRJ, 2}} {
		var rj int64
		var state, queue string
		var prio int
		var args map[string]any
		b.scan(t, `SELECT r.id, r.state::text, r.queue, r.priority, r.args FROM kiln.task t JOIN river.river_job r ON r.id = t.river_job_id WHERE t.id = $1`,
			[]any{tc.task}, &rj, &state, &queue, &prio, &args)
		if rj == tc.old || state != "available" || queue != "build-"+platform || prio != tc.priority || args["task_id"] != float64(tc.task) {
			t.Fatalf("task %d: River job %d (old %d) %s in %s priority %d args %v", tc.task, rj, tc.old, state, queue, prio, args)
		}
	}
	var stuckState string
	b.scan(t, `SELECT state::text FROM river.river_job WHERE id = $1`, []any{stuckRJ}, &stuckState)
	if stuckState != "cancelled" {
		t.Fatalf("the stuck River job is %s, want cancelled", stuckState)
	}
	var rj int64
	b.scan(t, `SELECT river_job_id FROM kiln.task WHERE id = $1`, []any{healthy}, &rj)
	if rj != healthyRJ {
		t.Fatalf("the healthy task's River job changed from %d to %d", healthyRJ, rj)
	}
	ev := b.events(t, "janitor.repair_river")
	if len(ev) != 3 {
		t.Fatalf("%d janitor.repair_river events, want 3: %v", len(ev), ev)
	}
	for _, e := range ev {
		if e["actor"] != b.role || e["detail"].(map[string]any)["action"] != "inserted" {
			t.Fatalf("event %v", e)
		}
	}
	// Repaired: the next round has nothing to do.
	if c := b.round(t, Upkeep); c.RiverJobsInserted != 0 {
		t.Fatalf("second round %+v", c)
	}
}

func TestRiverJobOfFinishedTaskIsCancelled(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	jobID, taskID, _ := b.submitTask(t, 2)
	_, cancelledTask, cancelledRJ := b.submitTask(t, 2)
	b.take(t, taskID, "b1")
	b.exec(t, `UPDATE kiln.attempt SET status = 'succeeded', finished_at = now() WHERE task_id = $1`, taskID)
	b.exec(t, `UPDATE kiln.task SET status = 'succeeded', builder = NULL, finished_at = now() WHERE id = $1`, taskID)
	// A second River job for the finished task (say a retried insert).
	var extra int64
	b.scan(t, `INSERT INTO river.river_job (kind, args, queue, max_attempts, priority, state)
		VALUES ('build', jsonb_build_object('task_id', $1::bigint, 'job_id', $2::bigint, 'platform', $3::text), 'build-'||$3, 25, 2, 'available') RETURNING id`,
		[]any{taskID, jobID, platform}, &extra)
	// A task cancelled behind River's back: its River job still waits.
	b.exec(t, `UPDATE kiln.task SET status = 'cancelled', finished_at = now(), reason = 'test' WHERE id = $1`, cancelledTask)
	// A River job whose task does not exist.
	var orphan int64
	b.scan(t, `INSERT INTO river.river_job (kind, args, queue, max_attempts, priority, state)
		VALUES ('build', jsonb_build_object('task_id', 999999, 'job_id', 1, 'platform', $1::text), 'build-'||$1, 25, 2, 'available') RETURNING id`,
		[]any{platform}, &orphan)

	// River jobs left running by River clients that died: one a horizon
	// after its task was cancelled, and one whose task finished a moment
	// ago (its builder may be recording the end right now: left alone).
	_, deadTask, deadRJ := b.submitTask(t, 2)
	b.take(t, deadTask, "b1")
	b.exec(t, `UPDATE kiln.attempt SET status = 'cancelled', finished_at = now() WHERE task_id = $1`, deadTask)
	b.exec(t, `UPDATE kiln.task SET status = 'cancelled', builder = NULL, finished_at = now() - interval '2 minutes', reason = 'test' WHERE id = $1`, deadTask)
	_, freshTask, freshRJ := b.submitTask(t, 2)
	b.take(t, freshTask, "b1")
	b.exec(t, `UPDATE kiln.attempt SET status = 'succeeded', finished_at = now() WHERE task_id = $1`, freshTask)
	b.exec(t, `UPDATE kiln.task SET status = 'succeeded', builder = NULL, finished_at = now() WHERE id = $1`, freshTask)

	c := b.round(t, Upkeep)
	if c.RiverJobsCancelled != 4 || c.RiverJobsInserted != 0 {
		t.Fatalf("counts %+v, want 4 cancelled", c)
	}
	var fresh string
	b.scan(t, `SELECT state::text FROM river.river_job WHERE id = $1`, []any{freshRJ}, &fresh)
	if fresh != "running" {
		t.Fatalf("the River job of a task finished a moment ago is %s, want it left running", fresh)
	}
	for _, id := range []int64{extra, cancelledRJ, orphan, deadRJ} {
		var state string
		b.scan(t, `SELECT state::text FROM river.river_job WHERE id = $1`, []any{id}, &state)
		if state != "cancelled" {
			t.Fatalf("River job %d is %s", id, state)
		}
	}
	statuses := map[string]bool{}
	for _, e := range b.events(t, "janitor.repair_river") {
		d := e["detail"].(map[string]any)
		if d["action"] != "cancelled" || e["actor"] != b.role {
			t.Fatalf("event %v", e)
		}
		statuses[d["task_status"].(string)] = true
	}
	if !statuses["succeeded"] || !statuses["cancelled"] || !statuses["missing"] {
		t.Fatalf("events name task statuses %v", statuses)
	}
}

func TestJobStatusIsRecomputed(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	wrong, _, _ := b.submitTask(t, 2)
	right, _, _ := b.submitTask(t, 2)
	b.exec(t, `UPDATE kiln.job SET status = 'building', started_at = now() WHERE id = $1`, wrong)

	c := b.round(t, Upkeep)
	if c.JobsRecomputed != 1 {
		t.Fatalf("counts %+v, want one job recomputed", c)
	}
	var s1, s2 string
	b.scan(t, `SELECT (SELECT status FROM kiln.job WHERE id = $1), (SELECT status FROM kiln.job WHERE id = $2)`, []any{wrong, right}, &s1, &s2)
	if s1 != "queued" || s2 != "queued" {
		t.Fatalf("job statuses %s, %s; want queued", s1, s2)
	}
	ev := b.events(t, "janitor.recompute")
	if len(ev) != 1 || ev[0]["old_status"] != "building" || ev[0]["new_status"] != "queued" || ev[0]["actor"] != b.role ||
		int64(ev[0]["job_id"].(float64)) != wrong {
		t.Fatalf("janitor.recompute events %v", ev)
	}
}
