package janitor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/riverjob"
	"github.com/kiln-build/kiln/schema"
)

// The tests seed rows as the superuser the way the splitter and builders do
// (docs/protocol.md) and run the janitor as a real login role that is a
// member of kiln_janitor.

const platform = "el9-x86_64"

type bundle struct {
	ctx   context.Context
	db    *pgtest.DB // superuser pool: plays splitter and builders, and inspects
	role  string     // the janitor's login role
	jpool *pgxpool.Pool
	jan   *Janitor
	river *river.Client[pgx.Tx]
}

func setup(t *testing.T, cfg Config) *bundle {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	b := &bundle{ctx: ctx, db: db}
	b.role = loginRole(t, db, "janitor", "kiln_janitor")
	b.jpool = b.connectAs(t, b.role)
	jan, err := New(b.jpool, cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	b.jan = jan
	rc, err := river.NewClient(riverpgxv5.New(db.Pool), &river.Config{Schema: schema.RiverSchema})
	if err != nil {
		t.Fatal(err)
	}
	b.river = rc
	b.exec(t, `INSERT INTO kiln.platform (name, arch, package_format, backend) VALUES ($1, 'x86_64', 'rpm', 'rpmbuild')`, platform)
	b.exec(t, `INSERT INTO kiln.bucket (name) VALUES ('devel')`)
	for _, name := range []string{"b1", "b2"} {
		b.exec(t, `INSERT INTO kiln.builder (name, host, state, heartbeat_at, started_at) VALUES ($1, 'host-'||$1, 'online', now(), now())`, name)
		b.exec(t, `INSERT INTO kiln.builder_platform (builder, platform) VALUES ($1, $2)`, name, platform)
	}
	return b
}

// loginRole creates a login role in group (roles are cluster-wide, so the
// name is unique) and drops it when the test ends.
func loginRole(t *testing.T, db *pgtest.DB, prefix, group string) string {
	t.Helper()
	buf := make([]byte, 5)
	_, _ = rand.Read(buf)
	name := prefix + "_" + hex.EncodeToString(buf)
	if _, err := db.Pool.Exec(context.Background(), "CREATE ROLE "+name+" LOGIN IN ROLE "+group); err != nil {
		t.Fatalf("creating role %s: %v", name, err)
	}
	t.Cleanup(func() {
		// Cleanups run last-registered first: the pools using the role
		// are closed by now; the test database may still exist, which
		// does not matter as the role owns nothing.
		_, _ = db.Pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+name)
	})
	return name
}

func (b *bundle) connectAs(t *testing.T, role string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(b.ctx, b.db.URLAs(role))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func (b *bundle) exec(t *testing.T, sql string, args ...any) int64 {
	t.Helper()
	tag, err := b.db.Pool.Exec(b.ctx, sql, args...)
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(strings.Fields(sql), " "), err)
	}
	return tag.RowsAffected()
}

func (b *bundle) scan(t *testing.T, sql string, args []any, dest ...any) {
	t.Helper()
	if err := b.db.Pool.QueryRow(b.ctx, sql, args...).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", strings.Join(strings.Fields(sql), " "), err)
	}
}

// submitTask plays submit and splitter: a job with one pending task on the
// platform and its build River job. It returns the job, task and River job.
func (b *bundle) submitTask(t *testing.T, priority int) (jobID, taskID, riverJobID int64) {
	t.Helper()
	b.scan(t, `INSERT INTO kiln.job (bucket, platforms, priority, submission_key) VALUES ('devel', '{all}', $1, gen_random_uuid()::text) RETURNING id`,
		[]any{priority}, &jobID)
	b.scan(t, `INSERT INTO kiln.task (job_id, platform) VALUES ($1, $2) RETURNING id`, []any{jobID, platform}, &taskID)
	res, err := b.river.Insert(b.ctx, riverjob.BuildArgs{TaskID: taskID, JobID: jobID, Platform: platform}, &river.InsertOpts{Priority: priority})
	if err != nil {
		t.Fatal(err)
	}
	b.exec(t, `UPDATE kiln.task SET river_job_id = $2 WHERE id = $1`, taskID, res.Job.ID)
	return jobID, taskID, res.Job.ID
}

// take plays a builder taking the task: River fetches the River job, then
// the protocol's take transaction. It returns the attempt number.
func (b *bundle) take(t *testing.T, taskID int64, builder string) int32 {
	t.Helper()
	var attempt int32
	err := pgx.BeginFunc(b.ctx, b.db.Pool, func(tx pgx.Tx) error {
		var jobID, riverJob int64
		if err := tx.QueryRow(b.ctx, `SELECT job_id, river_job_id FROM kiln.task WHERE id = $1`, taskID).Scan(&jobID, &riverJob); err != nil {
			return err
		}
		if _, err := tx.Exec(b.ctx, `UPDATE river.river_job SET state = 'running', attempt = attempt + 1, attempted_at = now(),
			attempted_by = array_append(attempted_by, $2) WHERE id = $1 AND state = 'available'`, riverJob, builder); err != nil {
			return err
		}
		// As the builder's own role: the protocol checks who takes.
		var role string
		if err := tx.QueryRow(b.ctx, `SELECT role FROM kiln.builder WHERE name = $1`, builder).Scan(&role); err != nil {
			return err
		}
		if _, err := tx.Exec(b.ctx, "SET LOCAL SESSION AUTHORIZATION "+pgx.Identifier{role}.Sanitize()); err != nil {
			return err
		}
		taken, err := task.Take(b.ctx, tx, builder, taskID, jobID, platform)
		if err == nil && taken.Attempt == 0 {
			err = fmt.Errorf("task %d is not pending", taskID)
		}
		attempt = int32(taken.Attempt)
		return err
	})
	if err != nil {
		t.Fatalf("taking task %d as %s: %v", taskID, builder, err)
	}
	return attempt
}

// silence makes the task's and its builder's heartbeats older than any
// horizon the tests use.
func (b *bundle) silence(t *testing.T, taskID int64, builder string) {
	t.Helper()
	b.exec(t, `UPDATE kiln.task SET heartbeat_at = now() - interval '10 minutes' WHERE id = $1`, taskID)
	b.exec(t, `UPDATE kiln.builder SET heartbeat_at = now() - interval '10 minutes' WHERE name = $1`, builder)
}

// events returns the kinds of the janitor's events about a task, oldest first.
func (b *bundle) events(t *testing.T, kind string) []map[string]any {
	t.Helper()
	rows, err := b.db.Pool.Query(b.ctx, `SELECT jsonb_build_object('actor', actor, 'job_id', job_id, 'task_id', task_id,
		'attempt', attempt, 'builder', builder, 'old_status', old_status, 'new_status', new_status, 'detail', detail)
		FROM kiln.event WHERE kind = $1 ORDER BY id`, kind)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowTo[map[string]any])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (b *bundle) round(t *testing.T, w Work) Counts {
	t.Helper()
	c, err := b.jan.Round(b.ctx, w)
	if err != nil {
		t.Fatalf("round: %v", err)
	}
	return c
}

func testConfig() Config {
	cfg := DefaultConfig()
	cfg.Horizon = time.Minute
	return cfg
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}
