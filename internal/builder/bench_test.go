package builder

import (
	"bytes"
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

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/cli"
	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/split"
	"github.com/kiln-build/kiln/internal/submit"
	"github.com/kiln-build/kiln/internal/testsupport/benchstat"
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

// quietConfig is a bench builder's configuration: slots, no log. Its work
// directory is under KILN_BENCH_WORKDIR when set (a tmpfs, say: on this
// project's CI machines / is ext4 without a journal, where each mkdir
// scans the inodes deleted in the last seconds, so a run's own deletions
// make its later builds' directories slower to make).
func quietConfig(b *testing.B, slots int) Config {
	cfg := testConfig(b, "bench")
	cfg.Slots = slots
	cfg.Logger = discardLogger()
	if dir := os.Getenv("KILN_BENCH_WORKDIR"); dir != "" {
		work, err := os.MkdirTemp(dir, "kiln-bench-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(work) })
		if err := os.Chmod(work, 0o755); err != nil {
			b.Fatal(err)
		}
		cfg.WorkDir = work
	}
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
// (as p50-ms, p99-ms, ...; benchstat.Report) and how many there were.
func reportPercentiles(b *testing.B, lat []time.Duration, ps ...float64) {
	benchstat.Report(b, "", lat, ps...)
	b.ReportMetric(float64(len(lat)), "samples")
}

// BenchmarkThroughput measures tasks per second from the insert of a task
// and its River job (as the splitter makes them) to the task's end (River
// fetch, take, noop build, log, artifacts, finish) for one builder with 1,
// 4 and 16 slots and for four builders with one slot each (each its own
// database role and pool, as on four hosts), and a bare River
// insert-and-work loop on the same database with as many River clients and
// workers; kiln's rate over River's is the ratio reported. Each run moves
// max(200, 50×slots in all) tasks, after a warm-up of a quarter as many
// and an ANALYZE (not measured). Both sides insert in transactions of
// insertBatch (kiln: jobs, packages, tasks and their River jobs; River:
// InsertManyTx), so that neither figure is its inserter's. It also reports
// PostgreSQL's CPU per task (the server's processes, from /proc, over the
// kiln run: builders, inserts and the bench's polling), the inserts' share
// of it (as many tasks again seeded for a platform no builder serves), the
// same CPU per job of the bare River loop (its inserts included) and, when the
// cluster preloads pg_stat_statements (make bench does), the statements
// per task the builders send and those they run in all (functions and
// triggers included), and the shared buffers their statements touched and
// the WAL they wrote per task (counts that repeat where CPU time does not).
// KILN_BENCH_BACKLOG queued tasks of another platform are seeded first
// (benchBacklog; make bench seeds 20,000).
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
			f.platform(b, "bench-held", "x86_64", "rpm", "noop", time.Hour, "")
			var roles []string
			for range c.builders {
				role, pool := f.builderPool(b, c.slots)
				roles = append(roles, role)
				start(b, pool, quietConfig(b, c.slots))
			}
			// The inserter notifies builders as often as bare River's
			// (River limits an inserter's notifications to one per
			// FetchCooldown per queue).
			inserter, err := river.NewClient(riverpgxv5.New(f.db.Pool), &river.Config{Schema: schema.RiverSchema,
				SkipUnknownJobCheck: true, FetchCooldown: riverjob.BuilderFetchCooldown})
			if err != nil {
				b.Fatal(err)
			}
			f.inserter = inserter
			src := benchSource(b)
			if backlog := benchBacklog(b); backlog > 0 {
				seedScaleTasks(b, f, []string{"bench-held"}, backlog)
			}
			bare, bareCPU := bareRiverRate(b, f, c.builders, c.slots, n)
			stmts := newStatementCounter(b, f, roles)
			// A warm-up of a quarter of the run, then ANALYZE: a farm's
			// tables have a history and statistics, and plans made while
			// they were empty (sequential scans, which PostgreSQL keeps
			// until the next autoanalyze, a minute or more away) would
			// be measured, not the farm.
			var warm int64
			for done := 0; done < n/4; done += insertBatch {
				warm = f.submitMany(b, "bench", src, insertBatch)
			}
			waitFinished(b, f, warm)
			if _, err := f.db.Pool.Exec(context.Background(), "ANALYZE"); err != nil {
				b.Fatal(err)
			}
			// The inserts' share of the server's CPU: as many tasks
			// again, seeded the same way for a platform no builder
			// serves (they stay queued, as in a farm with a backlog).
			held := serverCPU(b, f)
			for done := 0; done < n; done += insertBatch {
				f.submitMany(b, "bench-held", src, min(insertBatch, n-done))
			}
			insertCPU, insertOK := held()
			for range b.N {
				cpu := serverCPU(b, f)
				stmts.reset(b)
				began := time.Now()
				var last int64
				for done := 0; done < n; done += insertBatch {
					last = f.submitMany(b, "bench", src, min(insertBatch, n-done))
				}
				waitFinished(b, f, last)
				rate := float64(n) / time.Since(began).Seconds()
				b.ReportMetric(rate, "tasks/s")
				b.ReportMetric(bare, "river-jobs/s")
				b.ReportMetric(rate/bare, "ratio")
				if used, ok := cpu(); ok && insertOK {
					b.ReportMetric(float64(used.Microseconds())/1000/float64(n), "pg-cpu-ms/task")
					b.ReportMetric(float64(insertCPU.Microseconds())/1000/float64(n), "insert-pg-cpu-ms/task")
					b.ReportMetric(float64(bareCPU.Microseconds())/1000/float64(n), "river-pg-cpu-ms/job")
				}
				if w, ok := stmts.count(b); ok {
					b.ReportMetric(float64(w.top)/float64(n), "statements/task")
					b.ReportMetric(float64(w.all)/float64(n), "all-statements/task")
					b.ReportMetric(float64(w.buffers)/float64(n), "buffers/task")
					b.ReportMetric(float64(w.walBytes)/float64(n), "wal-bytes/task")
				}
			}
		})
	}
}

