package builder

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// BenchmarkScale simulates a large farm through PgBouncer (transaction
// pooling, the harness's): KILN_BENCH_SCALE_BUILDERS builders (default
// 1,000) over KILN_BENCH_SCALE_PLATFORMS platforms (default 20, each
// builder one platform and one slot), with KILN_BENCH_SCALE_TASKS queued
// tasks (default 100,000), docs/scaling.md "1,000 builders".
//
// Each simulated builder is this package's Builder, made by New with its own
// database role and its own pool through PgBouncer (dbconn.Config.Pooled),
// registered by its own register, taking tasks with its own buildTask
// (task.Take, the noop backend, live log, artifacts, task.Finish) and
// heartbeating with its own heartbeat every 5 s (the default). What fetches
// River jobs for it is, by default, a standIn: River's own statements of a
// poll-only client through River's driver at River's cadence (scale_standin_test.go),
// one goroutine a builder, so 1,000 fit on two cores; with
// KILN_BENCH_SCALE_CLIENT=river it is the builder's real River client
// (newFeed: riverjob.NewBuilderClient in poll-only mode, polling every
// DefaultPollInterval), as kiln-builder runs it. What is left out is the
// builder's direct session (--listen-db): its name lock, which LISTENs
// while it builds and has a SELECT 1 each heartbeat while idle, one
// connection a builder host; docs/scaling.md counts them. KILN_BENCH_SCALE_PGBOUNCER sets PgBouncer
// settings for the run ("name=value ...", SET on its admin console, put
// back at the end).
//
// The tasks are seeded in SQL (generate_series) as the splitter makes them:
// a job with one package (one shared blob), a pending task and its build
// River job, scheduled a day ahead (no River client here leads, so River's
// scheduler makes none available): they stay queued, in River's table and
// indexes, for the whole run. The River jobs of the first
// KILN_BENCH_SCALE_RATE (default 40) × KILN_BENCH_SCALE_SECONDS (default
// 60) tasks are made available one after the other at that rate, one
// transaction each, as the splitter commits them (kiln.fair_turn gives each
// its turn, so scheduled_at is no clock). Reported:
//   - p50-ms, p99-ms: dispatch latency, from the commit that made a River
//     job available (its transaction's now()) to its task's started_at;
//   - pg-cpu-ms/task: PostgreSQL's CPU (every process of the primary, from
//     /proc, the exited ones through the postmaster's cutime) while the due
//     tasks were worked, over their number; pg-cpu-net-ms/task the same less
//     the idle load's CPU over as long; go-cpu-ms/task the builders' (this
//     process's) CPU likewise;
//   - idle-queries/s, idle-xacts/s, idle-pg-cpu-%: with nothing due, over 30
//     s: queries PgBouncer passed to the server (SHOW STATS), transactions
//     committed in the database (pg_stat_database.xact_commit) and
//     PostgreSQL's CPU in per cent of one core;
//   - server-conns-busy, server-conns-idle: PgBouncer's server connections
//     to the database (SHOW POOLS, most seen in each phase), and
//     backends-busy, backends-idle: pg_stat_activity's client backends of
//     the database (the same, seen from PostgreSQL);
//   - tasks/s: due tasks over the time they took.
//
// On the shared 2-core test machine 1,000 real River clients in one process
// did not start (the 645th client's start timed out); 1,000 stand-ins do
// (docs/scaling.md "1,000 builders").
//
//	KILN_BENCH_SCALE_BUILDERS=250 .ci/with-cluster go test ./internal/builder -run '^$' -bench BenchmarkScale -benchtime 1x -timeout 30m
func BenchmarkScale(b *testing.B) {
	var (
		builders  = benchCount(b, "KILN_BENCH_SCALE_BUILDERS", 1000)
		platforms = benchCount(b, "KILN_BENCH_SCALE_PLATFORMS", 20)
		tasks     = benchCount(b, "KILN_BENCH_SCALE_TASKS", 100000)
		rate      = benchCount(b, "KILN_BENCH_SCALE_RATE", 40)
		seconds   = benchCount(b, "KILN_BENCH_SCALE_SECONDS", 60)
		river     = os.Getenv("KILN_BENCH_SCALE_CLIENT") == "river"
	)
	if c := os.Getenv("KILN_BENCH_SCALE_CLIENT"); c != "" && c != "river" && c != "standin" {
		b.Fatalf("KILN_BENCH_SCALE_CLIENT=%q: want river or standin", c)
	}
	due := min(tasks, rate*seconds)
	bouncer := newBouncerStats(b)
	bouncer.set(b, strings.Fields(os.Getenv("KILN_BENCH_SCALE_PGBOUNCER")))
	for range b.N {
		f := newFarm(b)
		pg := serverCPU(b, f)
		pgCPU := func() time.Duration {
			d, ok := pg()
			if !ok {
				b.Fatal("the database server's processes are not in /proc: run under .ci/with-cluster on this host")
			}
			return d
		}
		ctx := context.Background()
		names := make([]string, platforms)
		for i := range names {
			names[i] = fmt.Sprintf("scale-%02d", i)
			f.platform(b, names[i], "x86_64", "rpm", "noop", time.Hour, "")
		}
		// Seeded first, while nothing else runs: the River jobs stay
		// scheduled a day ahead until pace, which starts once the builders
		// have, so no due task waits for a builder's start.
		began := time.Now()
		seedScaleTasks(b, f, names, tasks)
		b.Logf("seeded %d tasks in %s", tasks, time.Since(began).Round(time.Millisecond))

		began = time.Now()
		sim := startScaleBuilders(b, f, names, builders, river)
		b.Logf("%d builders started in %s", builders, time.Since(began).Round(time.Millisecond))

		// Busy: from the first due River job until every due task ended.
		watch := watchConns(ctx, b, f, bouncer)
		cpu0, go0, t0 := pgCPU(), goCPU(), time.Now()
		available := pace(b, f, due, rate)
		waitFor(b, "every due task to succeed", func() bool {
			var left int
			if err := f.db.Pool.QueryRow(ctx, "SELECT count(*) FROM kiln.task WHERE status <> 'succeeded' AND id = ANY($1)",
				slices.Collect(maps.Keys(available))).Scan(&left); err != nil {
				b.Fatal(err)
			}
			return left == 0
		})
		busyCPU, busyGo, busy := pgCPU()-cpu0, goCPU()-go0, time.Since(t0)
		busyConns, busyBackends := watch()

		rows, err := f.db.Pool.Query(ctx, "SELECT id, started_at FROM kiln.task WHERE status = 'succeeded'")
		if err != nil {
			b.Fatal(err)
		}
		var lat []time.Duration
		for rows.Next() {
			var id int64
			var at time.Time
			if err := rows.Scan(&id, &at); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, at.Sub(available[id]))
		}
		if err := rows.Err(); err != nil {
			b.Fatal(err)
		}
		if len(lat) != due {
			b.Fatalf("%d tasks succeeded, want the %d due", len(lat), due)
		}

		// Idle: nothing due, every builder polling and heartbeating.
		time.Sleep(5 * time.Second)
		watch = watchConns(ctx, b, f, bouncer)
		q0, x0, c0, i0 := bouncer.queries(b, f), f.xactCommit(b), pgCPU(), time.Now()
		time.Sleep(30 * time.Second)
		idle := time.Since(i0)
		queries, xacts, idleCPU := bouncer.queries(b, f)-q0, f.xactCommit(b)-x0, pgCPU()-c0
		idleConns, idleBackends := watch()
		sim.stop()

		perTask := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 / float64(due) }
		idleShare := time.Duration(float64(idleCPU) * busy.Seconds() / idle.Seconds())
		reportPercentiles(b, lat, 50, 99)
		b.ReportMetric(float64(due)/busy.Seconds(), "tasks/s")
		b.ReportMetric(perTask(busyCPU), "pg-cpu-ms/task")
		b.ReportMetric(perTask(busyCPU-idleShare), "pg-cpu-net-ms/task")
		b.ReportMetric(perTask(busyGo), "go-cpu-ms/task")
		b.ReportMetric(float64(queries)/idle.Seconds(), "idle-queries/s")
		b.ReportMetric(float64(xacts)/idle.Seconds(), "idle-xacts/s")
		b.ReportMetric(100*idleCPU.Seconds()/idle.Seconds(), "idle-pg-cpu-%")
		b.ReportMetric(float64(busyConns), "server-conns-busy")
		b.ReportMetric(float64(idleConns), "server-conns-idle")
		b.ReportMetric(float64(busyBackends), "backends-busy")
		b.ReportMetric(float64(idleBackends), "backends-idle")
		b.ReportMetric(float64(builders), "builders")
		b.ReportMetric(float64(tasks), "queued")
	}
}

