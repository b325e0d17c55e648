package task_test

import (
	"context"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// The change triggers record every status change of a task, its attempt
// and its job, in order, with a NOTIFY for each task and job change, and
// nothing for the writes that change no status: a heartbeat, a River job
// link, a log batch (its byte count on the attempt). The triggers of
// schema/current/30_triggers.sql (statement-level for tasks and jobs, a
// WHEN clause for the attempts' updates) skip only those.
func TestChangeTriggersRecordEveryChangeAndNothingElse(t *testing.T) {
	t.Parallel()
	f := newProtocolFarm(t, 1)
	ctx := context.Background()
	p := f.pool

	listener, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Release()
	for _, ch := range []string{"kiln_task", "kiln_job"} {
		if _, err := listener.Exec(ctx, "LISTEN "+ch); err != nil {
			t.Fatal(err)
		}
	}
	// notified returns the notifications that arrived since the last
	// call, as channel:payload: those committed before a marker it sends
	// (notifications arrive in commit order).
	notified := func() []string {
		t.Helper()
		if _, err := p.Exec(ctx, `SELECT pg_notify('kiln_job', 'marker')`); err != nil {
			t.Fatal(err)
		}
		var got []string
		for {
			n, err := listener.Conn().WaitForNotification(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n.Channel == "kiln_job" && n.Payload == "marker" {
				return got
			}
			got = append(got, n.Channel+":"+n.Payload)
		}
	}
	var lastEvent int64
	// events returns the events written since the last call, as
	// kind:old->new.
	events := func() []string {
		t.Helper()
		rows, err := p.Query(ctx, `SELECT id, kind || ':' || coalesce(old_status, '') || '->' || coalesce(new_status, '')
			FROM kiln.event WHERE id > $1 AND kind IN ('job.status', 'task.status', 'attempt.status') ORDER BY id`, lastEvent)
		if err != nil {
			t.Fatal(err)
		}
		type ev struct {
			ID   int64
			What string
		}
		evs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[ev])
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range evs {
			got = append(got, e.What)
			lastEvent = e.ID
		}
		return got
	}
	expect := func(step string, wantEvents, wantNotified []string) {
		t.Helper()
		if got := events(); !slices.Equal(got, wantEvents) {
			t.Errorf("%s wrote the events %q, want %q", step, got, wantEvents)
		}
		got, want := notified(), slices.Clone(wantNotified)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s notified %q, want %q", step, got, want)
		}
	}

	job := f.submit(t)
	jobNote := fmt.Sprintf(`kiln_job:{"job" : %d}`, job)
	expect("the submit", []string{"job.status:->submitted"}, []string{jobNote})

	id := farmtest.Split(t, p, job, "el9-x86_64")[0]
	taskNote := fmt.Sprintf(`kiln_task:{"job" : %d, "task" : %d}`, job, id)
	expect("the split", []string{"task.status:->pending", "job.status:submitted->queued"}, []string{taskNote, jobNote})

	farmtest.Enqueue(t, p, id)
	expect("linking the River job", nil, nil)

	attempt := farmtest.Take(t, p, id, "b1")
	expect("the take", []string{"task.status:pending->building", "job.status:queued->building", "attempt.status:->building"},
		[]string{taskNote, jobNote})

	if fenced, err := task.Heartbeat(ctx, p, "b1", []task.Held{{Task: id, Attempt: attempt}}); err != nil || len(fenced) != 0 {
		t.Fatalf("heartbeat: fenced %v, %v", fenced, err)
	}
	expect("a heartbeat", nil, nil)

	farmtest.Log(t, p, id, attempt, 0, "line\n")
	expect("a log batch", nil, nil)
	var logBytes int64
	if err := p.QueryRow(ctx, `SELECT log_bytes FROM kiln.attempt WHERE task_id = $1 AND attempt = $2`, id, attempt).Scan(&logBytes); err != nil || logBytes != 5 {
		t.Fatalf("the attempt counts %d log bytes (%v), want 5", logBytes, err)
	}

	farmtest.Finish(t, p, id, attempt, "succeeded", "")
	expect("the finish", []string{"attempt.status:building->succeeded", "task.status:building->succeeded", "job.status:building->succeeded"},
		[]string{taskNote, jobNote})
	var status string
	if err := p.QueryRow(ctx, `SELECT status FROM kiln.job WHERE id = $1`, job).Scan(&status); err != nil || status != "succeeded" {
		t.Fatalf("the job is %s (%v), want succeeded", status, err)
	}
	// The owner's events (kiln.event_guard is not called for them) name
	// the task's job and the session's user, as the guard would stamp.
	var wrong int
	if err := p.QueryRow(ctx, `SELECT count(*) FROM kiln.event WHERE task_id = $1 AND (job_id IS DISTINCT FROM $2 OR actor <> session_user)`,
		id, job).Scan(&wrong); err != nil || wrong != 0 {
		t.Errorf("%d events of the task name another job or actor (%v)", wrong, err)
	}
}
