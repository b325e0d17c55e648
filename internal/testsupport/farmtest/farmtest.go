// Package farmtest puts a test database into the states a running farm
// produces, through the same transitions the processes make: a person's
// submit transaction (as that person's login role), the splitter's split and
// River job, a builder's take, log, finish and artifacts, the janitor's
// requeue of a lost attempt, and cancel. Tests of everything that reads the farm (the CLI, the
// web interface, psql reports) seed with it, and drive live updates with the
// same calls while the code under test runs.
//
// The helpers fail the test on any error; they take the superuser pool of a
// pgtest.DB.
package farmtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/riverjob"
)

// Person creates a login role named prefix_<db suffix> that is a member of
// group (kiln_submitter, kiln_admin, ...), and drops it when the test ends.
// Role names are cluster-wide, so the suffix keeps parallel tests apart.
func Person(t testing.TB, db *pgtest.DB, prefix, group string) string {
	t.Helper()
	name := prefix + "_" + strings.TrimPrefix(db.Name, "kiln_test_")
	exec(t, db.Pool, fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE %s", name, group))
	t.Cleanup(func() {
		// The role owns nothing; job rows name it but do not depend on it.
		_, _ = db.Pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+name)
	})
	return name
}

// Platform adds a platform (rpm with rpmbuild when arch is x86_64 or
// aarch64, deb with dpkg otherwise).
func Platform(t testing.TB, pool *pgxpool.Pool, name, arch string) {
	t.Helper()
	format, backend := "rpm", "rpmbuild"
	if arch != "x86_64" && arch != "aarch64" {
		format, backend = "deb", "dpkg"
	}
	exec(t, pool, `INSERT INTO kiln.platform (name, arch, package_format, backend) VALUES ($1, $2, $3, $4)`, name, arch, format, backend)
}

// Bucket adds an open bucket.
func Bucket(t testing.TB, pool *pgxpool.Pool, name string) {
	t.Helper()
	exec(t, pool, `INSERT INTO kiln.bucket (name, open) VALUES ($1, true)`, name)
}

// Builder registers a builder of the given platforms, online (with a fresh
// heartbeat) or offline.
func Builder(t testing.TB, pool *pgxpool.Pool, name string, slots int, online bool, platforms ...string) {
	t.Helper()
	ctx := t.Context()
	state := "offline"
	if online {
		state = "online"
	}
	inTx(t, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `INSERT INTO kiln.builder (name, host, slots, state, heartbeat_at, started_at, version)
			VALUES ($1, $1 || '.example.org', $2, $3, now(), now(), 'test')`, name, slots, state); err != nil {
			return err
		}
		for _, p := range platforms {
			if _, err := tx.Exec(ctx, `INSERT INTO kiln.builder_platform (builder, platform) VALUES ($1, $2)`, name, p); err != nil {
				return err
			}
		}
		return nil
	})
}

// File is a source package to submit.
type File struct {
	Name string // file name, such as hello-1.0-1.src.rpm
	Data []byte
}

// Submit does what kiln submit does in one transaction: stores the files as
// blobs and inserts the job and its packages, the latter as role (SET LOCAL
// SESSION AUTHORIZATION, so session_user is the person and the grants of
// kiln_submitter apply). Files ending in .dsc are Debian packages, others SRPMs.
func Submit(t testing.TB, pool *pgxpool.Pool, role, bucket string, platforms []string, files ...File) int64 {
	t.Helper()
	ctx := t.Context()
	var id int64
	inTx(t, pool, func(tx pgx.Tx) error {
		// The blobs are stored before switching to the person: blob.Put
		// names kiln.blob.verified_at, which kiln_submitter may not set.
		sums := make([]blob.Info, len(files))
		for i, f := range files {
			info, err := blob.Put(ctx, tx, bytes.NewReader(f.Data), false)
			if err != nil {
				return err
			}
			sums[i] = info
		}
		if _, err := tx.Exec(ctx, "SET LOCAL SESSION AUTHORIZATION "+pgx.Identifier{role}.Sanitize()); err != nil {
			return err
		}
		key := make([]byte, 8)
		_, _ = rand.Read(key)
		if err := tx.QueryRow(ctx, `INSERT INTO kiln.job (bucket, platforms, submission_key) VALUES ($1, $2, $3) RETURNING id`,
			bucket, platforms, "test-"+hex.EncodeToString(key)).Scan(&id); err != nil {
			return err
		}
		for i, f := range files {
			info := sums[i]
			format := "srpm"
			if strings.HasSuffix(f.Name, ".dsc") {
				format = "dsc"
			}
			if _, err := tx.Exec(ctx, `INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size) VALUES ($1, $2, $3, $4, $5, $6)`,
				id, i, f.Name, format, info.Sum[:], info.Size); err != nil {
				return err
			}
		}
		return nil
	})
	return id
}