// scaleFarm is the simulated builders of BenchmarkScale.
type scaleFarm struct {
	stop func()
}

// startScaleBuilders creates n builder roles and starts one simulated
// builder as each (see BenchmarkScale), builder i building platform i mod
// len(platforms), each with its own pool through PgBouncer.
func startScaleBuilders(b *testing.B, f *farm, platforms []string, n int, river bool) *scaleFarm {
	ctx := context.Background()
	prefix := "scale_" + randomHex(3) + "_"
	f.exec(b, `DO $$ BEGIN FOR i IN 1..`+strconv.Itoa(n)+` LOOP
		EXECUTE format('CREATE ROLE %I LOGIN IN ROLE kiln_builder', '`+prefix+`' || i); END LOOP; END $$`)
	b.Cleanup(func() {
		_, _ = f.db.Pool.Exec(context.Background(), `DO $$ BEGIN FOR i IN 1..`+strconv.Itoa(n)+` LOOP
			EXECUTE format('DROP ROLE IF EXISTS %I', '`+prefix+`' || i); END LOOP; END $$`)
	})
	loops, stopLoops := context.WithCancel(ctx)
	var (
		wg    sync.WaitGroup
		feeds []*feed
		pools []*pgxpool.Pool
		all   []*Builder
	)
	work := b.TempDir()
	// Builders start 32 at a time, as hosts of a farm do: each start waits
	// on its own round trips, not on the CPU.
	var (
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, 32)
		sg   sync.WaitGroup
	)
	for i := 1; i <= n; i++ {
		url := f.db.ViaAs(b, pgtest.EnvPgBouncerURL, prefix+strconv.Itoa(i))
		sem <- struct{}{}
		sg.Go(func() {
			defer func() { <-sem }()
			bl, pool, fd, err := startScaleBuilder(ctx, loops, url, platforms, work, i, river)
			mu.Lock()
			defer mu.Unlock()
			if pool != nil {
				pools = append(pools, pool)
			}
			if err != nil {
				errs = append(errs, fmt.Errorf("builder %d: %w", i, err))
				return
			}
			if fd != nil {
				feeds, all = append(feeds, fd), append(all, bl)
			}
			fail := func(err error) {
				if loops.Err() == nil {
					b.Errorf("builder %s: %v", bl.cfg.Name, err)
				}
			}
			if !river {
				s := newStandIn(bl)
				if err := s.start(ctx); err != nil {
					errs = append(errs, fmt.Errorf("builder %d: %w", i, err))
					return
				}
				wg.Go(func() { s.run(loops, fail) })
				return
			}
			wg.Go(func() {
				t := time.NewTicker(bl.cfg.Heartbeat)
				defer t.Stop()
				for {
					select {
					case <-loops.Done():
						return
					case <-t.C:
					}
					if err := bl.heartbeat(loops); err != nil {
						fail(err)
					}
				}
			})
		})
	}
	sg.Wait()
	s := &scaleFarm{}
	stopped := false
	s.stop = func() {
		if stopped {
			return
		}
		stopped = true
		var sw sync.WaitGroup
		for i, fd := range feeds {
			sw.Go(func() { all[i].stopFeed(loops, fd); <-fd.done })
		}
		sw.Wait()
		stopLoops()
		wg.Wait()
		for _, p := range pools {
			p.Close()
		}
	}
	b.Cleanup(s.stop)
	if len(errs) > 0 {
		b.Fatal(errs[0])
	}
	return s
}