// benchBacklog is KILN_BENCH_BACKLOG: how many queued tasks (with their
// jobs, packages and River jobs, for a platform no builder serves) the
// throughput benchmark seeds before it starts, so that its tables, and so
// the plans of the take and the finish, are a farm's with a queue rather
// than a new one's; 0 (the default) seeds none.
func benchBacklog(b *testing.B) int {
	s := os.Getenv("KILN_BENCH_BACKLOG")
	if s == "" {
		return 0
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		b.Fatalf("KILN_BENCH_BACKLOG=%q: want a number of tasks", s)
	}
	return n
}

// insertBatch is how many tasks (or bare River jobs) BenchmarkThroughput
// inserts per transaction.
const insertBatch = 50

// submitMany seeds n jobs of the noop source src, each with its task on
// platform and the task's River job, in one transaction (as n of submit,
// without its round trips), and returns the last task's id.
func (f *farm) submitMany(b *testing.B, platform, src string, n int) int64 {
	ctx := context.Background()
	tx, err := f.db.Pool.Begin(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	info, err := blob.PutFile(ctx, tx, src, false)
	if err != nil {
		b.Fatal(err)
	}
	rows, err := tx.Query(ctx, `WITH j AS (
			INSERT INTO kiln.job (bucket, platforms, policy, submission_key)
			SELECT 'devel', ARRAY[$1], 'retry', 'bench-' || gen_random_uuid() FROM generate_series(1, $2) RETURNING id),
		p AS (INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size)
			SELECT id, 0, $3, 'srpm', $4, $5 FROM j)
		INSERT INTO kiln.task (job_id, platform) SELECT id, $1 FROM j ORDER BY id RETURNING id, job_id`,
		platform, n, filepath.Base(src), info.Sum[:], info.Size)
	if err != nil {
		b.Fatal(err)
	}
	type seeded struct{ Task, Job int64 }
	tasks, err := pgx.CollectRows(rows, pgx.RowToStructByPos[seeded])
	if err != nil {
		b.Fatal(err)
	}
	params := make([]river.InsertManyParams, len(tasks))
	for i, t := range tasks {
		params[i] = river.InsertManyParams{Args: riverjob.BuildArgs{TaskID: t.Task, JobID: t.Job, Platform: platform}, InsertOpts: &river.InsertOpts{Priority: 2}}
	}
	res, err := f.inserter.InsertManyTx(ctx, tx, params)
	if err != nil {
		b.Fatal(err)
	}
	ids, riverIDs := make([]int64, len(tasks)), make([]int64, len(tasks))
	for i, t := range tasks {
		ids[i], riverIDs[i] = t.Task, res[i].Job.ID
	}
	if _, err := tx.Exec(ctx, "UPDATE kiln.task t SET river_job_id = r.river FROM unnest($1::bigint[], $2::bigint[]) AS r(id, river) WHERE t.id = r.id", ids, riverIDs); err != nil {
		b.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		b.Fatal(err)
	}
	return tasks[len(tasks)-1].Task
}

// waitFinished waits until no task of platform bench waits or builds, and
// fails when one up to task last did not succeed. The poll reads the index
// of unfinished tasks only: a scan of every task, 100 times a second,
// would be the bench's own load on the server.
func waitFinished(b *testing.B, f *farm, last int64) {
	ctx := context.Background()
	waitQuick(b, "every task to finish", func() bool {
		var left int
		f.db.Pool.QueryRow(ctx, "SELECT count(*) FROM kiln.task WHERE platform = 'bench' AND status IN ('pending', 'building')").Scan(&left)
		return left == 0
	})
	var failed int
	if err := f.db.Pool.QueryRow(ctx, "SELECT count(*) FROM kiln.task WHERE platform = 'bench' AND status <> 'succeeded' AND id <= $1", last).Scan(&failed); err != nil || failed > 0 {
		b.Fatalf("%d tasks did not succeed (%v)", failed, err)
	}
}

// waitQuick polls every 10 ms until cond holds: a throughput figure is not
// rounded up to waitFor's 100 ms.
func waitQuick(b *testing.B, what string, cond func() bool) {
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// serverCPU starts measuring the CPU time of the database server's
// processes: the postmaster, its live children, and the children it has
// reaped (its cutime and cstime). The function it returns gives the time
// used since; ok is false when /proc does not show the server (it runs
// elsewhere).
func serverCPU(b *testing.B, f *farm) func() (time.Duration, bool) {
	var backend int
	if err := f.db.Pool.QueryRow(context.Background(), "SELECT pg_backend_pid()").Scan(&backend); err != nil {
		b.Fatal(err)
	}
	st, err := procStat(backend)
	if err != nil {
		return func() (time.Duration, bool) { return 0, false }
	}
	postmaster := st.ppid
	before, err := treeCPU(postmaster)
	if err != nil {
		return func() (time.Duration, bool) { return 0, false }
	}
	return func() (time.Duration, bool) {
		after, err := treeCPU(postmaster)
		return after - before, err == nil
	}
}

// clockTick is the unit of /proc/PID/stat's CPU times (USER_HZ, 100 on
// Linux).
const clockTick = 10 * time.Millisecond

type procStatus struct {
	ppid           int
	utime, stime   int64
	cutime, cstime int64
}

// procStat reads /proc/PID/stat.
func procStat(pid int) (procStatus, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStatus{}, err
	}
	// The command, in parentheses, may hold spaces: fields count from
	// after its closing parenthesis (field 3, the state, is first).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStatus{}, fmt.Errorf("/proc/%d/stat: no command", pid)
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 15 {
		return procStatus{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(fields))
	}
	num := func(k int) int64 { v, _ := strconv.ParseInt(fields[k-3], 10, 64); return v }
	return procStatus{ppid: int(num(4)), utime: num(14), stime: num(15), cutime: num(16), cstime: num(17)}, nil
}

// treeCPU is the CPU time of the postmaster, its children and its reaped
// children.
func treeCPU(postmaster int) (time.Duration, error) {
	pm, err := procStat(postmaster)
	if err != nil {
		return 0, err
	}
	ticks := pm.utime + pm.stime + pm.cutime + pm.cstime
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := procStat(pid); err == nil && st.ppid == postmaster {
			ticks += st.utime + st.stime
		}
	}
	return time.Duration(ticks) * clockTick, nil
}

