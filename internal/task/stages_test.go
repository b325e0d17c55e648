package task_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// The Go side's failure stages are the database's vocabulary, in order.
func TestStagesMatchTheDatabase(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	rows, err := db.Pool.Query(context.Background(), `SELECT name FROM kiln.failure_stage`)
	if err != nil {
		t.Fatal(err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	want := slices.Sorted(slices.Values(task.Stages()))
	if !slices.Equal(names, want) {
		t.Fatalf("kiln.failure_stage has %v, task.Stages() %v", names, want)
	}
}

// A failure at a farm's stage is retried through Finish, one at a
// package's stage is not, and kiln.failure_by_stage counts both.
func TestFinishRetriesAndFailureByStage(t *testing.T) {
	t.Parallel()
	f := newProtocolFarm(t, 1)
	ctx := context.Background()
	p := f.pool
	if _, err := p.Exec(ctx, `UPDATE kiln.platform SET infra_retry_backoff = '10 seconds'`); err != nil {
		t.Fatal(err)
	}
	newTask := func() int64 {
		_, id := f.pendingTask(t)
		return id
	}
	finish := func(id int64, attempt int, stage string) task.Finished {
		t.Helper()
		var fin task.Finished
		if err := pgx.BeginFunc(ctx, p, func(tx pgx.Tx) (err error) {
			fin, err = task.Finish(ctx, tx, task.Attempt{Task: id, Number: attempt, Builder: "b1"},
				task.Result{Status: task.Failed, Reason: "it broke", FailureStage: stage})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return fin
	}

	infra := newTask()
	farmtest.Take(t, p, infra, "b1")
	if fin := finish(infra, 1, task.StageOutOfDisk); !fin.Retried || fin.RetryAfter.Seconds() != 10 {
		t.Fatalf("first out-of-disk failure: %+v, want retried after 10s", fin)
	}
	farmtest.Take(t, p, infra, "b1") // the only builder online takes it again
	if fin := finish(infra, 2, task.StageOutOfDisk); !fin.Retried || fin.RetryAfter.Seconds() != 20 {
		t.Fatalf("second out-of-disk failure: %+v, want retried after 20s (doubled)", fin)
	}
	compile := newTask()
	farmtest.Take(t, p, compile, "b1")
	if fin := finish(compile, 1, task.StageBuild); fin.Retried {
		t.Fatalf("a compile failure was retried: %+v", fin)
	}
	var status, stage string
	if err := p.QueryRow(ctx, `SELECT status, failure_stage FROM kiln.task WHERE id = $1`, compile).Scan(&status, &stage); err != nil {
		t.Fatal(err)
	}
	if status != "failed" || stage != "build" {
		t.Fatalf("compile failure: task %s at %s", status, stage)
	}

	type row struct {
		Stage             string
		Infra             bool
		Attempts, Retried int64
		Tasks             int64
	}
	rows, err := p.Query(ctx, `SELECT stage, infrastructure, attempts, retried, tasks FROM kiln.failure_by_stage
		WHERE platform = 'el9-x86_64' ORDER BY stage`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[row])
	if err != nil {
		t.Fatal(err)
	}
	want := []row{{"build", false, 1, 0, 1}, {"out-of-disk", true, 2, 2, 1}}
	if !slices.Equal(got, want) {
		t.Fatalf("kiln.failure_by_stage: %+v, want %+v", got, want)
	}
}
