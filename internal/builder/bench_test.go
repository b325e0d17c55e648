package builder

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/kiln-build/kiln/internal/cli"
	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/split"
	"github.com/kiln-build/kiln/internal/submit"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
	"github.com/kiln-build/kiln/riverjob"
	"github.com/kiln-build/kiln/schema"
)

// benchSource is a file the noop backend accepts as a package.
func benchSource(b *testing.B) string {
	p := filepath.Join(b.TempDir(), "bench-1-1.src.rpm")
	if err := os.WriteFile(p, []byte("noop"), 0o644); err != nil {
		b.Fatal(err)
	}
	return p
}

func quietConfig(b *testing.B, slots int) Config {
	cfg := testConfig(b, "bench")
	cfg.Slots = slots
	cfg.Logger = discardLogger()
	return cfg
}

// BenchmarkSubmitToStart measures, with an idle builder, the time until
// the builder takes a task (task.started_at), over KILN_BENCH_LATENCY_JOBS
// jobs (default 200) submitted one after the other:
//
//   - from=river-job: from the commit of the task and its River job
//     (seeded as the splitter would) to the take;
//   - from=submit: from the commit of kiln submit's transaction (a real
//     SRPM, as a kiln_submitter role) through the splitter's validation and
//     split (its River client as kiln-splitter runs it) to the take.
//
// make bench runs from=submit over 500 jobs (docs/performance.md).
func BenchmarkSubmitToStart(b *testing.B) {
	n := benchCount(b, "KILN_BENCH_LATENCY_JOBS", 200)
	b.Run("from=river-job", func(b *testing.B) {
		f := newFarm(b)
		f.platform(b, "bench", "x86_64", "rpm", "noop", time.Hour, "")
		_, pool := f.builderPool(b, 1)
		src := benchSource(b)
		start(b, pool, quietConfig(b, 1))
		for range b.N {
			var lat []time.Duration
			for range n {
				_, task := f.submit(b, "bench", "retry", src)
				submitted := time.Now()
				lat = append(lat, f.startedAfter(b, "id", task, submitted))
			}
			reportPercentiles(b, lat, 50, 99)
		}
	})
	b.Run("from=submit", func(b *testing.B) {
		f := newFarm(b)
		f.platform(b, "bench", "x86_64", "rpm", "noop", time.Hour, "")
		f.exec(b, "INSERT INTO kiln.bucket (name, open) VALUES ('devel', true)")
		submitter, err := submit.New(f.loginPool(b, "kiln_submitter", 4))
		if err != nil {
			b.Fatal(err)
		}
		splitPool := f.loginPool(b, "kiln_splitter", 8)
		splitter, err := split.NewRiverClient(splitPool, split.New(splitPool, split.DefaultMaxFileSize), discardLogger(), 2)
		if err != nil {
			b.Fatal(err)
		}
		if err := splitter.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { splitter.Stop(context.Background()) }) //nolint:errcheck
		_, pool := f.builderPool(b, 1)
		start(b, pool, quietConfig(b, 1))
		srpm := testpkg.SRPM(b, testpkg.Spec{Name: "bench"})
		ctx := context.Background()
		for range b.N {
			var lat []time.Duration
			for range n {
				res, err := submitter.Submit(ctx, submit.Request{Bucket: "devel", Platforms: []string{"bench"}, Files: []string{srpm}})
				if err != nil {
					b.Fatal(err)
				}
				committed := time.Now()
				lat = append(lat, f.startedAfter(b, "job_id", res.JobID, committed))
			}
			reportPercentiles(b, lat, 50, 99)
		}
	})
}

// startedAfter waits for the task whose column (id or job_id) is id to
// succeed and returns how long after since it started.
func (f *farm) startedAfter(b *testing.B, column string, id int64, since time.Time) time.Duration {
	ctx := context.Background()
	var startedAt *time.Time
	waitFor(b, "the task to finish", func() bool {
		var st string
		err := f.db.Pool.QueryRow(ctx, "SELECT status, started_at FROM kiln.task WHERE "+column+" = $1", id).Scan(&st, &startedAt)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			b.Fatal(err)
		}
		return st == "succeeded"
	})
	return startedAt.Sub(since)
}

