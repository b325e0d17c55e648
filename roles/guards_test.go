package roles_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/kiln-build/kiln/riverjob"
)

// TestPeopleTouchOnlyTheirOwnValidateRiverJobs: River's insert (INSERT ...
// ON CONFLICT DO UPDATE ... RETURNING) works for a person's own validate
// River job, and nothing else a person may do reaches another River job.
func TestPeopleTouchOnlyTheirOwnValidateRiverJobs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFarm(t)
	alice, bob := f.login("alice_", "kiln_submitter"), f.login("bob_", "kiln_submitter")
	adm := f.login("admin_", "kiln_admin")

	// Each inserts the validate River job of their own job through River,
	// as kiln submit does.
	insert := func(role string, job int64, args river.JobArgs) (int64, error) {
		t.Helper()
		pool, err := pgxpool.New(ctx, f.db.URLAs(role))
		if err != nil {
			t.Fatal(err)
		}
		defer pool.Close()
		rc, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Schema: "river"})
		if err != nil {
			t.Fatal(err)
		}
		var id int64
		err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			res, err := rc.InsertTx(ctx, tx, args, nil)
			if err == nil {
				id = res.Job.ID
			}
			return err
		})
		return id, err
	}
	aliceJob, bobJob, admJob := f.submit(alice, "public"), f.submit(bob, "public"), f.submit(adm, "public")
	aliceRJ, err := insert(alice, aliceJob, riverjob.ValidateArgs{JobID: aliceJob})
	if err != nil {
		t.Fatalf("alice inserting her validate River job: %v", err)
	}
	if _, err := insert(adm, admJob, riverjob.ValidateArgs{JobID: admJob}); err != nil {
		t.Fatalf("an admin inserting the validate River job of their job: %v", err)
	}
	// Not for someone else's job, not another kind or queue.
	if _, err := insert(bob, aliceJob, riverjob.ValidateArgs{JobID: aliceJob}); err == nil {
		t.Error("bob inserted a validate River job for alice's job")
	}
	if _, err := insert(bob, bobJob, riverjob.BuildArgs{TaskID: 1, JobID: bobJob, Platform: "p1"}); err == nil {
		t.Error("bob inserted a build River job")
	}
	f.refused(bob, "row-level security", `INSERT INTO river.river_job (args, kind, max_attempts, queue, state)
		VALUES (jsonb_build_object('job_id', $1::bigint), 'validate', 1, 'build-p1', 'available')`, bobJob)
	f.refused(bob, "row-level security", `INSERT INTO river.river_job (args, kind, max_attempts, queue, state)
		VALUES (jsonb_build_object('job_id', $1::bigint), 'validate', 1, 'incoming', 'completed')`, bobJob)

	// Nobody but the daemons changes a River job: not bob's, not alice's
	// own, not even an admin's (cancelling goes through kiln.cancel_job).
	for _, role := range []string{bob, alice, adm} {
		if n := f.exec(role, `UPDATE river.river_job SET kind = 'validate' WHERE id = $1`, aliceRJ); n != 0 {
			t.Errorf("%s updated alice's River job", role)
		}
		f.refused(role, "permission denied", `UPDATE river.river_job SET state = 'cancelled', finalized_at = now() WHERE id = $1`, aliceRJ)
		f.refused(role, "permission denied", `DELETE FROM river.river_job WHERE id = $1`, aliceRJ)
	}
	if n := f.int(bob, `SELECT count(*) FROM river.river_job WHERE id = $1`, aliceRJ); n != 0 {
		t.Error("bob sees alice's River job")
	}
	if n := f.int(adm, `SELECT count(*) FROM river.river_job`); n != 2 {
		t.Errorf("an admin sees %d River jobs, want all 2", n)
	}
	var state string
	if err := f.conn("postgres").QueryRow(ctx, `SELECT state::text FROM river.river_job WHERE id = $1`, aliceRJ).Scan(&state); err != nil || state != "available" {
		t.Fatalf("alice's River job is %q (%v), want available", state, err)
	}
}