// statementCounter counts, with pg_stat_statements, the statements that
// the builders' roles send (top level) and, in all, those and every nested
// statement (what functions and triggers run, whoever called them: the
// seeding's triggers count too, as the splitter's would), and the work
// the builders' statements did, their nested ones' included: shared
// buffers touched and WAL written. Unlike CPU time, which a shared machine
// inflates, the work counts repeat from run to run, so they show a change
// too small for the CPU figure's noise.
type statementCounter struct {
	f     *farm
	roles []string
	ok    bool
}

// newStatementCounter makes a counter for roles; it counts nothing when the
// cluster does not preload pg_stat_statements.
func newStatementCounter(b *testing.B, f *farm, roles []string) *statementCounter {
	ctx := context.Background()
	c := &statementCounter{f: f, roles: roles}
	if _, err := f.db.Pool.Exec(ctx, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements"); err != nil {
		return c
	}
	var preloaded bool
	if err := f.db.Pool.QueryRow(ctx, "SELECT 'pg_stat_statements' = ANY (string_to_array(current_setting('shared_preload_libraries'), ', '))").Scan(&preloaded); err != nil {
		b.Fatal(err)
	}
	c.ok = preloaded
	return c
}

func (c *statementCounter) reset(b *testing.B) {
	if !c.ok {
		return
	}
	if _, err := c.f.db.Pool.Exec(context.Background(), "SELECT pg_stat_statements_reset(), pg_stat_reset()"); err != nil {
		b.Fatal(err)
	}
}

