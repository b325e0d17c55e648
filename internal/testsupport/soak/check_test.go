package soak

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// restingFarm is a farm at rest as a soak leaves it: a job whose first
// task was lost once and then succeeded (with artifacts), whose second
// failed, and a job cancelled while it built, with their River jobs done.
type restingFarm struct {
	db                  *pgtest.DB
	succeeded, failed   int64 // tasks
	cancelled           int64 // task
	succeededAttempt    int
	packageArtifactBlob []byte
}

func newRestingFarm(t *testing.T) *restingFarm {
	t.Helper()
	db := pgtest.New(t)
	p := db.Pool
	alice := farmtest.Person(t, db, "alice", "kiln_submitter")
	farmtest.Platform(t, p, farmtest.EL9, "x86_64")
	farmtest.Platform(t, p, farmtest.Bookworm, "amd64")
	farmtest.Bucket(t, p, "devel")
	farmtest.Builder(t, p, "b1", 2, true, farmtest.EL9, farmtest.Bookworm)
	farmtest.Builder(t, p, "b2", 1, true, farmtest.EL9)
	f := &restingFarm{db: db}

	job := farmtest.Submit(t, p, alice, "devel", []string{farmtest.EL9, farmtest.Bookworm}, farmtest.File{Name: "hello-1-1.src.rpm", Data: []byte("hello")})
	ids := farmtest.Split(t, p, job, farmtest.EL9, farmtest.Bookworm)
	f.succeeded, f.failed = ids[0], ids[1]
	a := farmtest.Take(t, p, f.succeeded, "b2")
	farmtest.Log(t, p, f.succeeded, a, 0, "building on b2\n")
	farmtest.Lose(t, p, f.succeeded)
	// EL9 builds with the noop backend printing numbered lines, as the
	// soak's noop platforms do; its successful attempt stored them all,
	// in two batches that split a line.
	exec1(t, db, `UPDATE kiln.platform SET backend = 'noop', backend_settings = '{"lines": 3}' WHERE name = $1`, farmtest.EL9)
	f.succeededAttempt = farmtest.Take(t, p, f.succeeded, "b1")
	farmtest.Log(t, p, f.succeeded, f.succeededAttempt, 0, "noop line 1 of 3\nnoop line 2")
	farmtest.Log(t, p, f.succeeded, f.succeededAttempt, 1, " of 3\nnoop line 3 of 3\nnoop backend: nothing built for hello-1-1.src.rpm\n")
	farmtest.Finish(t, p, f.succeeded, f.succeededAttempt, "succeeded", "",
		farmtest.Artifact{Kind: "package", Name: "hello-1-1.x86_64.rpm", Data: []byte("binary rpm of hello")},
		farmtest.Artifact{Kind: "log", Name: "build.log", Data: []byte("Wrote: hello-1-1.x86_64.rpm\n")})
	a = farmtest.Take(t, p, f.failed, "b1")
	farmtest.Finish(t, p, f.failed, a, "failed", "dpkg-buildpackage exited with status 2",
		farmtest.Artifact{Kind: "log", Name: "build.log", Data: []byte("error\n")})

	other := farmtest.Submit(t, p, alice, "devel", []string{farmtest.EL9}, farmtest.File{Name: "other-1-1.src.rpm", Data: []byte("other")})
	f.cancelled = farmtest.Split(t, p, other, farmtest.EL9)[0]
	farmtest.Take(t, p, f.cancelled, "b1")
	farmtest.Cancel(t, p, alice, other)

	// River jobs as River leaves them once the tasks ended.
	for _, id := range []int64{f.succeeded, f.failed, f.cancelled} {
		exec1(t, db, `INSERT INTO river.river_job (kind, args, queue, max_attempts, priority, state, finalized_at)
			SELECT 'build', jsonb_build_object('task_id', id, 'job_id', job_id, 'platform', platform), 'build-' || platform, 25, 2, 'completed', now()
			FROM kiln.task WHERE id = $1`, id)
	}
	if err := db.Pool.QueryRow(context.Background(), `SELECT blob_sha256 FROM kiln.artifact WHERE task_id = $1 AND kind = 'package'`,
		f.succeeded).Scan(&f.packageArtifactBlob); err != nil {
		t.Fatal(err)
	}
	return f
}

func exec1(t *testing.T, db *pgtest.DB, sql string, args ...any) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// checksFailed runs Check and returns the names of the failed checks.
func checksFailed(t *testing.T, db *pgtest.DB, roots ...string) []string {
	t.Helper()
	vs, err := Check(context.Background(), db.Pool, roots)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, v := range vs {
		t.Logf("violation: %s", v)
		if !slices.Contains(names, v.Check) {
			names = append(names, v.Check)
		}
	}
	return names
}

func TestCheckPassesAFarmAtRest(t *testing.T) {
	t.Parallel()
	f := newRestingFarm(t)
	if failed := checksFailed(t, f.db, t.TempDir()); len(failed) != 0 {
		t.Fatalf("a farm at rest failed %v", failed)
	}
}

