package builder

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/testsupport/benchstat"
)

// BenchmarkNotifyFanout measures what the builders' LISTEN sessions cost
// the database when tasks change. Every builder host keeps one session
// that LISTENs on kiln_task and kiln_builder (docs/scaling.md), and
// PostgreSQL 15 wakes every listening session of the database at each
// commit that notifies, whatever the channel; each session then reads the
// notification queue and passes on what it listens for. With L sessions
// listening (KILN_BENCH_FANOUT_LISTENERS, a comma-separated list, default
// 0,10,100,1000), one session commits KILN_BENCH_FANOUT_NOTIFIES (default
// 2,000) transactions of one NOTIFY kiln_task each, one after the other,
// and the benchmark waits until every listener has them all. It reports
// the server's CPU per notifying commit (pg-cpu-us/commit; the primary's
// processes, from /proc), its increase per listener over the run without
// listeners (pg-cpu-us/commit/listener), and the time from a commit to its
// arrival at one more listener (p50-ms, p99-ms), whose client shares the
// machine with the others. A last run has no listener but
// KILN_BENCH_FANOUT_UNLISTENED (default 1,000; 0 skips it) sessions that
// listened and then UNLISTENed, as idle builders do (Config.ListenIdle): it
// shows whether such a session still costs anything.
func BenchmarkNotifyFanout(b *testing.B) {
	counts := []int{0, 10, 100, 1000}
	if s := strings.TrimSpace(os.Getenv("KILN_BENCH_FANOUT_LISTENERS")); s != "" {
		counts = nil
		for _, part := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(part))
			if err != nil || n < 0 {
				b.Fatalf("KILN_BENCH_FANOUT_LISTENERS=%q: want a comma-separated list of counts", s)
			}
			counts = append(counts, n)
		}
	}
	notifies := benchCount(b, "KILN_BENCH_FANOUT_NOTIFIES", 2000)
	unlistened := 1000
	if s := os.Getenv("KILN_BENCH_FANOUT_UNLISTENED"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			b.Fatalf("KILN_BENCH_FANOUT_UNLISTENED=%q: want a count (0 skips the run)", s)
		}
		unlistened = n
	}
	f := newFarm(b)
	var base float64 // CPU per commit without listeners, once measured
	for _, listeners := range counts {
		b.Run(fmt.Sprintf("listeners=%d", listeners), func(b *testing.B) {
			for range b.N {
				perCommit, lat := fanout(b, f, listeners, 0, notifies)
				b.ReportMetric(perCommit, "pg-cpu-us/commit")
				if listeners == 0 {
					base = perCommit
				} else if base > 0 {
					b.ReportMetric((perCommit-base)/float64(listeners), "pg-cpu-us/commit/listener")
				}
				benchstat.Report(b, "", lat, 50, 99)
			}
		})
	}
	if unlistened == 0 {
		return
	}
	b.Run(fmt.Sprintf("unlistened=%d", unlistened), func(b *testing.B) {
		for range b.N {
			perCommit, lat := fanout(b, f, 0, unlistened, notifies)
			b.ReportMetric(perCommit, "pg-cpu-us/commit")
			benchstat.Report(b, "", lat, 50, 99)
		}
	})
}

// fanout runs one round of BenchmarkNotifyFanout with listeners sessions
// listening and unlistened more that listened and stopped: it returns the
// server's CPU per notifying commit in microseconds and the probe's
// latencies.
func fanout(b *testing.B, f *farm, listeners, unlistened, notifies int) (float64, []time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var received atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	listen := func() *pgx.Conn {
		c, err := pgx.Connect(ctx, f.db.URL)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.Exec(ctx, "LISTEN kiln_task; LISTEN kiln_builder"); err != nil {
			b.Fatal(err)
		}
		return c
	}
	for range listeners {
		c := listen()
		wg.Go(func() {
			defer c.Close(context.Background())
			for {
				if _, err := c.WaitForNotification(ctx); err != nil {
					return
				}
				received.Add(1)
			}
		})
	}
	for range unlistened {
		c := listen()
		if _, err := c.Exec(ctx, "UNLISTEN *"); err != nil {
			b.Fatal(err)
		}
		defer c.Close(context.Background())
	}
	// The probe: one more listener, timing each arrival against the send
	// time in the payload.
	probe := listen()
	lat := make([]time.Duration, 0, notifies)
	probeDone := make(chan struct{})
	go func() {
		defer close(probeDone)
		defer probe.Close(context.Background())
		for len(lat) < notifies {
			n, err := probe.WaitForNotification(ctx)
			if err != nil {
				return
			}
			var sent int64
			if _, err := fmt.Sscanf(n.Payload, `{"job": 0, "task": %d}`, &sent); err == nil {
				lat = append(lat, time.Since(time.Unix(0, sent)))
			}
		}
	}()
	notifier, err := f.db.Pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer notifier.Release()
	cpu := serverCPU(b, f)
	for range notifies {
		// One transaction each, as a take or a finish commits.
		if _, err := notifier.Exec(ctx, "SELECT pg_notify('kiln_task', $1)",
			fmt.Sprintf(`{"job": 0, "task": %d}`, time.Now().UnixNano())); err != nil {
			b.Fatal(err)
		}
	}
	want := int64(listeners * notifies)
	deadline := time.Now().Add(5 * time.Minute)
	for received.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("after 5 minutes the listeners had %d of %d notifications", received.Load(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-probeDone:
	case <-time.After(time.Minute):
		b.Fatalf("the probe did not have all %d notifications within a minute", notifies)
	}
	used, ok := cpu()
	if !ok {
		b.Skip("the database server's processes are not visible in /proc")
	}
	return float64(used.Microseconds()) / float64(notifies), lat
}
