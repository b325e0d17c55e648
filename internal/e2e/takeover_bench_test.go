package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"
)

// BenchmarkKillSplitterToSplit measures, over 5 kills, the time from killing
// a kiln-splitter with SIGKILL in the middle of splitting a job (its split
// waits for the job's row lock, which the benchmark holds and lets go right
// after the kill) to the job split by the other splitter, with the
// janitor's fast test flags (rounds every second). Both ends are database
// clock readings: clock_timestamp() right after the kill and the job's
// validated_at. Each job must end with exactly one task. Figures are
// reported, not asserted:
//
//	.ci/with-cluster go test ./internal/e2e -run '^$' -bench KillSplitterToSplit -benchtime 1x
//
// With KILN_BENCH_DEFAULTS=1 the janitor runs its rounds at the default
// interval instead, over 3 kills.
func BenchmarkKillSplitterToSplit(b *testing.B) {
	kills := 5
	var janitorFlags []string
	if os.Getenv("KILN_BENCH_DEFAULTS") == "1" {
		kills = 3
		janitorFlags = []string{"--interval", "15s"} // the flag's default, after the fast test flags
	}
	f := newFarm(b)
	f.startJanitor(b, f.role(b, "kiln_janitor"), append([]string{"--log-level", "warn"}, janitorFlags...)...)
	role := f.role(b, "kiln_splitter")
	splitters := map[string]*proc{}
	start := func() {
		p := f.startSplitter(b, role)
		splitters[splitterID(b, p)] = p
	}
	start()
	start()
	for range b.N {
		var times []time.Duration
		for i := range kills {
			job, held := f.submitHeld(b, quick(b, fmt.Sprintf("kiln-split-kill%d", i)))
			var id string
			waitFor(b, fmt.Sprintf("a splitter to take job %d", job), func() bool {
				_ = f.db.Pool.QueryRow(context.Background(), `SELECT attempted_by[1] FROM river.river_job
					WHERE kind = 'validate' AND args->>'job_id' = $1::bigint::text AND state = 'running'`, job).Scan(&id)
				return id != ""
			})
			f.waitSplitting(b, job, id)
			splitters[id].kill(b)
			delete(splitters, id)
			var killedAt, validatedAt time.Time
			f.scan(b, `SELECT clock_timestamp()`, nil, &killedAt)
			if err := held.Rollback(context.Background()); err != nil {
				b.Fatal(err)
			}
			f.waitValidated(b, job)
			f.scan(b, `SELECT validated_at FROM kiln.job WHERE id = $1`, []any{job}, &validatedAt)
			if n := f.count(b, `SELECT count(*) FROM kiln.task WHERE job_id = $1`, job); n != 1 {
				b.Fatalf("job %d has %d tasks, want 1", job, n)
			}
			times = append(times, validatedAt.Sub(killedAt))
			start() // the killed splitter restarts, for the next kill
		}
		slices.Sort(times)
		b.ReportMetric(sortedMedian(times).Seconds(), "median-s")
		b.ReportMetric(times[len(times)-1].Seconds(), "worst-s")
		b.ReportMetric(times[0].Seconds(), "best-s")
		b.Logf("kill to split by the other splitter, %d kills, sorted: %v", kills, times)
	}
}

// sortedMedian is the middle of sorted times.
func sortedMedian(times []time.Duration) time.Duration {
	n := len(times)
	if n%2 == 0 {
		return (times[n/2-1] + times[n/2]) / 2
	}
	return times[n/2]
}
