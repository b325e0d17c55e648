package builder

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// attemptRow is one attempt as the retry tests read it.
type attemptRow struct {
	Attempt int
	Builder string
	Status  string
	Stage   *string
	Retried bool
	Reason  *string
}

func (f *farm) attempts(t testing.TB, task int64) []attemptRow {
	t.Helper()
	rows, err := f.db.Pool.Query(context.Background(), `SELECT attempt, builder, status, failure_stage, retried, reason
		FROM kiln.attempt WHERE task_id = $1 ORDER BY attempt`, task)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowToStructByPos[attemptRow])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func (f *farm) retryEvents(t testing.TB, task int64) int {
	t.Helper()
	var n int
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM kiln.event WHERE task_id = $1 AND kind = 'task.retry'`, task).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// startBroken starts a builder whose sandbox stops working once it runs:
// its bubblewrap is a link to the real one that is removed when the builder
// is online, so later builds cannot start their sandbox (a fault of the
// builder, not of any package).
func (f *farm) startBroken(t testing.TB, platform string) Config {
	t.Helper()
	real, err := exec.LookPath("bwrap")
	if err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(t.TempDir(), "bwrap")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t, platform)
	cfg.Bwrap = link
	ready := &readySignal{Handler: cfg.Logger.Handler(), ready: make(chan struct{})}
	cfg.Logger = slog.New(ready)
	_, pool := f.builderPool(t, 1)
	start(t, pool, cfg)
	// Its start-up check of the sandbox has passed once it says it is ready.
	select {
	case <-ready.ready:
	case <-time.After(3 * time.Minute):
		t.Fatal("the builder did not get ready")
	}
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// readySignal passes log records on and closes ready at "builder ready".
type readySignal struct {
	slog.Handler
	once  sync.Once
	ready chan struct{}
}

func (r *readySignal) Handle(ctx context.Context, rec slog.Record) error {
	if rec.Message == "builder ready" {
		r.once.Do(func() { close(r.ready) })
	}
	return r.Handler.Handle(ctx, rec)
}

// A sandbox that fails to start is the farm's fault: the task is retried
// without anyone's action, goes to the other builder once one is online,
// and succeeds there; every retry is in the attempts and the events.
func TestInfrastructureFailureRetriedOnAnotherBuilder(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "bookworm-amd64", "amd64", "deb", "dpkg", time.Hour, "")
	f.exec(t, `UPDATE kiln.platform SET max_infra_retries = 20, infra_retry_backoff = '1 second' WHERE name = 'bookworm-amd64'`)
	broken := f.startBroken(t, "bookworm-amd64")
	dsc := testpkg.DSC(t, testpkg.Deb{Name: "kiln-retried", Version: "1.0"})
	_, task := f.submit(t, "bookworm-amd64", "retry", dsc)
	waitFor(t, "the first retry", func() bool { return f.retryEvents(t, task) >= 1 })
	_, goodPool := f.builderPool(t, 1)
	good := testConfig(t, "bookworm-amd64")
	start(t, goodPool, good)

	if st := f.waitStatus(t, task, "succeeded", "failed", "timed_out"); st != "succeeded" {
		_, _, reason := f.taskStatus(t, task)
		t.Fatalf("task %s: %s", st, reason)
	}
	atts := f.attempts(t, task)
	last := atts[len(atts)-1]
	if last.Builder != good.Name || last.Status != "succeeded" || last.Stage != nil || last.Retried {
		t.Fatalf("last attempt %+v; want succeeded on %s", last, good.Name)
	}
	for _, a := range atts[:len(atts)-1] {
		if a.Builder != broken.Name || a.Status != "failed" || a.Stage == nil || *a.Stage != "prepare-environment" || !a.Retried ||
			a.Reason == nil || !strings.Contains(*a.Reason, "fork/exec") {
			t.Fatalf("earlier attempt %+v; want failed at prepare-environment on %s, retried, naming the failed start", a, broken.Name)
		}
	}
	var retries int
	var stage *string
	f.db.Pool.QueryRow(context.Background(), `SELECT infra_retries, failure_stage FROM kiln.task WHERE id = $1`, task).Scan(&retries, &stage)
	if retries != len(atts)-1 || stage != nil || f.retryEvents(t, task) != retries {
		t.Fatalf("task: %d retries, stage %v, %d retry events; want %d, none", retries, stage, f.retryEvents(t, task), len(atts)-1)
	}
}

// With no other builder, the farm's fault is retried up to the platform's
// limit and the task then ends failed, saying so.
func TestInfrastructureFailureEndsAfterTheLimit(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "bookworm-amd64", "amd64", "deb", "dpkg", time.Hour, "")
	f.exec(t, `UPDATE kiln.platform SET max_infra_retries = 2, infra_retry_backoff = '0 seconds' WHERE name = 'bookworm-amd64'`)
	f.startBroken(t, "bookworm-amd64")
	dsc := testpkg.DSC(t, testpkg.Deb{Name: "kiln-unlucky", Version: "1.0"})
	_, task := f.submit(t, "bookworm-amd64", "retry", dsc)

	if st := f.waitStatus(t, task, "succeeded", "failed", "timed_out"); st != "failed" {
		t.Fatalf("task %s, want failed", st)
	}
	atts := f.attempts(t, task)
	if len(atts) != 3 {
		t.Fatalf("%d attempts, want 3 (the first and two retries): %+v", len(atts), atts)
	}
	for i, a := range atts {
		if a.Status != "failed" || a.Stage == nil || *a.Stage != "prepare-environment" || a.Retried != (i < 2) {
			t.Fatalf("attempt %+v", a)
		}
	}
	_, _, reason := f.taskStatus(t, task)
	if !strings.Contains(reason, "not retried: 2 retries of 2 used") || !strings.Contains(reason, "fork/exec") {
		t.Fatalf("reason %q", reason)
	}
	if n := f.retryEvents(t, task); n != 2 {
		t.Fatalf("%d retry events, want 2", n)
	}
}

// A package that fails to compile is the package's fault: never retried.
func TestCompileFailureNotRetried(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.platform(t, "bookworm-amd64", "amd64", "deb", "dpkg", time.Hour, "")
	dsc := testpkg.DSC(t, testpkg.Deb{Name: "kiln-broken", Version: "1.0", Build: "echo DOES-NOT-COMPILE; exit 1"})
	_, task := f.submit(t, "bookworm-amd64", "retry", dsc)
	_, pool := f.builderPool(t, 1)
	start(t, pool, testConfig(t, "bookworm-amd64"))

	if st := f.waitStatus(t, task, "succeeded", "failed", "timed_out"); st != "failed" {
		t.Fatalf("task %s, want failed", st)
	}
	atts := f.attempts(t, task)
	if len(atts) != 1 || atts[0].Stage == nil || *atts[0].Stage != "build" || atts[0].Retried {
		t.Fatalf("attempts %+v; want one, failed at build, not retried", atts)
	}
	var stage string
	f.db.Pool.QueryRow(context.Background(), `SELECT failure_stage FROM kiln.task WHERE id = $1`, task).Scan(&stage)
	if stage != "build" || f.retryEvents(t, task) != 0 {
		t.Fatalf("task stage %q, %d retry events", stage, f.retryEvents(t, task))
	}
}