// startScaleBuilder makes, registers and starts simulated builder i of
// BenchmarkScale with its pool through PgBouncer at url, its feed running
// under loops.
func startScaleBuilder(ctx, loops context.Context, url string, platforms []string, work string, i int, river bool) (*Builder, *pgxpool.Pool, *feed, error) {
	pool, err := dbconn.Open(ctx, dbconn.Config{URL: url,
		AppName: "kiln-builder-scale", MaxConns: 8, Pooled: true})
	if err != nil {
		return nil, nil, nil, err
	}
	cfg := Config{
		Name: fmt.Sprintf("scale-%04d", i), Platforms: []string{platforms[(i-1)%len(platforms)]}, Slots: 1,
		WorkDir: filepath.Join(work, strconv.Itoa(i)), Version: "bench", Logger: discardLogger(),
		PollOnly: true, PollInterval: DefaultPollInterval,
	}
	bl, err := New(ctx, pool, cfg)
	if err != nil {
		return nil, pool, nil, err
	}
	if err := bl.register(ctx); err != nil {
		return nil, pool, nil, err
	}
	if !river {
		return bl, pool, nil, nil
	}
	fd, err := bl.startFeed(loops)
	return bl, pool, fd, err
}

// seedScaleTasks seeds n jobs of one package (one shared blob), each with
// a pending task on one of the platforms (round robin) and its build River
// job, as the splitter makes them. The River jobs of the first due tasks
// fall due one after the other at rate a second from the returned time;
// the others a day later.
func seedScaleTasks(b *testing.B, f *farm, platforms []string, n int) {
	ctx := context.Background()
	info, err := blob.PutFile(ctx, f.db.Pool, benchSource(b), false)
	if err != nil {
		b.Fatal(err)
	}
	// In transactions of 10,000 jobs, ANALYZE after each, so the triggers'
	// statements (kiln.refresh_job_statuses for each statement) are planned on the
	// table's real size rather than on an empty one's.
	const chunk = 10000
	for from := 1; from <= n; from += chunk {
		to := min(from+chunk-1, n)
		tx, err := f.db.Pool.Begin(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kiln.job (bucket, platforms, policy, submission_key)
			SELECT 'devel', ARRAY[($3::text[])[1 + (g - 1) % cardinality($3::text[])]], 'retry', 'scale-' || g
			FROM generate_series($1::int, $2::int) g`, from, to, platforms); err != nil {
			b.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size)
			SELECT id, 0, 'bench-1-1.src.rpm', 'srpm', $1, $2 FROM kiln.job j
			WHERE NOT EXISTS (SELECT 1 FROM kiln.package p WHERE p.job_id = j.id)`, info.Sum[:], info.Size); err != nil {
			b.Fatal(err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kiln.task (job_id, platform) SELECT id, platforms[1] FROM kiln.job j
			WHERE NOT EXISTS (SELECT 1 FROM kiln.task t WHERE t.job_id = j.id) ORDER BY id`); err != nil {
			b.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			b.Fatal(err)
		}
		f.exec(b, "ANALYZE kiln.job, kiln.package, kiln.task, kiln.event")
	}
	// Every River job waits, scheduled a day ahead (no River client leads
	// here, so none is made available by River's scheduler); pace makes the
	// due ones available.
	f.exec(b, `INSERT INTO river.river_job (args, kind, max_attempts, priority, queue, state, scheduled_at)
		SELECT jsonb_build_object('task_id', id, 'job_id', job_id, 'platform', platform), 'build', 25, 2,
		       'build-' || platform, 'scheduled', now() + interval '1 day'
		FROM kiln.task ORDER BY id`)
	f.exec(b, `UPDATE kiln.task t SET river_job_id = r.id FROM river.river_job r
		WHERE r.kind = 'build' AND (r.args->>'task_id')::bigint = t.id`)
	f.exec(b, "ANALYZE")
}

// pace makes the River jobs of the first n tasks available one after the
// other, one transaction each, at rate a second (as the splitter commits
// them: kiln.fair_turn gives each its turn), and returns when each became
// available (its transaction's now()) by task.
func pace(b *testing.B, f *farm, n, rate int) map[int64]time.Time {
	ctx := context.Background()
	rows, err := f.db.Pool.Query(ctx, "SELECT id, river_job_id FROM kiln.task ORDER BY id LIMIT $1", n)
	if err != nil {
		b.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]int64, error) {
		var v [2]int64
		return v, r.Scan(&v[0], &v[1])
	})
	if err != nil {
		b.Fatal(err)
	}
	out := make(map[int64]time.Time, n)
	began := time.Now()
	for i, id := range ids {
		time.Sleep(time.Until(began.Add(time.Duration(i) * time.Second / time.Duration(rate))))
		var at time.Time
		if err := f.db.Pool.QueryRow(ctx, "UPDATE river.river_job SET state = 'available' WHERE id = $1 RETURNING now()", id[1]).Scan(&at); err != nil {
			b.Fatal(err)
		}
		out[id[0]] = at
	}
	return out
}

// xactCommit is the database's committed transactions so far.
func (f *farm) xactCommit(b *testing.B) int64 {
	var n int64
	if err := f.db.Pool.QueryRow(context.Background(), "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").Scan(&n); err != nil {
		b.Fatal(err)
	}
	return n
}

// watchConns samples, every 500 ms until the returned function is called,
// PgBouncer's server connections to the farm's database and the database's
// client backends; the function returns the most of each seen.
func watchConns(ctx context.Context, b *testing.B, f *farm, bs *bouncerStats) func() (server, backends int) {
	ctx, cancel := context.WithCancel(ctx)
	var mu sync.Mutex
	var server, backends int
	done := make(chan struct{})
	sample := func() {
		s := bs.serverConns(b, f)
		var n int
		if err := f.db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND backend_type = 'client backend'`).Scan(&n); err != nil && ctx.Err() == nil {
			b.Error(err)
		}
		mu.Lock()
		server, backends = max(server, s), max(backends, n)
		mu.Unlock()
	}
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			sample()
			select {
			case <-ctx.Done():
			case <-time.After(500 * time.Millisecond):
			}
		}
	}()
	return func() (int, int) {
		cancel()
		<-done
		sample()
		mu.Lock()
		defer mu.Unlock()
		return server, backends
	}
}

