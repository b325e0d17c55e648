package builder

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// BenchmarkPooledSubmitToStart measures, with an idle builder whose pool
// goes through PgBouncer in transaction pooling mode (its LISTEN and name
// lock on a direct connection, River polling), the time from the commit
// of a task and its River job to the take, for River poll intervals of
// 100 ms (River's least, its FetchCooldown), 200 ms (the default) and 1 s, over KILN_BENCH_LATENCY_JOBS jobs
// (default 200), each submitted after a random pause of up to 1 s, so that
// submits fall at any moment of River's poll cycle as on a real farm (a
// submit right after the previous task's end would meet River's fetch
// after a completion instead); via=direct is the same builder straight on the primary,
// River listening (docs/scaling.md).
func BenchmarkPooledSubmitToStart(b *testing.B) {
	n := benchCount(b, "KILN_BENCH_LATENCY_JOBS", 200)
	for _, poll := range []time.Duration{0, 100 * time.Millisecond, DefaultPollInterval, time.Second} {
		name := "via=direct"
		if poll > 0 {
			name = fmt.Sprintf("via=pgbouncer/poll=%s", poll)
		}
		b.Run(name, func(b *testing.B) {
			f := newFarm(b)
			f.platform(b, "bench", "x86_64", "rpm", "noop", time.Hour, "")
			role, direct := f.builderPool(b, 1)
			cfg := quietConfig(b, 1)
			pool := direct
			if poll > 0 {
				var err error
				pool, err = dbconn.Open(context.Background(), dbconn.Config{URL: f.db.ViaAs(b, pgtest.EnvPgBouncerURL, role),
					AppName: "kiln-builder-bench", MaxConns: 8, Pooled: true})
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(pool.Close)
				cfg.Session, cfg.PollOnly, cfg.PollInterval = direct, true, poll
			}
			src := benchSource(b)
			start(b, pool, cfg)
			for range b.N {
				var lat []time.Duration
				for range n {
					time.Sleep(rand.N(time.Second))
					_, task := f.submit(b, "bench", "retry", src)
					submitted := time.Now()
					lat = append(lat, f.startedAfter(b, "id", task, submitted))
				}
				reportPercentiles(b, lat, 50, 99)
			}
		})
	}
}
