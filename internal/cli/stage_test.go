package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// A task whose build dependencies could not be installed ends failed at
// the stage unsatisfiable, with the reason naming what is missing: kiln
// jobs puts the stage next to the platform (also in --json), kiln show has
// it in its STAGE column and the reason in full.
func TestJobsAndShowUnsatisfiable(t *testing.T) {
	t.Parallel()
	f, url := seed(t)
	p := f.DB.Pool
	const reason = "unsatisfiable build dependencies: kiln-user_1.0.dsc (kiln-base:amd64 (>= 1.2))"
	job := farmtest.Submit(t, p, f.Alice, "devel", []string{farmtest.Bookworm}, farmtest.File{Name: "kiln-user_1.0.dsc", Data: []byte("dsc of kiln-user")})
	id := farmtest.Split(t, p, job, farmtest.Bookworm)[0]
	farmtest.Enqueue(t, p, id)
	farmtest.FailAt(t, p, id, farmtest.Take(t, p, id, "b1"), task.StageUnsatisfiable, reason)

	out := must(t, url, 0, []string{"jobs", "--mine", "--status", "failed"}, fmt.Sprint(job))
	var line string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, fmt.Sprint(job)+" ") {
			line = l
		}
	}
	if !strings.Contains(line, "(bookworm-amd64: unsatisfiable)") {
		t.Fatalf("kiln jobs: the line of job %d lacks the stage:\n%s", job, out)
	}
	var list struct {
		Jobs []struct {
			ID    int64
			Tasks []struct {
				Platform     string
				FailureStage *string `json:"failure_stage"`
			}
		}
	}
	mustJSON(t, url, &list, "jobs", "--mine", "--status", "failed")
	found := false
	for _, j := range list.Jobs {
		if j.ID == job {
			found = len(j.Tasks) == 1 && j.Tasks[0].FailureStage != nil && *j.Tasks[0].FailureStage == "unsatisfiable"
		}
	}
	if !found {
		t.Fatalf("kiln jobs --json: job %d lacks failure_stage unsatisfiable: %+v", job, list)
	}

	out = must(t, url, 0, []string{"show", fmt.Sprint(job)}, "STAGE", reason)
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "bookworm-amd64") && strings.Contains(l, reason) {
			if fields := strings.Fields(l); len(fields) < 4 || fields[3] != "unsatisfiable" {
				t.Fatalf("kiln show: the task's STAGE is not unsatisfiable:\n%s", out)
			}
			return
		}
	}
	t.Fatalf("kiln show: no task line with the reason:\n%s", out)
}
