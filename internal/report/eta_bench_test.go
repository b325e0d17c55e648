package report_test

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/internal/testsupport/benchstat"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/riverjob"
)

// sleeper is a builder that takes its task through the task protocol
// (kiln.task_take, kiln.task_finish, as kiln-builder does), builds for the
// task's drawn duration and succeeds: the noop backend with a build time
// per package. Right after the take it records the task's estimated end
// from kiln.task_eta.
type sleeper struct {
	pool *pgxpool.Pool
	name string
	day  *simDay
}

// simDay is what the builders of a simulated day share.
type simDay struct {
	mu        sync.Mutex
	buildTime map[int64]time.Duration // real time
	estEnd    map[int64]time.Time
	errs      chan error
}

func (d *simDay) fail(err error) {
	if err != nil {
		select {
		case d.errs <- err:
		default:
		}
	}
}

func (s *sleeper) BuildTimeout(string) time.Duration { return time.Hour }

func (s *sleeper) MakeEnvironment(context.Context, string) error { return nil }

func (s *sleeper) BuildTask(ctx context.Context, a riverjob.BuildArgs) error {
	taken, err := task.Take(ctx, s.pool, s.name, a.TaskID, a.JobID, a.Platform)
	if err != nil || taken.Attempt == 0 {
		s.day.fail(err)
		return err
	}
	var end *time.Time
	if err := s.pool.QueryRow(ctx, `SELECT estimated_end FROM kiln.task_eta WHERE task_id = $1`, a.TaskID).Scan(&end); err != nil {
		s.day.fail(fmt.Errorf("reading the estimated end of task %d: %w", a.TaskID, err))
	}
	s.day.mu.Lock()
	if end != nil {
		s.day.estEnd[a.TaskID] = *end
	}
	took := s.day.buildTime[a.TaskID]
	s.day.mu.Unlock()
	select {
	case <-time.After(took):
	case <-ctx.Done():
		return ctx.Err()
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		s.day.fail(err)
		return err
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	if _, err := task.Finish(ctx, tx, task.Attempt{Task: a.TaskID, Number: taken.Attempt, Builder: s.name},
		task.Result{Status: task.Succeeded}); err != nil {
		s.day.fail(err)
		return err
	}
	err = tx.Commit(ctx)
	s.day.fail(err)
	return err
}

// BenchmarkETAHonesty measures how honest kiln.task_eta's estimates are
// (docs/queueing.md, "Estimates"): a simulated day of mixed builds on a
// real schema, compressed in time (one simulated minute is
// KILN_BENCH_ETA_MINUTE of real time, default 100ms; KILN_BENCH_ETA_HOURS
// simulated hours, default 24).
//
// Two platforms; three builders working them through real builder River
// clients and the task protocol (el9-x86_64: b1 with 4 slots and b2 with 2;
// bookworm-amd64: b3 with 5), so both run at 80 to 90% of their slots on
// average, more after the mass rebuild. 40 source packages, each with
// a typical build time drawn from a lognormal (median 8 min, from about 1
// to 60), and every build's time that times a lognormal noise (sigma 0.25);
// each package built twice on each platform before the day (its history).
// Jobs of four people arrive at random (Poisson, 22 an hour, a tenth only
// on el9-x86_64), and at 09:00 one person queues a mass rebuild of 40
// jobs. Seeded (rand.NewPCG(18, 2026)): the same day every run.
//
// At submit the task's estimated start is read from kiln.task_eta, at its
// start its estimated end; after the day each is compared with when it
// actually started and ended. It reports the median and p90 of
// |estimate - actual| in simulated minutes, and relative: to the wait
// (for starts; waits under one minute count as one) and to the build time
// (for ends); and the same for the starts of the tasks that waited a
// minute or more (most others found a free slot and started at once, as
// estimated).
//
//	.ci/with-cluster go test ./internal/report/ -run '^$' -bench ETAHonesty -benchtime 1x
func BenchmarkETAHonesty(b *testing.B) {
	minute := 100 * time.Millisecond
	if s := os.Getenv("KILN_BENCH_ETA_MINUTE"); s != "" {
		var err error
		if minute, err = time.ParseDuration(s); err != nil || minute <= 0 {
			b.Fatalf("KILN_BENCH_ETA_MINUTE: want a duration such as 100ms, not %q", s)
		}
	}
	hours := 24.0
	if s := os.Getenv("KILN_BENCH_ETA_HOURS"); s != "" {
		var err error
		if hours, err = strconv.ParseFloat(s, 64); err != nil || hours <= 0 {
			b.Fatalf("KILN_BENCH_ETA_HOURS: want a number of hours, not %q", s)
		}
	}
	sim := func(minutes float64) time.Duration { return time.Duration(minutes * float64(minute)) }
	toMin := func(d time.Duration) float64 { return float64(d) / float64(minute) }

	rng := rand.New(rand.NewPCG(18, 2026))
	const nPackages = 40
	typical := make([]float64, nPackages) // simulated minutes
	for i := range typical {
		typical[i] = math.Min(90, math.Max(1, 8*math.Exp(rng.NormFloat64())))
	}
	draw := func(pkg int) float64 { return typical[pkg] * math.Exp(0.25*rng.NormFloat64()) }

	db := pgtest.New(b)
	ctx := context.Background()
	p := db.Pool
	const el9, deb = "el9-x86_64", "bookworm-amd64"
	farmtest.Platform(b, p, el9, "x86_64")
	farmtest.Platform(b, p, deb, "amd64")
	farmtest.Bucket(b, p, "devel")
	farmtest.Builder(b, p, "b1", 4, true, el9)
	farmtest.Builder(b, p, "b2", 2, true, el9)
	farmtest.Builder(b, p, "b3", 5, true, deb)
	var people []string
	for _, n := range []string{"ann", "ben", "cat", "dan"} {
		who := farmtest.Person(b, db, n, "kiln_submitter")
		if _, err := p.Exec(ctx, "INSERT INTO kiln.quota (person, jobs_per_hour) VALUES ($1, 100000)", who); err != nil {
			b.Fatal(err)
		}
		people = append(people, who)
	}
	file := func(pkg, n int, platform string) farmtest.File {
		name := fmt.Sprintf("pkg%02d-1.%d-1.src.rpm", pkg, n)
		if platform == deb {
			name = fmt.Sprintf("pkg%02d_1.%d-1.dsc", pkg, n)
		}
		return farmtest.File{Name: name, Data: fmt.Appendf(nil, "%d %d %s", pkg, n, platform)}
	}
	// The packages' history, backdated.
	n := 0
	for pkg := range nPackages {
		for _, platform := range []string{el9, deb} {
			for range 2 {
				n++
				job := farmtest.Submit(b, p, people[pkg%4], "devel", []string{platform}, file(pkg, n, platform))
				id := farmtest.Split(b, p, job, platform)[0]
				a := farmtest.Take(b, p, id, map[string]string{el9: "b1", deb: "b3"}[platform])
				farmtest.Finish(b, p, id, a, "succeeded", "")
				if _, err := p.Exec(ctx, `UPDATE kiln.attempt SET started_at = finished_at - make_interval(secs => $2) WHERE task_id = $1`,
					id, sim(draw(pkg)).Seconds()); err != nil {
					b.Fatal(err)
				}
			}
		}
	}

	// The day's arrivals, in simulated minutes from its start.
	type arrival struct {
		at, pkg   int
		who       string
		platforms []string
	}
	var day []arrival
	for t := 0.0; t < hours*60; t += rng.ExpFloat64() * 60 / 22 {
		platforms := []string{el9, deb}
		if rng.IntN(10) == 0 {
			platforms = []string{el9}
		}
		day = append(day, arrival{at: int(t), pkg: rng.IntN(nPackages), who: people[rng.IntN(4)], platforms: platforms})
	}
	if hours*60 > 9*60 {
		for range 40 {
			day = append(day, arrival{at: 9 * 60, pkg: rng.IntN(nPackages), who: people[0], platforms: []string{el9, deb}})
		}
		slices.SortStableFunc(day, func(x, y arrival) int { return x.at - y.at })
	}
	// Every build's time is drawn now, so that the day is the same
	// whatever the order builders take the tasks in.
	sd := &simDay{buildTime: map[int64]time.Duration{}, estEnd: map[int64]time.Time{}, errs: make(chan error, 1)}
	for _, bl := range []struct {
		name      string
		slots     int
		platforms []string
	}{{"b1", 4, []string{el9}}, {"b2", 2, []string{el9}}, {"b3", 5, []string{deb}}} {
		bs := &sleeper{pool: p, name: bl.name, day: sd}
		rc, err := riverjob.NewBuilderClient(p, riverjob.BuilderConfig{
			ID: bl.name, Platforms: bl.platforms, Slots: bl.slots, Builder: bs,
			Environments: bs, RescueAfter: 24 * time.Hour, Logger: slog.New(slog.DiscardHandler),
		})
		if err != nil {
			b.Fatal(err)
		}
		if err := rc.Start(ctx); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			stop, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = rc.Stop(stop)
		})
	}

	estStart := map[int64]time.Time{}
	var tasks []int64
	b.ResetTimer()
	began := time.Now()
	for _, a := range day {
		if wait := time.Until(began.Add(sim(float64(a.at)))); wait > 0 {
			time.Sleep(wait)
		}
		n++
		files := []farmtest.File{file(a.pkg, n, el9)}
		job := farmtest.Submit(b, p, a.who, "devel", a.platforms, files...)
		ids := farmtest.Split(b, p, job, a.platforms...)
		for _, id := range ids {
			sd.mu.Lock()
			sd.buildTime[id] = sim(draw(a.pkg))
			sd.mu.Unlock()
			farmtest.Enqueue(b, p, id)
			var start *time.Time
			if err := p.QueryRow(ctx, `SELECT estimated_start FROM kiln.task_eta WHERE task_id = $1`, id).Scan(&start); err != nil {
				b.Fatal(err)
			}
			if start != nil {
				estStart[id] = *start
			}
			tasks = append(tasks, id)
		}
		select {
		case err := <-sd.errs:
			b.Fatal(err)
		default:
		}
	}
	// The rest of the queue drains.
	for {
		var left int
		if err := p.QueryRow(ctx, `SELECT count(*) FROM kiln.task WHERE status IN ('pending', 'building')`).Scan(&left); err != nil {
			b.Fatal(err)
		}
		if left == 0 {
			break
		}
		select {
		case err := <-sd.errs:
			b.Fatal(err)
		case <-time.After(sim(1)):
		}
	}
	b.StopTimer()
	b.Logf("simulated %.0f h (%d tasks of %d jobs) in %s", hours, len(tasks), len(day), time.Since(began).Round(time.Second))

	// waitAbs and waitRel are the start errors of the tasks that waited a
	// minute or more (the others mostly found a free slot).
	var startAbs, startRel, endAbs, endRel, waitAbs, waitRel []float64
	rows, err := p.Query(ctx, `SELECT t.id, t.created_at, a.started_at, a.finished_at FROM kiln.task t
		JOIN kiln.attempt a ON a.task_id = t.id AND a.attempt = t.attempt WHERE t.id = ANY($1)`, tasks)
	if err != nil {
		b.Fatal(err)
	}
	for rows.Next() {
		var id int64
		var created, started, finished time.Time
		if err := rows.Scan(&id, &created, &started, &finished); err != nil {
			b.Fatal(err)
		}
		if e, ok := estStart[id]; ok {
			off, waited := toMin(absDur(e.Sub(started))), toMin(started.Sub(created))
			startAbs = append(startAbs, off)
			startRel = append(startRel, off/math.Max(1, waited))
			if waited >= 1 {
				waitAbs = append(waitAbs, off)
				waitRel = append(waitRel, off/waited)
			}
		}
		sd.mu.Lock()
		e, ok := sd.estEnd[id]
		sd.mu.Unlock()
		if ok {
			off := toMin(absDur(e.Sub(finished)))
			endAbs = append(endAbs, off)
			endRel = append(endRel, off/math.Max(1, toMin(finished.Sub(started))))
		}
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	if len(startAbs) < len(tasks)*9/10 || len(endAbs) < len(tasks)*9/10 {
		b.Fatalf("estimates for %d starts and %d ends of %d tasks, want nearly all", len(startAbs), len(endAbs), len(tasks))
	}
	b.ReportMetric(float64(len(tasks)), "tasks")
	b.ReportMetric(benchstat.Percentile(startAbs, 50), "start-p50-min")
	b.ReportMetric(benchstat.Percentile(startAbs, 90), "start-p90-min")
	b.ReportMetric(benchstat.Percentile(startRel, 50), "start-p50-rel")
	b.ReportMetric(benchstat.Percentile(startRel, 90), "start-p90-rel")
	if len(waitAbs) > 0 {
		b.ReportMetric(float64(len(waitAbs)), "waited")
		b.ReportMetric(benchstat.Percentile(waitAbs, 50), "waited-start-p50-min")
		b.ReportMetric(benchstat.Percentile(waitAbs, 90), "waited-start-p90-min")
		b.ReportMetric(benchstat.Percentile(waitRel, 50), "waited-start-p50-rel")
		b.ReportMetric(benchstat.Percentile(waitRel, 90), "waited-start-p90-rel")
	}
	b.ReportMetric(benchstat.Percentile(endAbs, 50), "end-p50-min")
	b.ReportMetric(benchstat.Percentile(endAbs, 90), "end-p90-min")
	b.ReportMetric(benchstat.Percentile(endRel, 50), "end-p50-rel")
	b.ReportMetric(benchstat.Percentile(endRel, 90), "end-p90-rel")
	b.ReportMetric(0, "ns/op")
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
