package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/riverjob"
)

// A kiln-splitter killed with SIGKILL in the middle of splitting a job: the
// janitor finds that no session holds the lock of its River client, makes
// the validate River job available again, and the surviving splitter
// splits the job, once.
func TestKilledSplitterValidationTakenOver(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.startJanitor(t, f.role(t, "kiln_janitor"))
	role := f.role(t, "kiln_splitter")
	a := f.startSplitter(t, role)
	aID := splitterID(t, a)

	job, held := f.submitHeld(t, quick(t, "kiln-takeover"))
	f.waitSplitting(t, job, aID)
	b := f.startSplitter(t, role)
	bID := splitterID(t, b)

	a.kill(t)
	// The dead splitter's transaction never commits: its backend finds the
	// client gone as soon as it gets the row.
	if err := held.Rollback(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.waitValidated(t, job)

	if n := f.count(t, `SELECT count(*) FROM kiln.task WHERE job_id = $1`, job); n != 1 {
		t.Fatalf("job %d has %d tasks, want 1", job, n)
	}
	var state string
	var by []string
	f.scan(t, `SELECT state::text, attempted_by FROM river.river_job WHERE kind = 'validate' AND args->>'job_id' = $1::bigint::text`,
		[]any{job}, &state, &by)
	if state != "completed" || len(by) != 2 || by[0] != aID || by[1] != bID {
		t.Fatalf("validate River job %s attempted by %v; want completed, attempted by %s then %s", state, by, aID, bID)
	}
	if n := f.count(t, `SELECT count(*) FROM kiln.event WHERE kind = 'janitor.takeover' AND job_id = $1 AND detail->>'client' = $2`, job, aID); n != 1 {
		t.Fatalf("%d janitor.takeover events for job %d, want 1", n, job)
	}
	if n := f.count(t, `SELECT count(*) FROM kiln.task t JOIN river.river_job r ON r.id = t.river_job_id WHERE t.job_id = $1 AND r.kind = 'build'`, job); n != 1 {
		t.Fatalf("job %d's task has %d build River jobs, want 1", job, n)
	}
}

var splitterClient = regexp.MustCompile(`client=(` + regexp.QuoteMeta(riverjob.SplitterIDPrefix) + `\S+)`)

// splitterID waits for a kiln-splitter to start working and returns its
// River client ID from its log.
func splitterID(t testing.TB, p *proc) string {
	t.Helper()
	p.waitLog(t, "kiln-splitter working queue")
	m := splitterClient.FindStringSubmatch(p.output())
	if m == nil {
		t.Fatalf("%s logged no River client ID:\n%s", p.name, p.output())
	}
	return m[1]
}

// submitHeld submits an SRPM as the person with its validate River job, as
// kiln submit does, while a transaction of the test holds the job's row
// lock: the splitter that fetches the validate River job checks the job and
// then waits for that lock in the middle of the split. It returns the job
// and the transaction; its end lets the split go on.
func (f *farm) submitHeld(t testing.TB, srpm string) (int64, pgx.Tx) {
	t.Helper()
	ctx := context.Background()
	data, err := os.ReadFile(srpm)
	if err != nil {
		t.Fatal(err)
	}
	p := f.db.Pool
	job := farmtest.Submit(t, p, f.person, "devel", []string{platform}, farmtest.File{Name: filepath.Base(srpm), Data: data})
	held, err := p.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = held.Rollback(context.Background()) })
	if _, err := held.Exec(ctx, `SELECT 1 FROM kiln.job WHERE id = $1 FOR UPDATE`, job); err != nil {
		t.Fatal(err)
	}
	inserter, err := riverjob.NewInserter(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inserter.Insert(ctx, riverjob.ValidateArgs{JobID: job}, nil); err != nil {
		t.Fatal(err)
	}
	return job, held
}

// waitSplitting waits until the validate River job of job is running on
// River client id and that client's split waits for the job's row lock.
func (f *farm) waitSplitting(t testing.TB, job int64, id string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to wait for job %d's lock in the middle of the split", id, job), func() bool {
		var n int
		_ = f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM river.river_job r
			WHERE r.kind = 'validate' AND r.args->>'job_id' = $1::bigint::text AND r.state = 'running'
			  AND r.attempted_by[array_upper(r.attempted_by, 1)] = $2
			  AND EXISTS (SELECT 1 FROM pg_stat_activity a WHERE a.wait_event_type = 'Lock' AND a.query LIKE '%FOR UPDATE%'
			              AND pg_has_role(a.usesysid, 'kiln_splitter', 'MEMBER') AND a.usename <> current_user)`, job, id).Scan(&n)
		return n > 0
	})
}

// waitValidated waits until job is no longer submitted.
func (f *farm) waitValidated(t testing.TB, job int64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("job %d to be split", job), func() bool {
		var status string
		_ = f.db.Pool.QueryRow(context.Background(), `SELECT status FROM kiln.job WHERE id = $1`, job).Scan(&status)
		return status != "" && status != "submitted"
	})
}