// bouncerStats reads PgBouncer's admin console (the harness's stats_users
// include postgres).
type bouncerStats struct {
	conn *pgx.Conn
	mu   sync.Mutex
}

func newBouncerStats(b *testing.B) *bouncerStats {
	s := os.Getenv(pgtest.EnvPgBouncerURL)
	if s == "" {
		b.Fatalf("%s is not set: run under .ci/with-cluster, whose cluster has a PgBouncer", pgtest.EnvPgBouncerURL)
	}
	u, err := url.Parse(s)
	if err != nil {
		b.Fatal(err)
	}
	u.Path = "/pgbouncer"
	q := u.Query()
	q.Set("default_query_exec_mode", "simple_protocol")
	u.RawQuery = q.Encode()
	conn, err := pgx.Connect(context.Background(), u.String())
	if err != nil {
		b.Fatalf("PgBouncer's admin console: %v", err)
	}
	b.Cleanup(func() { conn.Close(context.Background()) })
	return &bouncerStats{conn: conn}
}

// set applies PgBouncer settings given as name=value (SET on the admin
// console, for the whole PgBouncer: the harness's admin_users include
// postgres) and puts back their values at cleanup.
func (s *bouncerStats) set(b *testing.B, settings []string) {
	if len(settings) == 0 {
		return
	}
	old := map[string]string{}
	rows, err := s.conn.Query(context.Background(), "SHOW CONFIG")
	if err != nil {
		b.Fatalf("SHOW CONFIG: %v", err)
	}
	for rows.Next() {
		vals := rows.RawValues()
		old[string(vals[0])] = string(vals[1])
	}
	if err := rows.Err(); err != nil {
		b.Fatalf("SHOW CONFIG: %v", err)
	}
	apply := func(name, value string) error {
		s.mu.Lock()
		defer s.mu.Unlock()
		_, err := s.conn.Exec(context.Background(), fmt.Sprintf("SET %s = '%s'", name, value))
		return err
	}
	for _, kv := range settings {
		name, value, ok := strings.Cut(kv, "=")
		prev, known := old[name]
		if !ok || !known || strings.ContainsAny(value, "'\\") {
			b.Fatalf("KILN_BENCH_SCALE_PGBOUNCER: %q is not name=value of a PgBouncer setting", kv)
		}
		if err := apply(name, value); err != nil {
			b.Fatalf("PgBouncer SET %s = %s: %v", name, value, err)
		}
		b.Cleanup(func() {
			if err := apply(name, prev); err != nil {
				b.Errorf("PgBouncer SET %s back to %s: %v", name, prev, err)
			}
		})
		b.Logf("PgBouncer %s = %s (was %s)", name, value, prev)
	}
}