// TestTasksMoveOnlyAlongTheProtocol: the farm's roles cannot skip steps of
// the task protocol. Builders and the janitor have no UPDATE on tasks at
// all; the splitter may insert only waiting (or skipped) tasks.
func TestTasksMoveOnlyAlongTheProtocol(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	alice := f.login("alice_", "kiln_submitter")
	splitter, janitor := f.login("splitter_", "kiln_splitter"), f.login("janitor_", "kiln_janitor")
	b1 := f.login("builder_a", "kiln_builder")
	f.register(b1, "one")
	job := f.submit(alice, "public")
	t1 := f.task(splitter, job)

	// No direct move at all for builders and the janitor; the splitter
	// cannot create a task in a later state.
	const denied = "permission denied"
	for _, role := range []string{b1, janitor} {
		f.refused(role, denied, `UPDATE kiln.task SET status = 'succeeded', finished_at = now() WHERE id = $1`, t1)
		f.refused(role, denied, `UPDATE kiln.task SET status = 'building', builder = 'one', attempt = attempt + 5, started_at = now(), heartbeat_at = now() WHERE id = $1`, t1)
		f.refused(role, denied, `UPDATE kiln.task SET heartbeat_at = now() WHERE id = $1`, t1)
	}
	f.refused(splitter, "is not a move", `INSERT INTO kiln.task (job_id, platform, status, finished_at) VALUES ($1, 'p1', 'succeeded', now())`, f.submit(alice, "public"))

	// The protocol's own moves work, once each.
	if n := f.take(b1, "one", t1); n != 1 {
		t.Fatalf("take: attempt %d", n)
	}
	if n := f.int(b1, `SELECT count(*) FROM kiln.task_heartbeat('one', ARRAY[$1::bigint], '{1}')`, t1); n != 0 {
		t.Fatalf("heartbeat of a held attempt: %d fenced", n)
	}
	// A finish names a final status a builder may give.
	f.refusedCode(b1, "22023", `SELECT kiln.task_finish('one', $1, 1, 'lost', 'x', NULL, false, '{}', '{}', '{}', '{}')`, t1)
	f.refusedCode(b1, "22023", `SELECT kiln.task_finish('one', $1, 1, 'pending', 'x', NULL, false, '{}', '{}', '{}', '{}')`, t1)
	if !f.finish(b1, "one", t1, 1, "failed") {
		t.Fatal("finishing a held attempt was refused")
	}
	// Nothing leaves a final state.
	if f.finish(b1, "one", t1, 1, "succeeded") {
		t.Error("a finished attempt was finished again")
	}
	if n := f.take(b1, "one", t1); n != 0 {
		t.Fatalf("a finished task was taken again")
	}
	// The splitter records validation only on jobs still waiting for it.
	if n := f.exec(splitter, `UPDATE kiln.job SET reason = 'rewritten' WHERE id = $1`, job); n != 0 {
		t.Errorf("the splitter changed a job that was no longer submitted")
	}
}

// TestOnlyTheJanitorWritesEventsAndOnlyItsOwn: events are history; besides
// the triggers and the task protocol's functions, only the janitor writes
// them (janitor.* ones).
func TestOnlyTheJanitorWritesEventsAndOnlyItsOwn(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	alice := f.login("alice_", "kiln_submitter")
	janitor := f.login("janitor_", "kiln_janitor")
	job := f.submit(alice, "public")
	for _, group := range []string{"kiln_submitter", "kiln_splitter", "kiln_admin", "kiln_builder"} {
		f.refused(f.login("ev_", group), "permission denied", `INSERT INTO kiln.event (kind, job_id, new_status) VALUES ('job.status', $1, 'succeeded')`, job)
	}
	// A builder's builder.recover events are written by kiln.task_recover.
	f.refused(f.login("ev_", "kiln_builder"), "permission denied", `INSERT INTO kiln.event (kind, job_id) VALUES ('builder.recover', $1)`, job)
	f.refused(janitor, "row-level security", `INSERT INTO kiln.event (kind, job_id, new_status) VALUES ('job.status', $1, 'succeeded')`, job)
	f.exec(janitor, `INSERT INTO kiln.event (kind, job_id) VALUES ('janitor.recompute', $1)`, job)
}
