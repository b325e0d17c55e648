package builder

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/riverjob"
	"github.com/kiln-build/kiln/schema"
)

// farm is a test database with what a builder needs, seeded as superuser
// (there is no submit code on this branch: jobs are inserted directly).
type farm struct {
	db       *pgtest.DB
	inserter *river.Client[pgx.Tx]
}

func newFarm(t testing.TB) *farm {
	t.Helper()
	db := pgtest.New(t)
	inserter, err := river.NewClient(riverpgxv5.New(db.Pool), &river.Config{Schema: schema.RiverSchema, SkipUnknownJobCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	return &farm{db: db, inserter: inserter}
}

func (f *farm) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := f.db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// platform adds a platform.
func (f *farm) platform(t testing.TB, name, arch, format, backendName string, timeout time.Duration, settings string) {
	t.Helper()
	if settings == "" {
		settings = "{}"
	}
	f.exec(t, `INSERT INTO kiln.platform (name, arch, package_format, backend, backend_settings, timeout)
		VALUES ($1, $2, $3, $4, $5::jsonb, make_interval(secs => $6))`, name, arch, format, backendName, settings, timeout.Seconds())
}

// builderPool creates a login role in kiln_builder (roles are cluster-wide,
// so its name is unique) and connects as it.
func (f *farm) builderPool(t testing.TB, slots int) (string, *pgxpool.Pool) {
	t.Helper()
	role := "builder_" + randomHex(5)
	f.exec(t, fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE kiln_builder", role))
	t.Cleanup(func() { _, _ = f.db.Pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	pool, err := dbconn.Open(context.Background(), dbconn.Config{URL: f.db.URLAs(role), AppName: "kiln-builder-test", MaxConns: int32(2*slots + 6)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return role, pool
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// submit seeds a job with the given source packages (SRPM or .dsc paths;
// a .dsc's tarballs are the files next to it) and its task on platform,
// with the task's River job.
func (f *farm) submit(t testing.TB, platform, policy string, sources ...string) (job, task int64) {
	t.Helper()
	ctx := context.Background()
	tx, err := f.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if err := tx.QueryRow(ctx, `INSERT INTO kiln.job (bucket, platforms, policy, submission_key)
		VALUES ('devel', ARRAY[$1], $2, $3) RETURNING id`, platform, policy, "test-"+randomHex(8)).Scan(&job); err != nil {
		t.Fatal(err)
	}
	for seq, src := range sources {
		info, err := blob.PutFile(ctx, tx, src, false)
		if err != nil {
			t.Fatal(err)
		}
		format := "srpm"
		if strings.HasSuffix(src, ".dsc") {
			format = "dsc"
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size)
			VALUES ($1, $2, $3, $4, $5, $6)`, job, seq, filepath.Base(src), format, info.Sum[:], info.Size); err != nil {
			t.Fatal(err)
		}
		if format != "dsc" {
			continue
		}
		siblings, _ := filepath.Glob(filepath.Join(filepath.Dir(src), "*"))
		for _, s := range siblings {
			if s == src || strings.HasSuffix(s, ".dsc") {
				continue
			}
			fi, err := blob.PutFile(ctx, tx, s, false)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO kiln.package_file (job_id, seq, file_name, blob_sha256, size)
				VALUES ($1, $2, $3, $4, $5)`, job, seq, filepath.Base(s), fi.Sum[:], fi.Size); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tx.QueryRow(ctx, "INSERT INTO kiln.task (job_id, platform) VALUES ($1, $2) RETURNING id", job, platform).Scan(&task); err != nil {
		t.Fatal(err)
	}
	res, err := f.inserter.InsertTx(ctx, tx, riverjob.BuildArgs{TaskID: task, JobID: job, Platform: platform}, &river.InsertOpts{Priority: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "UPDATE kiln.task SET river_job_id = $1 WHERE id = $2", res.Job.ID, task); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return job, task
}

// running is a builder started by a test.
type running struct {
	b    *Builder
	stop func() // requests a stop and waits for Run to return
	done chan error
}

// testConfig is a builder configuration for tests: quick heartbeats and a
// work directory the build user can reach.
func testConfig(t testing.TB, platforms ...string) Config {
	t.Helper()
	work := t.TempDir()
	for _, p := range []string{work, filepath.Dir(work)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return Config{
		Name: "b-" + randomHex(4), Platforms: platforms, Slots: 1, WorkDir: work, Version: "test",
		Heartbeat: 500 * time.Millisecond, Grace: time.Second,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func start(t testing.TB, pool *pgxpool.Pool, cfg Config) *running {
	t.Helper()
	b, err := New(context.Background(), pool, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{b: b, done: make(chan error, 1)}
	go func() { r.done <- b.Run(ctx) }()
	stopped := false
	var runErr error
	r.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		runErr = <-r.done
		if runErr != nil {
			t.Errorf("builder Run: %v", runErr)
		}
	}
	t.Cleanup(r.stop)
	return r
}

// waitFor polls until cond holds (generous deadline; not a timing check).
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// taskStatus returns a task's status, attempt and reason.
func (f *farm) taskStatus(t testing.TB, task int64) (status string, attempt int, reason string) {
	t.Helper()
	var r *string
	if err := f.db.Pool.QueryRow(context.Background(), "SELECT status, attempt, reason FROM kiln.task WHERE id = $1", task).Scan(&status, &attempt, &r); err != nil {
		t.Fatal(err)
	}
	if r != nil {
		reason = *r
	}
	return
}

// waitStatus waits until the task has one of the statuses and returns it.
func (f *farm) waitStatus(t testing.TB, task int64, statuses ...string) string {
	t.Helper()
	var got string
	waitFor(t, fmt.Sprintf("task %d to become %v", task, statuses), func() bool {
		got, _, _ = f.taskStatus(t, task)
		for _, s := range statuses {
			if got == s {
				return true
			}
		}
		return false
	})
	return got
}

// logOf returns the stored log of an attempt.
func (f *farm) logOf(t testing.TB, task int64, attempt int) string {
	t.Helper()
	var s string
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT coalesce(string_agg(data, '' ORDER BY seq), '')
		FROM kiln.log_chunk WHERE task_id = $1 AND attempt = $2`, task, attempt).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// artifact is a stored artifact with its content.
type artifact struct {
	kind, name string
	sum        blob.Sum
	size       int64
	content    []byte
}

func (f *farm) artifacts(t testing.TB, task int64, attempt int) map[string]artifact {
	t.Helper()
	ctx := context.Background()
	rows, err := f.db.Pool.Query(ctx, `SELECT kind, file_name, blob_sha256, size FROM kiln.artifact
		WHERE task_id = $1 AND attempt = $2`, task, attempt)
	if err != nil {
		t.Fatal(err)
	}
	var list []artifact
	for rows.Next() {
		var a artifact
		var sum []byte
		if err := rows.Scan(&a.kind, &a.name, &sum, &a.size); err != nil {
			t.Fatal(err)
		}
		a.sum = blob.Sum(sum)
		list = append(list, a)
	}
	rows.Close()
	out := map[string]artifact{}
	for _, a := range list {
		var buf bytes.Buffer
		if _, err := blob.WriteTo(ctx, f.db.Pool, a.sum, &buf); err != nil {
			t.Fatalf("artifact %s: %v", a.name, err)
		}
		a.content = buf.Bytes()
		out[a.name] = a
	}
	return out
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