// Each broken promise is reported under its own check, and only there.
func TestCheckFindsEachViolation(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name    string
		checks  []string
		breakIt func(t *testing.T, f *restingFarm)
	}{
		{"pending task", []string{"every task final", "every job final and agreeing with its tasks"}, func(t *testing.T, f *restingFarm) {
			// Without the trigger, which would reopen the job too.
			exec1(t, f.db, `ALTER TABLE kiln.task DISABLE TRIGGER task_changed`)
			exec1(t, f.db, `UPDATE kiln.task SET status = 'pending', finished_at = NULL, reason = NULL WHERE id = $1`, f.cancelled)
		}},
		{"job disagreeing with its tasks", []string{"every job final and agreeing with its tasks"}, func(t *testing.T, f *restingFarm) {
			exec1(t, f.db, `UPDATE kiln.job SET status = 'succeeded' WHERE id = (SELECT job_id FROM kiln.task WHERE id = $1)`, f.failed)
		}},
		{"two successes", []string{"one success record per succeeded task", "every log line stored"}, func(t *testing.T, f *restingFarm) {
			// The lost attempt's late finish got through (and its log does
			// not hold what a finished build printed).
			exec1(t, f.db, `UPDATE kiln.attempt SET status = 'succeeded' WHERE task_id = $1 AND attempt = 1`, f.succeeded)
		}},
		{"success of an unsuccessful task", []string{"one success record per succeeded task"}, func(t *testing.T, f *restingFarm) {
			exec1(t, f.db, `UPDATE kiln.attempt SET status = 'succeeded' WHERE task_id = $1`, f.failed)
		}},
		{"attempt left building", []string{"no attempt still building"}, func(t *testing.T, f *restingFarm) {
			exec1(t, f.db, `UPDATE kiln.attempt SET status = 'building', finished_at = NULL WHERE task_id = $1 AND attempt = 1`, f.succeeded)
		}},
		{"artifact of a lost attempt", []string{"artifacts only from attempts their builder finished"}, func(t *testing.T, f *restingFarm) {
			exec1(t, f.db, `INSERT INTO kiln.artifact (task_id, attempt, kind, file_name, blob_sha256, size)
				SELECT task_id, 1, kind, file_name, blob_sha256, size FROM kiln.artifact WHERE task_id = $1 AND kind = 'package'`, f.succeeded)
		}},
		{"River job running for a finished task", []string{"no River job left for a finished task"}, func(t *testing.T, f *restingFarm) {
			exec1(t, f.db, `UPDATE river.river_job SET state = 'running', finalized_at = NULL, attempt = 1, attempted_at = now()
				WHERE (args->>'task_id')::bigint = $1`, f.cancelled)
		}},
		{"validate River job of a split job", []string{"no River job left for a finished task"}, func(t *testing.T, f *restingFarm) {
			exec1(t, f.db, `INSERT INTO river.river_job (kind, args, queue, max_attempts, priority, state)
				SELECT 'validate', jsonb_build_object('job_id', job_id), 'incoming', 10, 2, 'available' FROM kiln.task WHERE id = $1`, f.failed)
		}},
		{"log line lost", []string{"every log line stored"}, func(t *testing.T, f *restingFarm) {
			exec1(t, f.db, `DELETE FROM kiln.log_chunk WHERE task_id = $1 AND attempt = $2 AND seq = 1`, f.succeeded, f.succeededAttempt)
		}},
		{"log line stored twice", []string{"every log line stored"}, func(t *testing.T, f *restingFarm) {
			exec1(t, f.db, `INSERT INTO kiln.log_chunk (task_id, attempt, seq, data) VALUES ($1, $2, 2, 'noop line 3 of 3'||chr(10))`,
				f.succeeded, f.succeededAttempt)
		}},
		{"log lines out of order", []string{"every log line stored"}, func(t *testing.T, f *restingFarm) {
			exec1(t, f.db, `UPDATE kiln.log_chunk SET data = 'noop line 2 of 3'||chr(10)||'noop line 1 of 3'||chr(10)||'noop line 3 of 3'||chr(10), seq = 5
				WHERE task_id = $1 AND attempt = $2 AND seq = 1`, f.succeeded, f.succeededAttempt)
			exec1(t, f.db, `DELETE FROM kiln.log_chunk WHERE task_id = $1 AND attempt = $2 AND seq = 0`, f.succeeded, f.succeededAttempt)
		}},
		{"corrupt chunk", []string{"every blob matches its sha256"}, func(t *testing.T, f *restingFarm) {
			exec1(t, f.db, `UPDATE kiln.blob_chunk SET data = 'tampered' WHERE sha256 = $1`, f.packageArtifactBlob)
		}},
		{"artifact size", []string{"every blob matches its sha256"}, func(t *testing.T, f *restingFarm) {
			exec1(t, f.db, `UPDATE kiln.artifact SET size = size + 1 WHERE blob_sha256 = $1`, f.packageArtifactBlob)
		}},
		{"unreferenced blob", []string{"every blob referenced"}, func(t *testing.T, f *restingFarm) {
			exec1(t, f.db, `INSERT INTO kiln.blob (sha256, size, chunk_size) VALUES (sha256('stray'), 5, 262144);
				INSERT INTO kiln.blob_chunk (sha256, seq, data) VALUES (sha256('stray'), 0, 'stray')`)
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			f := newRestingFarm(t)
			c.breakIt(t, f)
			if failed := checksFailed(t, f.db); !slices.Equal(failed, c.checks) {
				t.Fatalf("failed checks %q, want %q", failed, c.checks)
			}
		})
	}
}

// A process working in a builder's work directory is a leftover build.
func TestCheckFindsLeftoverProcesses(t *testing.T) {
	t.Parallel()
	f := newRestingFarm(t)
	root := t.TempDir()
	dir := filepath.Join(root, "work", "task-1-1")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "600")
	cmd.Dir = dir
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(time.Minute); len(processesIn([]string{root})) == 0; {
		if time.Now().After(deadline) {
			t.Fatal("the sleep never showed up in /proc")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if failed := checksFailed(t, f.db, root); !slices.Equal(failed, []string{"no build process left running"}) {
		t.Fatalf("failed checks %v", failed)
	}
	if failed := checksFailed(t, f.db, t.TempDir()); len(failed) != 0 {
		t.Fatalf("another directory: failed checks %v", failed)
	}
}
