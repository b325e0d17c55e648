package builder

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

// BenchmarkCancelToStop measures how long a cancel takes to reach a
// running build: from the call of kiln.cancel_job to the moment the
// builder stops the build, over
// KILN_BENCH_CANCELS cancels (default 50) of builds that would otherwise
// run for an hour. The builder learns of it from NOTIFY kiln_task, asks the
// database whether it still holds the attempt (a payload is only a hint)
// and cancels the build's context, which kills the build's processes
// (docs/scaling.md, "Live logs and cancels").
func BenchmarkCancelToStop(b *testing.B) {
	n := benchCount(b, "KILN_BENCH_CANCELS", 50)
	f := newFarm(b)
	f.platform(b, "bench", "x86_64", "rpm", "noop", 2*time.Hour, `{"sleep": "1h"}`)
	_, pool := f.builderPool(b, 1)
	src := benchSource(b)
	stopped := make(chan int64, 1)
	cfg := quietConfig(b, 1)
	cfg.Logger = slog.New(stopHandler{stopped: stopped})
	start(b, pool, cfg)
	ctx := context.Background()
	for range b.N {
		var lat []time.Duration
		for range n {
			job, task := f.submit(b, "bench", "retry", src)
			waitFor(b, "the build to start", func() bool {
				status, _, _ := f.taskStatus(b, task)
				return status == "building"
			})
			cancelled := time.Now()
			if _, err := f.db.Pool.Exec(ctx, "SELECT kiln.cancel_job($1)", job); err != nil {
				b.Fatal(err)
			}
			select {
			case id := <-stopped:
				if id != task {
					b.Fatalf("the builder stopped task %d, want %d", id, task)
				}
				lat = append(lat, time.Since(cancelled))
			case <-time.After(time.Minute):
				b.Fatalf("task %d's build was not stopped a minute after its cancel", task)
			}
		}
		reportPercentiles(b, lat, 50, 99)
	}
	b.ReportMetric(0, "ns/op")
}

// stopHandler is a slog.Handler that reports the task of each "attempt
// fenced off; stopping its build" record, at the moment it is logged.
type stopHandler struct{ stopped chan<- int64 }

func (h stopHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h stopHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h stopHandler) WithGroup(string) slog.Handler            { return h }
func (h stopHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "attempt fenced off; stopping its build" {
		return nil
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "task" {
			h.stopped <- a.Value.Int64()
			return false
		}
		return true
	})
	return nil
}