// show runs a SHOW command and returns, for the rows whose database column
// is the farm's, the named columns as integers.
func (s *bouncerStats) show(b *testing.B, f *farm, what string, cols ...string) [][]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows, err := s.conn.Query(context.Background(), "SHOW "+what)
	if err != nil {
		b.Fatalf("SHOW %s: %v", what, err)
	}
	defer rows.Close()
	idx := map[string]int{}
	for i, fd := range rows.FieldDescriptions() {
		idx[fd.Name] = i
	}
	var out [][]int64
	for rows.Next() {
		// The simple protocol sends text: the raw values are the text.
		vals := rows.RawValues()
		if string(vals[idx["database"]]) != f.db.Name {
			continue
		}
		row := make([]int64, len(cols))
		for i, c := range cols {
			j, ok := idx[c]
			if !ok {
				b.Fatalf("SHOW %s has no column %s", what, c)
			}
			v, err := strconv.ParseInt(string(vals[j]), 10, 64)
			if err != nil {
				b.Fatalf("SHOW %s: %s = %q", what, c, vals[j])
			}
			row[i] = v
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	return out
}

// serverConns is PgBouncer's server connections to the farm's database,
// over every pool (one per role).
func (s *bouncerStats) serverConns(b *testing.B, f *farm) int {
	n := 0
	for _, r := range s.show(b, f, "POOLS", "sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login") {
		for _, v := range r {
			n += int(v)
		}
	}
	return n
}

// queries is the queries PgBouncer has passed to the server for the farm's
// database so far.
func (s *bouncerStats) queries(b *testing.B, f *farm) int64 {
	var n int64
	for _, r := range s.show(b, f, "STATS", "total_query_count") {
		n += r[0]
	}
	return n
}

// goCPU is this process's CPU time so far.
func goCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