// statementWork is what a statementCounter counted since its reset.
type statementWork struct {
	top, all int64 // statements the builders sent; those and every nested one
	buffers  int64 // shared buffers the builders' statements hit, read or dirtied
	walBytes int64 // WAL bytes the builders' statements wrote
}

// count returns what was counted since reset.
func (c *statementCounter) count(b *testing.B) (w statementWork, ok bool) {
	if !c.ok {
		return w, false
	}
	if err := c.f.db.Pool.QueryRow(context.Background(), `SELECT coalesce(sum(calls) FILTER (WHERE toplevel AND r.rolname = ANY ($1)), 0)::bigint,
			coalesce(sum(calls) FILTER (WHERE toplevel AND r.rolname = ANY ($1) OR NOT toplevel), 0)::bigint,
			coalesce(sum(shared_blks_hit + shared_blks_read + shared_blks_dirtied) FILTER (WHERE toplevel AND r.rolname = ANY ($1)), 0)::bigint,
			coalesce(sum(wal_bytes) FILTER (WHERE toplevel AND r.rolname = ANY ($1)), 0)::bigint
		FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
		WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())`, c.roles).Scan(&w.top, &w.all, &w.buffers, &w.walBytes); err != nil {
		b.Fatal(err)
	}
	if os.Getenv("KILN_BENCH_STATEMENTS") != "" {
		c.list(b)
	}
	return w, true
}

