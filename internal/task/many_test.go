package task_test

import (
	"context"
	"errors"
	"testing"

	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// TakeMany and FinishMany give each task of a batch its own outcome, in
// order: of three tasks, two pending ones are taken and the one already
// building is not; of three finishes, a success stores its log's end and
// its artifact, a failure at a farm's stage is retried, and the attempt not
// held is refused alone (ErrStale) with nothing of it written.
func TestTakeManyAndFinishManyGiveEachTaskItsOwnOutcome(t *testing.T) {
	t.Parallel()
	f := newProtocolFarm(t, 3)
	ctx := context.Background()
	p := f.pool
	var tasks, jobs []int64
	for range 3 {
		job, id := f.pendingTask(t)
		tasks, jobs = append(tasks, id), append(jobs, job)
	}
	ok, retried, busy := tasks[0], tasks[1], tasks[2]
	farmtest.Take(t, p, busy, "b1")

	var reqs []task.Taking
	for i := range tasks {
		reqs = append(reqs, task.Taking{Task: tasks[i], Job: jobs[i], Platform: "el9-x86_64"})
	}
	taken, err := task.TakeMany(ctx, p, "b1", reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{1, 1, 0} {
		if taken[i].Err != nil || taken[i].Attempt != want {
			t.Errorf("take of task %d: attempt %d, %v; want attempt %d", tasks[i], taken[i].Attempt, taken[i].Err, want)
		}
	}
	if taken[0].Policy == "" || taken[0].Timeout <= 0 {
		t.Errorf("a taken task's policy and timeout: %+v", taken[0])
	}

	pkg := []byte("the package")
	done, err := task.FinishMany(ctx, p, "b1", []task.Finishing{
		{Task: ok, Attempt: 1, Result: task.Result{Status: task.Succeeded, LogTail: &task.LogBatch{Seq: 0, Text: "built\n"},
			Artifacts: []task.Artifact{{Kind: "package", Name: "x.rpm", Data: pkg}}}},
		{Task: retried, Attempt: 1, Result: task.Result{Status: task.Failed, Reason: "disk full", FailureStage: task.StageOutOfDisk}},
		{Task: busy, Attempt: 2, Result: task.Result{Status: task.Succeeded, LogTail: &task.LogBatch{Seq: 0, Text: "forged\n"},
			Artifacts: []task.Artifact{{Kind: "package", Name: "y.rpm", Data: []byte("forged")}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if done[0].Err != nil || done[0].Retried || done[1].Err != nil || !done[1].Retried || !errors.Is(done[2].Err, task.ErrStale) {
		t.Fatalf("finishes: %+v", done)
	}
	for _, c := range []struct {
		task                 int64
		status               string
		artifacts, logChunks int64
	}{{ok, "succeeded", 1, 1}, {retried, "pending", 0, 0}, {busy, "building", 0, 0}} {
		var status string
		var artifacts, chunks int64
		if err := p.QueryRow(ctx, `SELECT status, (SELECT count(*) FROM kiln.artifact a WHERE a.task_id = t.id),
				(SELECT count(*) FROM kiln.log_chunk l WHERE l.task_id = t.id) FROM kiln.task t WHERE id = $1`, c.task).
			Scan(&status, &artifacts, &chunks); err != nil {
			t.Fatal(err)
		}
		if status != c.status || artifacts != c.artifacts || chunks != c.logChunks {
			t.Errorf("task %d: %s with %d artifacts and %d log chunks; want %s, %d, %d",
				c.task, status, artifacts, chunks, c.status, c.artifacts, c.logChunks)
		}
	}
}