// loginPool creates a login role in group (roles are cluster-wide, so its
// name is unique) and connects as it.
func (f *farm) loginPool(b *testing.B, group string, conns int32) *pgxpool.Pool {
	role := strings.TrimPrefix(group, "kiln_") + "_" + randomHex(5)
	f.exec(b, fmt.Sprintf("CREATE ROLE %s LOGIN IN ROLE %s", role, group))
	b.Cleanup(func() { _, _ = f.db.Pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+role) })
	pool, err := dbconn.Open(context.Background(), dbconn.Config{URL: f.db.URLAs(role), AppName: "kiln-bench", MaxConns: conns})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(pool.Close)
	return pool
}

// benchCount reads a count from the environment, or returns def.
func benchCount(b *testing.B, env string, def int) int {
	s := os.Getenv(env)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		b.Fatalf("%s=%q: want a positive number", env, s)
	}
	return n
}

// reportPercentiles reports the given percentiles of lat in milliseconds
// (as p50-ms, p99-ms, ...).
func reportPercentiles(b *testing.B, lat []time.Duration, ps ...int) {
	slices.Sort(lat)
	for _, p := range ps {
		i := min(len(lat)*p/100, len(lat)-1)
		b.ReportMetric(float64(lat[i].Microseconds())/1000, fmt.Sprintf("p%d-ms", p))
	}
	b.ReportMetric(float64(len(lat)), "samples")
}

// BenchmarkThroughput measures tasks per second from the insert of a task
// and its River job (as the splitter makes them) to the task's end (River
// fetch, take, noop build, log, artifacts, finish) for one builder with 1,
// 4 and 16 slots and for four builders with one slot each (each its own
// database role and pool, as on four hosts), and a bare River
// insert-and-work loop on the same database with as many River clients and
// workers; kiln's rate over River's is the ratio reported. Each run moves
// max(200, 50×slots in all) tasks.
func BenchmarkThroughput(b *testing.B) {
	for _, c := range []struct {
		name            string
		builders, slots int
	}{
		{"slots=1", 1, 1}, {"slots=4", 1, 4}, {"slots=16", 1, 16}, {"builders=4", 4, 1},
	} {
		n := max(200, 50*c.builders*c.slots)
		b.Run(c.name, func(b *testing.B) {
			f := newFarm(b)
			f.platform(b, "bench", "x86_64", "rpm", "noop", time.Hour, "")
			for range c.builders {
				_, pool := f.builderPool(b, c.slots)
				start(b, pool, quietConfig(b, c.slots))
			}
			src := benchSource(b)
			bare := bareRiverRate(b, f, c.builders, c.slots, n)
			for range b.N {
				began := time.Now()
				var last int64
				for range n {
					_, last = f.submit(b, "bench", "retry", src)
				}
				waitFor(b, "every task to finish", func() bool {
					var left int
					f.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM kiln.task WHERE status <> 'succeeded' AND id <= $1", last).Scan(&left)
					return left == 0
				})
				rate := float64(n) / time.Since(began).Seconds()
				b.ReportMetric(rate, "tasks/s")
				b.ReportMetric(bare, "river-jobs/s")
				b.ReportMetric(rate/bare, "ratio")
			}
		})
	}
}

type benchArgs struct{}

func (benchArgs) Kind() string { return "bench_noop" }

type benchWorker struct {
	river.WorkerDefaults[benchArgs]
}

func (benchWorker) Work(context.Context, *river.Job[benchArgs]) error { return nil }