// list logs the statements counted (calls, plans made, which
// pg_stat_statements.track_planning = on counts, shared buffers touched, times),
// the costliest (total execution time, nested statements' included) first,
// then the functions (KILN_BENCH_STATEMENTS=1; with
// pg_stat_statements.track = all and track_functions = all the cluster
// shows what triggers cost), then the rows written per table.
func (c *statementCounter) list(b *testing.B) {
	rows, err := c.f.db.Pool.Query(context.Background(), `SELECT s.calls, s.plans, s.shared_blks_hit + s.shared_blks_read + s.shared_blks_dirtied, s.toplevel, r.rolname, round(s.total_exec_time::numeric, 1), round(s.total_plan_time::numeric, 1), left(regexp_replace(s.query, '\s+', ' ', 'g'), 110)
		FROM pg_stat_statements s JOIN pg_roles r ON r.oid = s.userid
		WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) ORDER BY s.total_exec_time DESC LIMIT 60`)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var calls, plans, buffers int64
		var top bool
		var role, ms, planMS, query string
		if err := rows.Scan(&calls, &plans, &buffers, &top, &role, &ms, &planMS, &query); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(os.Stderr, "%6d calls %6d plans %8d buffers top=%-5v %-18s %8s ms plan %7s ms %s\n", calls, plans, buffers, top, role, ms, planMS, query)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
	c.listFunctions(b)
	c.listTables(b)
}

// listTables logs, for each table the run wrote, the rows inserted,
// updated (and of those HOT: without new index entries) and deleted.
func (c *statementCounter) listTables(b *testing.B) {
	rows, err := c.f.db.Pool.Query(context.Background(), `SELECT schemaname || '.' || relname, n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del
		FROM pg_stat_user_tables WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 ORDER BY n_tup_ins + n_tup_upd + n_tup_del DESC`)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var name string
		var ins, upd, hot, del int64
		if err := rows.Scan(&name, &ins, &upd, &hot, &del); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(os.Stderr, "%-28s inserted %7d updated %7d (HOT %7d) deleted %7d\n", name, ins, upd, hot, del)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
}

// listFunctions logs what each function and trigger function cost, the
// costliest first, when the cluster tracks functions (track_functions =
// all, as KILN_BENCH_STATEMENTS asks): calls, total and self time. A
// backend reports its counts at most once a second, hence the wait.
func (c *statementCounter) listFunctions(b *testing.B) {
	time.Sleep(1100 * time.Millisecond)
	rows, err := c.f.db.Pool.Query(context.Background(), `SELECT calls, round(total_time::numeric, 1), round(self_time::numeric, 1), schemaname || '.' || funcname
		FROM pg_stat_user_functions ORDER BY self_time DESC LIMIT 40`)
	if err != nil {
		b.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var calls int64
		var total, self, name string
		if err := rows.Scan(&calls, &total, &self, &name); err != nil {
			b.Fatal(err)
		}
		fmt.Fprintf(os.Stderr, "%6d total %8s ms self %8s ms %s\n", calls, total, self, name)
	}
	if err := rows.Err(); err != nil {
		b.Fatal(err)
	}
}

type benchArgs struct{}

func (benchArgs) Kind() string { return "bench_noop" }

type benchWorker struct {
	river.WorkerDefaults[benchArgs]
}

func (benchWorker) Work(context.Context, *river.Job[benchArgs]) error { return nil }

// bareRiverRate inserts n River jobs insertBatch a transaction and works
// them with plain River clients (as many as builders, each with workers
// workers), returning jobs per second and the server's CPU over the run.
func bareRiverRate(b *testing.B, f *farm, clients, workers, n int) (rate float64, cpu time.Duration) {
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
	used := serverCPU(b, f)
	began := time.Now()
	for done := 0; done < n; done += insertBatch {
		params := make([]river.InsertManyParams, min(insertBatch, n-done))
		for i := range params {
			params[i] = river.InsertManyParams{Args: benchArgs{}, InsertOpts: &river.InsertOpts{Queue: "bare"}}
		}
		if _, err := inserter.InsertMany(ctx, params); err != nil {
			b.Fatal(err)
		}
	}
	waitQuick(b, "bare River jobs", func() bool {
		var done int
		f.db.Pool.QueryRow(ctx, "SELECT count(*) FROM river.river_job WHERE kind = 'bench_noop' AND state = 'completed'").Scan(&done)
		return done == n
	})
	rate = float64(n) / time.Since(began).Seconds()
	cpu, _ = used()
	return rate, cpu
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