// Split does what the splitter does with a valid job: records the parsed
// package names (from file names shaped name-version-release.src.rpm or
// name_version.dsc) and creates one pending task per platform. It returns
// the task ids in the order of platforms.
func Split(t testing.TB, pool *pgxpool.Pool, jobID int64, platforms ...string) []int64 {
	t.Helper()
	ctx := t.Context()
	var ids []int64
	inTx(t, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `UPDATE kiln.package SET
			name = coalesce(substring(file_name FROM '^(.+)-[^-]+-[^-]+\.src\.rpm$'), substring(file_name FROM '^([^_]+)_')),
			version = coalesce(substring(file_name FROM '^.+-([^-]+)-[^-]+\.src\.rpm$'), substring(file_name FROM '^[^_]+_([^-]+)')),
			release = coalesce(substring(file_name FROM '^.+-[^-]+-([^-]+)\.src\.rpm$'), substring(file_name FROM '^[^_]+_[^-]+-(.+)\.dsc$'))
			WHERE job_id = $1`, jobID); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE kiln.job SET validated_at = now() WHERE id = $1`, jobID); err != nil {
			return err
		}
		for _, p := range platforms {
			id, err := task.Create(ctx, tx, jobID, p)
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	return ids
}

// Enqueue does the rest of what the splitter does for a task: inserts its
// build River job (in the platform's queue, with the job's priority) and
// records it in task.river_job_id, in one transaction. A running builder of
// the platform then takes the task. It returns the River job's id.
func Enqueue(t testing.TB, pool *pgxpool.Pool, taskID int64) int64 {
	t.Helper()
	ctx := t.Context()
	inserter, err := riverjob.NewInserter(pool, nil)
	if err != nil {
		t.Fatal(err)
	}
	var id int64
	inTx(t, pool, func(tx pgx.Tx) error {
		var args riverjob.BuildArgs
		var priority int
		if err := tx.QueryRow(ctx, `SELECT t.job_id, t.platform, j.priority FROM kiln.task t JOIN kiln.job j ON j.id = t.job_id
			WHERE t.id = $1`, taskID).Scan(&args.JobID, &args.Platform, &priority); err != nil {
			return fmt.Errorf("task %d: %w", taskID, err)
		}
		args.TaskID = taskID
		res, err := inserter.InsertTx(ctx, tx, args, &river.InsertOpts{Priority: priority})
		if err != nil {
			return err
		}
		id = res.Job.ID
		return task.SetRiverJob(ctx, tx, taskID, id)
	})
	return id
}

// Invalidate does what the splitter does with a bad job.
func Invalidate(t testing.TB, pool *pgxpool.Pool, jobID int64, reason string) {
	t.Helper()
	exec(t, pool, `UPDATE kiln.job SET status = 'invalid', reason = $2, validated_at = now(), finished_at = now() WHERE id = $1`, jobID, reason)
}

// Skip does what the splitter does for a platform the packages exclude: the
// task is created skipped.
func Skip(t testing.TB, pool *pgxpool.Pool, jobID int64, platform, reason string) int64 {
	t.Helper()
	var id int64
	inTx(t, pool, func(tx pgx.Tx) error {
		var err error
		id, err = task.CreateSkipped(t.Context(), tx, jobID, platform, reason)
		return err
	})
	return id
}

// Take takes a pending task for builder through the task protocol
// (task.Take), as a builder does, and returns the attempt number. The
// builder must be registered by the pool's role (Builder does that).
func Take(t testing.TB, pool *pgxpool.Pool, taskID int64, builder string) int {
	t.Helper()
	ctx := t.Context()
	var attempt int
	inTx(t, pool, func(tx pgx.Tx) error {
		var jobID int64
		var platform string
		if err := tx.QueryRow(ctx, `SELECT job_id, platform FROM kiln.task WHERE id = $1`, taskID).Scan(&jobID, &platform); err != nil {
			return fmt.Errorf("task %d: %w", taskID, err)
		}
		taken, err := task.Take(ctx, tx, builder, taskID, jobID, platform)
		if err == nil && taken.Attempt == 0 {
			err = fmt.Errorf("task %d is not pending", taskID)
		}
		attempt = taken.Attempt
		return err
	})
	return attempt
}

// held names the attempt as its builder holds it.
func held(t testing.TB, pool *pgxpool.Pool, taskID int64, attempt int) task.Attempt {
	t.Helper()
	var builder *string
	if err := pool.QueryRow(t.Context(), `SELECT builder FROM kiln.task WHERE id = $1`, taskID).Scan(&builder); err != nil {
		t.Fatalf("task %d: %v", taskID, err)
	}
	if builder == nil {
		t.Fatalf("attempt %d of task %d is not building", attempt, taskID)
	}
	return task.Attempt{Task: taskID, Number: attempt, Builder: *builder}
}

// Log stores one batch of log lines of an attempt, as a builder does
// (task.Log).
func Log(t testing.TB, pool *pgxpool.Pool, taskID int64, attempt, seq int, text string) {
	t.Helper()
	if err := task.Log(t.Context(), pool, held(t, pool, taskID, attempt), seq, text, false); err != nil {
		t.Fatalf("attempt %d of task %d: %v", attempt, taskID, err)
	}
}

// Artifact is a file a builder stores when it finishes.
type Artifact struct {
	Kind string // package, log, buildinfo or other
	Name string
	Data []byte
}

// Finish does what a builder does at the end of an attempt (task.Finish):
// stores the artifacts' bytes and ends the attempt and the task as status
// (succeeded, failed or timed_out) with its artifacts, in one transaction.
func Finish(t testing.TB, pool *pgxpool.Pool, taskID int64, attempt int, status, reason string, artifacts ...Artifact) {
	t.Helper()
	ctx := t.Context()
	a := held(t, pool, taskID, attempt)
	inTx(t, pool, func(tx pgx.Tx) error {
		r := task.Result{Status: task.Status(status), Reason: reason}
		for _, f := range artifacts {
			info, err := blob.Put(ctx, tx, bytes.NewReader(f.Data), true)
			if err != nil {
				return err
			}
			r.Artifacts = append(r.Artifacts, task.Artifact{Kind: f.Kind, Name: f.Name, SHA256: info.Sum[:], Size: info.Size})
		}
		_, err := task.Finish(ctx, tx, a, r)
		return err
	})
}

// FailAt ends an attempt as failed at stage (a task.Stage constant) with
// reason, through task.Finish as a builder does.
func FailAt(t testing.TB, pool *pgxpool.Pool, taskID int64, attempt int, stage, reason string) {
	t.Helper()
	a := held(t, pool, taskID, attempt)
	inTx(t, pool, func(tx pgx.Tx) error {
		_, err := task.Finish(t.Context(), tx, a, task.Result{Status: task.Failed, Reason: reason, FailureStage: stage})
		return err
	})
}

// Lose does what the janitor does with a task whose builder went silent
// (task.TakeBackLost): the attempt is lost, the task waits again (or ends
// as lost past max_lost), the builder is offline. The task's heartbeat is
// first moved an hour back, as if that long had passed.
func Lose(t testing.TB, pool *pgxpool.Pool, taskID int64) {
	t.Helper()
	ctx := t.Context()
	inTx(t, pool, func(tx pgx.Tx) error {
		var builder string
		if err := tx.QueryRow(ctx, `UPDATE kiln.task SET heartbeat_at = now() - interval '1 hour'
			WHERE id = $1 AND status = 'building' RETURNING builder`, taskID).Scan(&builder); err != nil {
			return fmt.Errorf("task %d is not building: %w", taskID, err)
		}
		if _, ok, err := task.TakeBackLost(ctx, tx, taskID, time.Minute); err != nil || !ok {
			return fmt.Errorf("taking back task %d: %v", taskID, err)
		}
		_, err := tx.Exec(ctx, `UPDATE kiln.builder SET state = 'offline' WHERE name = $1`, builder)
		return err
	})
}

// Cancel cancels a job as role (task.CancelJob).
func Cancel(t testing.TB, pool *pgxpool.Pool, role string, jobID int64) {
	t.Helper()
	ctx := t.Context()
	inTx(t, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SET LOCAL SESSION AUTHORIZATION "+pgx.Identifier{role}.Sanitize()); err != nil {
			return err
		}
		_, err := task.CancelJob(ctx, tx, jobID)
		return err
	})
}

func exec(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	ctx := t.Context()
	if _, err := pool.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", strings.Fields(sql)[0], err)
	}
}

func inTx(t testing.TB, pool *pgxpool.Pool, fn func(pgx.Tx) error) {
	t.Helper()
	ctx := t.Context()
	if err := pgx.BeginFunc(ctx, pool, fn); err != nil {
		t.Fatal(err)
	}
}