// bareRiverRate inserts n River jobs one transaction each and works them
// with plain River clients (as many as builders, each with workers
// workers), returning jobs per second.
func bareRiverRate(b *testing.B, f *farm, clients, workers, n int) float64 {
	ctx := context.Background()
	ws := river.NewWorkers()
	river.AddWorker(ws, benchWorker{})
	var inserter *river.Client[pgx.Tx]
	for range clients {
		client, err := river.NewClient(riverpgxv5.New(f.db.Pool), &river.Config{
			Schema: schema.RiverSchema, Queues: map[string]river.QueueConfig{"bare": {MaxWorkers: workers}},
			Workers: ws, Logger: discardLogger(), FetchCooldown: riverjob.BuilderFetchCooldown,
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := client.Start(ctx); err != nil {
			b.Fatal(err)
		}
		defer client.Stop(ctx) //nolint:errcheck
		inserter = client
	}
	began := time.Now()
	for range n {
		if _, err := inserter.Insert(ctx, benchArgs{}, &river.InsertOpts{Queue: "bare"}); err != nil {
			b.Fatal(err)
		}
	}
	waitFor(b, "bare River jobs", func() bool {
		var done int
		f.db.Pool.QueryRow(ctx, "SELECT count(*) FROM river.river_job WHERE kind = 'bench_noop' AND state = 'completed'").Scan(&done)
		return done == n
	})
	return float64(n) / time.Since(began).Seconds()
}

// BenchmarkLiveLog measures live log latency: a real rpmbuild build (in the
// sandbox) prints 100 lines stamped with the wall clock, 70 ms apart, and
// `kiln log -f` (the CLI's own code, in process) follows the task; each
// line's latency is the time it reached kiln log's output minus its stamp.
// The path is the build's pipe, the builder's log batching
// (Config.LogFlush), the INSERT and NOTIFY kiln_log, and kiln log's LISTEN
// and SELECT. It also reports the log rows (one NOTIFY each) stored per
// build. KILN_BENCH_LOG_FLUSH (a duration) sets Config.LogFlush, for
// comparing batchings. One job per iteration: run with -benchtime 1x.
func BenchmarkLiveLog(b *testing.B) {
	f := newFarm(b)
	f.platform(b, "bench-rpm", "x86_64", "rpm", "rpmbuild", time.Hour, "")
	_, pool := f.builderPool(b, 1)
	cfg := testConfig(b, "bench-rpm")
	cfg.Logger = discardLogger()
	if s := os.Getenv("KILN_BENCH_LOG_FLUSH"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			b.Fatalf("KILN_BENCH_LOG_FLUSH=%q: want a positive duration", s)
		}
		cfg.LogFlush = d
	}
	start(b, pool, cfg)
	srpm := testpkg.SRPM(b, testpkg.Spec{Name: "livelog",
		Build: `for i in $(seq 1 100); do echo "kiln-bench-line $(date +%s%N)"; sleep 0.07; done`})
	var (
		lat  []time.Duration
		rows int
	)
	for range b.N {
		_, task := f.submit(b, "bench-rpm", "retry", srpm)
		out := &stampedLines{}
		app := cli.App()
		app.Writer, app.ErrWriter = out, out
		if err := app.RunContext(context.Background(), []string{"kiln", "--config", "/dev/null", "--db", f.db.URL, "log", "-f", fmt.Sprintf("t%d", task)}); err != nil {
			b.Fatalf("kiln log -f: %v", err)
		}
		if len(out.lat) != 100 {
			b.Fatalf("kiln log -f printed %d stamped lines, want 100", len(out.lat))
		}
		lat = append(lat, out.lat...)
		var n int
		if err := f.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM kiln.log_chunk WHERE task_id = $1", task).Scan(&n); err != nil {
			b.Fatal(err)
		}
		rows += n
	}
	reportPercentiles(b, lat, 50, 99)
	b.ReportMetric(float64(rows)/float64(b.N), "rows/build")
}

// stampedLines is kiln log's output: for every line "kiln-bench-line NANOS"
// it records how long after NANOS the line arrived.
type stampedLines struct {
	partial []byte
	lat     []time.Duration
}

func (s *stampedLines) Write(p []byte) (int, error) {
	now := time.Now()
	s.partial = append(s.partial, p...)
	for {
		i := slices.Index(s.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		line := string(s.partial[:i])
		s.partial = s.partial[i+1:]
		if stamp, ok := strings.CutPrefix(line, "kiln-bench-line "); ok {
			ns, err := strconv.ParseInt(stamp, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("line %q: %w", line, err)
			}
			s.lat = append(s.lat, now.Sub(time.Unix(0, ns)))
		}
	}
}
