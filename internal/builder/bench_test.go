package builder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

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

// BenchmarkSubmitToStart measures, with an idle builder, the time from
// the commit of a task's River job to the builder taking the task
// (task.started_at), over 200 jobs submitted one after the other.
func BenchmarkSubmitToStart(b *testing.B) {
	f := newFarm(b)
	f.platform(b, "bench", "x86_64", "rpm", "noop", time.Hour, "")
	_, pool := f.builderPool(b, 1)
	src := benchSource(b)
	start(b, pool, quietConfig(b, 1))
	ctx := context.Background()
	for range b.N {
		var lat []time.Duration
		for range 200 {
			_, task := f.submit(b, "bench", "retry", src)
			submitted := time.Now()
			var startedAt time.Time
			waitFor(b, "the task to finish", func() bool {
				st, _, _ := f.taskStatus(b, task)
				return st == "succeeded"
			})
			if err := f.db.Pool.QueryRow(ctx, "SELECT started_at FROM kiln.task WHERE id = $1", task).Scan(&startedAt); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, startedAt.Sub(submitted))
		}
		sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	}
}

// BenchmarkThroughput measures tasks per second end to end (submit, take,
// fetch, noop build, log, finish) for one builder with 1 and 4 slots, and a
// bare River insert-and-work loop with as many workers on the same
// database; kiln's rate over River's is the ratio reported.
func BenchmarkThroughput(b *testing.B) {
	const n = 200
	for _, slots := range []int{1, 4} {
		b.Run(fmt.Sprintf("slots=%d", slots), func(b *testing.B) {
			f := newFarm(b)
			f.platform(b, "bench", "x86_64", "rpm", "noop", time.Hour, "")
			_, pool := f.builderPool(b, slots)
			src := benchSource(b)
			start(b, pool, quietConfig(b, slots))
			bare := bareRiverRate(b, f, slots, n)
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
// with a plain River client, returning jobs per second.
func bareRiverRate(b *testing.B, f *farm, workers, n int) float64 {
	ctx := context.Background()
	ws := river.NewWorkers()
	river.AddWorker(ws, benchWorker{})
	client, err := river.NewClient(riverpgxv5.New(f.db.Pool), &river.Config{
		Schema: schema.RiverSchema, Queues: map[string]river.QueueConfig{"bare": {MaxWorkers: workers}},
		Workers: ws, Logger: discardLogger(),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := client.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer client.Stop(ctx) //nolint:errcheck
	began := time.Now()
	for range n {
		if _, err := client.Insert(ctx, benchArgs{}, &river.InsertOpts{Queue: "bare"}); err != nil {
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
