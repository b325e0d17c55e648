package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/proctest"
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

// BenchmarkKillFetchedToTaken measures, over 5 kills, what a builder killed
// with SIGKILL costs the River job it had fetched but not yet taken the
// task of: the victim builds two platforms with one slot, builds a task of
// the first and has fetched the build River job of a task of the second,
// which waits for the slot. The figure is the time from the kill to that
// task taken by another builder (its attempt 1 started), with the
// janitor's fast test flags; the first task's rebuild (attempt 2 started)
// is reported next to it. Figures are reported, not asserted:
//
//	.ci/with-cluster go test ./internal/e2e -run '^$' -bench KillFetchedToTaken -benchtime 1x
//
// With KILN_BENCH_DEFAULTS=1 the janitor and builders run with their
// default horizon, interval and heartbeat instead, over 3 kills.
func BenchmarkKillFetchedToTaken(b *testing.B) {
	const second = "el8-x86_64"
	kills := 5
	var janitorFlags, builderFlags []string
	if os.Getenv("KILN_BENCH_DEFAULTS") == "1" {
		kills = 3
		janitorFlags = []string{"--horizon", "20s", "--interval", "15s"} // the flags' defaults
		builderFlags = []string{"--heartbeat", "5s"}
	}
	f := newFarm(b)
	farmtest.Platform(b, f.db.Pool, second, "x86_64")
	f.startJanitor(b, f.role(b, "kiln_janitor"), append([]string{"--log-level", "warn"}, janitorFlags...)...)
	builderRole := f.role(b, "kiln_builder")
	both := append([]string{"--platform", second}, builderFlags...)
	rescuer := f.startBuilder(b, "rescuer", builderRole, both...)
	rescuer.waitLog(b, "builder ready")
	for range b.N {
		var fetched, rebuilt []time.Duration
		for i := range kills {
			f.exec(b, `UPDATE kiln.builder SET enabled = false WHERE name = 'rescuer'`)
			rescuer.waitLogCount(b, "builder disabled", i+1)
			name := fmt.Sprintf("victim%d", i)
			victim := f.startBuilder(b, name, builderRole, both...)
			marker := proctest.SleepMarker()
			_, building := f.submit(b, hangingFirstAttempt(b, fmt.Sprintf("kiln-slot%d", i), marker))
			f.waitBuilding(b, building, 1, name, "SLEEPING-NOW")
			waiting := f.submitOn(b, second, quick(b, fmt.Sprintf("kiln-fetched%d", i)))
			waitFor(b, fmt.Sprintf("%s to fetch task %d's River job", name, waiting), func() bool {
				var n int
				_ = f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM kiln.task t JOIN river.river_job r ON r.id = t.river_job_id
					WHERE t.id = $1 AND t.status = 'pending' AND r.state = 'running' AND r.attempted_by[1] LIKE 'kiln-builder.' || $2 || '.%'`,
					waiting, name).Scan(&n)
				return n > 0
			})
			f.exec(b, `UPDATE kiln.builder SET enabled = true WHERE name = 'rescuer'`)
			rescuer.waitLogCount(b, "builder enabled", i+1)

			victim.kill(b)
			var killedAt, takenAt, rebuiltAt time.Time
			f.scan(b, `SELECT clock_timestamp()`, nil, &killedAt)
			f.waitTask(b, waiting, "succeeded")
			f.waitTask(b, building, "succeeded")
			f.scan(b, `SELECT started_at FROM kiln.attempt WHERE task_id = $1 AND attempt = 1`, []any{waiting}, &takenAt)
			f.scan(b, `SELECT started_at FROM kiln.attempt WHERE task_id = $1 AND attempt = 2`, []any{building}, &rebuiltAt)
			fetched = append(fetched, takenAt.Sub(killedAt))
			rebuilt = append(rebuilt, rebuiltAt.Sub(killedAt))
			proctest.NoLeftovers(b, "sleep "+marker)
		}
		slices.Sort(fetched)
		slices.Sort(rebuilt)
		b.ReportMetric(sortedMedian(fetched).Seconds(), "fetched-median-s")
		b.ReportMetric(fetched[len(fetched)-1].Seconds(), "fetched-worst-s")
		b.ReportMetric(fetched[0].Seconds(), "fetched-best-s")
		b.ReportMetric(sortedMedian(rebuilt).Seconds(), "rebuilt-median-s")
		b.Logf("kill to the fetched task taken elsewhere, %d kills, sorted: %v", kills, fetched)
		b.Logf("kill to the building task building elsewhere, sorted: %v", rebuilt)
	}
}

// submitOn submits an SRPM for platform p as the person, splits the job
// into its task and enqueues the task's build River job (f.submit is for
// the tests' one platform).
func (f *farm) submitOn(t testing.TB, p, srpm string) (task int64) {
	t.Helper()
	data, err := os.ReadFile(srpm)
	if err != nil {
		t.Fatal(err)
	}
	job := farmtest.Submit(t, f.db.Pool, f.person, "devel", []string{p}, farmtest.File{Name: filepath.Base(srpm), Data: data})
	task = farmtest.Split(t, f.db.Pool, job, p)[0]
	farmtest.Enqueue(t, f.db.Pool, task)
	return task
}
