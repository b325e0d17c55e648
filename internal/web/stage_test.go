package web

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// A task whose build dependencies could not be installed, finished as a
// builder finishes it (failed at the stage unsatisfiable, the reason
// naming what is missing): the job page puts the stage next to the task's
// status, the task page in its own field and in the attempts' table, the
// API returns it, and the reporting view kiln.failure_by_stage counts it
// for the web's own role.
func TestPagesShowUnsatisfiable(t *testing.T) {
	t.Parallel()
	b := setup(t)
	f := b.f
	p := f.DB.Pool
	const reason = "unsatisfiable build dependencies: kiln-user_1.0.dsc (kiln-base:amd64 (&gt;= 1.2))"
	job := farmtest.Submit(t, p, f.Alice, "devel", []string{farmtest.Bookworm}, farmtest.File{Name: "kiln-user_1.0.dsc", Data: []byte("dsc of kiln-user")})
	id := farmtest.Split(t, p, job, farmtest.Bookworm)[0]
	farmtest.Enqueue(t, p, id)
	farmtest.FailAt(t, p, id, farmtest.Take(t, p, id, "b1"), task.StageUnsatisfiable,
		"unsatisfiable build dependencies: kiln-user_1.0.dsc (kiln-base:amd64 (>= 1.2))")

	page := b.get(t, fmt.Sprintf("/jobs/%d", job), http.StatusOK)
	contains(t, "job page", page, `<span class="st st-failed">failed</span> <span class="stage">at unsatisfiable</span>`, reason)
	page = b.get(t, fmt.Sprintf("/tasks/%d", id), http.StatusOK)
	contains(t, "task page", page, `<dt>failure stage</dt><dd class="stage">unsatisfiable</dd>`, `<td class="stage">unsatisfiable</td>`, reason)

	var api struct {
		FailureStage *string `json:"failure_stage"`
		Reason       *string `json:"reason"`
	}
	b.getJSON(t, fmt.Sprintf("/api/tasks/%d", id), &api)
	if api.FailureStage == nil || *api.FailureStage != "unsatisfiable" || api.Reason == nil {
		t.Errorf("API task %d: %+v", id, api)
	}

	pool, err := pgxpool.New(context.Background(), f.DB.URLAs(b.web))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	var attempts, tasks int64
	var infra bool
	if err := pool.QueryRow(context.Background(), `SELECT attempts, tasks, infrastructure FROM kiln.failure_by_stage
		WHERE platform = $1 AND stage = 'unsatisfiable'`, farmtest.Bookworm).Scan(&attempts, &tasks, &infra); err != nil {
		t.Fatalf("kiln.failure_by_stage as the web: %v", err)
	}
	if attempts != 1 || tasks != 1 || infra {
		t.Errorf("kiln.failure_by_stage: %d attempts in %d tasks, infrastructure %v; want 1 in 1, not the farm's fault", attempts, tasks, infra)
	}
}
