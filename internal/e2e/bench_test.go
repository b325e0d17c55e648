package e2e

import (
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/janitor"
	"github.com/kiln-build/kiln/internal/testsupport/proctest"
)

// BenchmarkKillToRebuild measures, over 20 kills, the time from killing a
// builder with SIGKILL in the middle of a build to its task building again
// (attempt 2 taken) on another builder, with the janitor's fast test flags
// (--horizon 3s --interval 1s, builders heart-beating every 500 ms). Both
// ends are database clock readings: clock_timestamp() right after the kill
// and the second attempt's started_at. Figures are reported, not asserted:
//
//	.ci/with-cluster go test ./internal/e2e -run '^$' -bench KillToRebuild -benchtime 1x
//
// With KILN_BENCH_DEFAULTS=1 the janitor and builders run with their
// default horizon, interval and heartbeat instead, over 3 kills.
func BenchmarkKillToRebuild(b *testing.B) {
	kills := 20
	var janitorFlags, builderFlags []string
	if os.Getenv("KILN_BENCH_DEFAULTS") == "1" {
		kills = 3
		def := janitor.DefaultConfig()
		// The flags' defaults, given again after the fast test flags.
		janitorFlags = []string{"--horizon", def.Horizon.String(), "--interval", "15s"}
		builderFlags = []string{"--heartbeat", "5s"}
	}
	f := newFarm(b)
	f.startJanitor(b, f.role(b, "kiln_janitor"), append([]string{"--log-level", "warn"}, janitorFlags...)...)
	builderRole := f.role(b, "kiln_builder")
	// The rebuilding builder is disabled while the victim takes each task,
	// so that the victim, not it, takes the task.
	rescuer := f.startBuilder(b, "rescuer", builderRole, builderFlags...)
	rescuer.waitLog(b, "builder ready")
	for range b.N {
		var times []time.Duration
		for i := range kills {
			f.exec(b, `UPDATE kiln.builder SET enabled = false WHERE name = 'rescuer'`)
			rescuer.waitLogCount(b, "builder disabled", i+1)
			name := fmt.Sprintf("victim%d", i)
			victim := f.startBuilder(b, name, builderRole, builderFlags...)
			marker := proctest.SleepMarker()
			_, task := f.submit(b, hangingFirstAttempt(b, fmt.Sprintf("kiln-kill%d", i), marker))
			f.waitBuilding(b, task, 1, name, "SLEEPING-NOW")
			f.exec(b, `UPDATE kiln.builder SET enabled = true WHERE name = 'rescuer'`)
			rescuer.waitLogCount(b, "builder enabled", i+1)

			victim.kill(b)
			var killedAt time.Time
			f.scan(b, `SELECT clock_timestamp()`, nil, &killedAt)
			f.waitTask(b, task, "succeeded")
			var startedAt time.Time
			f.scan(b, `SELECT started_at FROM kiln.attempt WHERE task_id = $1 AND attempt = 2`, []any{task}, &startedAt)
			times = append(times, startedAt.Sub(killedAt))
			proctest.NoLeftovers(b, "sleep "+marker)
		}
		slices.Sort(times)
		median := times[kills/2]
		if kills%2 == 0 {
			median = (times[kills/2-1] + times[kills/2]) / 2
		}
		b.ReportMetric(median.Seconds(), "median-s")
		b.ReportMetric(times[kills-1].Seconds(), "worst-s")
		b.ReportMetric(times[0].Seconds(), "best-s")
		b.Logf("kill to building again, %d kills, sorted: %v", kills, times)
	}
}
