// Command kiln-bench is a development tool, not part of a farm: it runs
// kiln's benchmarks (the Go benchmarks next to the
// code they measure) with the settings docs/performance.md reports, and
// prints one table: each figure with how it was measured. It runs `go
// test` in the source tree, so it is run from the repository's root
// inside a private cluster: make bench.
package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/daemon"
)

func main() {
	ctx, stop := daemon.SignalContext(context.Background())
	defer stop()
	if err := app().RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "kiln-bench:", err)
		os.Exit(1)
	}
}

func app() *cli.App {
	return &cli.App{
		Name:  "kiln-bench",
		Usage: "development tool: run kiln's benchmarks and print each figure with how it was measured (run inside .ci/with-cluster: make bench)",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "latency-jobs", Usage: "jobs submitted one by one for the submit-to-start latency", Value: 500},
			&cli.IntFlag{Name: "jobs", Usage: "jobs seeded for the query latencies (4 tasks each)", Value: 1000000},
			&cli.IntFlag{Name: "scale-builders", Usage: "simulated builders of the scale simulation (docs/scaling.md)", Value: 100},
			&cli.IntFlag{Name: "backlog", Usage: "queued tasks of a platform no builder serves, seeded before each throughput run (a farm's tables, not a new one's: docs/performance.md)", Value: 20000},
			&cli.StringFlag{Name: "work-dir", Usage: "where the throughput benchmark's builders make their attempts' directories (empty: the test's temporary directory)", Value: "/dev/shm"},
			&cli.StringFlag{Name: "only", Usage: "run only the benchmarks whose title matches this regular expression"},
			&cli.BoolFlag{Name: "markdown", Usage: "print the table as Markdown (for docs/performance.md)"},
		},
		Action: run,
	}
}

// suite is one `go test -bench` run and the table rows it yields.
type suite struct {
	title     string
	pkg       string
	pattern   string
	benchtime string
	env       []string
	rows      []row
}

// row is one line of the table, read from one benchmark's metrics.
type row struct {
	bench  string // the benchmark's name as go test prints it, without -GOMAXPROCS
	what   string
	figure func(m metrics) string
	how    string
}

// metrics are a benchmark's reported values by unit (ns/op, p50-ms, ...).
type metrics map[string]float64

func (m metrics) f(unit string, format string) string {
	v, ok := m[unit]
	if !ok {
		return "?"
	}
	return fmt.Sprintf(format, v)
}

func suites(c *cli.Context) []suite {
	ms := func(m metrics, a, b string) string {
		return fmt.Sprintf("%s %s ms, %s %s ms", a, m.f(a+"-ms", "%.1f"), b, m.f(b+"-ms", "%.1f"))
	}
	p5095 := func(m metrics) string { return ms(m, "p50", "p95") }
	p5099 := func(m metrics) string { return ms(m, "p50", "p99") }
	throughput := func(m metrics) string {
		s := fmt.Sprintf("%s tasks/s; bare River %s jobs/s; ratio %s; PG CPU %s ms/task (inserts %s; bare River %s ms/job)",
			m.f("tasks/s", "%.1f"), m.f("river-jobs/s", "%.1f"), m.f("ratio", "%.2f"), m.f("pg-cpu-ms/task", "%.2f"),
			m.f("insert-pg-cpu-ms/task", "%.2f"), m.f("river-pg-cpu-ms/job", "%.2f"))
		if _, ok := m["statements/task"]; ok {
			s += fmt.Sprintf("; %s statements/task (%s in all); %s buffers and %s WAL bytes/task", m.f("statements/task", "%.1f"),
				m.f("all-statements/task", "%.0f"), m.f("buffers/task", "%.0f"), m.f("wal-bytes/task", "%.0f"))
		}
		return s
	}
	farm := fmt.Sprintf("%d jobs, %d tasks", c.Int("jobs"), 4*c.Int("jobs"))
	return []suite{
		{
			title: "submit to build start", pkg: "./internal/builder/", pattern: "^BenchmarkSubmitToStart$/^from=submit$", benchtime: "1x",
			env: []string{fmt.Sprintf("KILN_BENCH_LATENCY_JOBS=%d", c.Int("latency-jobs"))},
			rows: []row{{bench: "BenchmarkSubmitToStart/from=submit", what: fmt.Sprintf("submit to build start, idle builder (%d jobs)", c.Int("latency-jobs")),
				figure: p5099,
				how: "kiln submit's transaction (a real SRPM, as a kiln_submitter role) committed, to task.started_at: the splitter " +
					"(River client as kiln-splitter runs it) validates and splits, an idle builder (noop backend) takes; one job at a time"}},
		},
		{
			title: "throughput", pkg: "./internal/builder/", pattern: "^BenchmarkThroughput$", benchtime: "1x",
			env: []string{"KILN_BENCH_WORKDIR=" + c.String("work-dir"), fmt.Sprintf("KILN_BENCH_BACKLOG=%d", c.Int("backlog"))},
			rows: []row{
				{bench: "BenchmarkThroughput/slots=1", what: "throughput, 1 builder slot (200 tasks)", figure: throughput,
					how: "tasks inserted with their River jobs as the splitter does, 50 a transaction, to the last finished (noop build, log, artifacts, finish); " +
						"bare River: insert River jobs 50 a transaction and work them with a no-op worker, same database, as many workers; " +
						"both with FetchCooldown 1 ms (riverjob.BuilderFetchCooldown, as kiln-builder runs) and River's default FetchPollInterval 1 s; " +
						"work directory on --work-dir (default /dev/shm, a tmpfs: docs/performance.md); " +
						"--backlog queued tasks of another platform seeded first (default 20,000), so that the plans are a farm's; " +
						"PG CPU: the server's processes (/proc) over the kiln run, inserts and polling included; statements: pg_stat_statements " +
						"(make bench preloads it), those the builders' roles send, and in all with every function's and trigger's (the seeding's too); " +
						"buffers (shared, hit, read or dirtied) and WAL bytes: pg_stat_statements, the builders' statements with all they ran"},
				{bench: "BenchmarkThroughput/slots=4", what: "throughput, 4 builder slots (200 tasks)", figure: throughput, how: "as above"},
				{bench: "BenchmarkThroughput/slots=16", what: "throughput, 16 builder slots (800 tasks)", figure: throughput, how: "as above"},
				{bench: "BenchmarkThroughput/builders=4", what: "throughput, 4 builders of 1 slot (200 tasks)", figure: throughput,
					how: "as above, four builders (each its own role and pool) on one platform; bare River: four clients of one worker"},
			},
		},
		{
			title: "live log", pkg: "./internal/builder/", pattern: "^BenchmarkLiveLog$", benchtime: "1x",
			rows: []row{{bench: "BenchmarkLiveLog", what: "live log latency (100 lines)",
				figure: func(m metrics) string { return p5099(m) + ", " + m.f("rows/build", "%.0f") + " rows" },
				how: "a real rpmbuild build in the sandbox prints lines stamped with the clock, 70 ms apart; kiln log -f " +
					"(the CLI's code, in process) follows; latency = arrival in its output - stamp. The builder stores a line " +
					"at once when nothing was stored for 250 ms (Config.LogFlush), else in a batch 250 ms after the last store, " +
					"which sets the figure; rows = kiln.log_chunk rows (one NOTIFY each) per build"}},
		},
		{
			title: "cancel", pkg: "./internal/builder/", pattern: "^BenchmarkCancelToStop$", benchtime: "1x",
			rows: []row{{bench: "BenchmarkCancelToStop", what: "cancel to build stopped (50 cancels)", figure: p5099,
				how: "a builder of one slot runs a noop build that would sleep an hour; from the call of kiln.cancel_job to " +
					"the builder stopping the build (NOTIFY kiln_task, then its heartbeat asks the database whether it still " +
					"holds the attempt, then the build's context is cancelled)"}},
		},
		{
			title: "queries", pkg: "./internal/report/", pattern: "^BenchmarkListJobs$/^(newest|get_job|kiln_jobs|kiln_show|web_jobs|web_job)$", benchtime: "100x",
			env: []string{fmt.Sprintf("KILN_BENCH_JOBS=%d", c.Int("jobs")), "KILN_BENCH_TASKS_PER_JOB=4"},
			rows: []row{
				{bench: "BenchmarkListJobs/kiln_jobs", what: "kiln jobs (" + farm + ")", figure: p5095,
					how: "the CLI's jobs command in process as a kiln_submitter role (row-level security applies), new connection each run, 100 runs; farm seeded with generate_series"},
				{bench: "BenchmarkListJobs/kiln_show", what: "kiln show JOB (" + farm + ")", figure: p5095,
					how: "the CLI's show command, a job in the middle of the history, as above"},
				{bench: "BenchmarkListJobs/newest", what: "  its query: report.ListJobs, newest page", figure: p5095,
					how: "the query alone on an open superuser pool, 100 runs"},
				{bench: "BenchmarkListJobs/get_job", what: "  its query: report.GetJob", figure: p5095, how: "as above"},
				{bench: "BenchmarkListJobs/web_jobs", what: "web job list (" + farm + ")", figure: p5095,
					how: "GET /jobs (the newest page) over HTTP from kiln-web's handler as a kiln_web role, 100 runs, same farm " +
						"(internal/web's BenchmarkPages measures every page on a farm of its own)"},
				{bench: "BenchmarkListJobs/web_job", what: "web job page (" + farm + ")", figure: p5095,
					how: "GET /jobs/ID of the job kiln show shows, as above"},
			},
		},
		{
			title: "repositories", pkg: "./internal/repo/", pattern: "^Benchmark(Regenerate|VisibleToApt|Serve)$", benchtime: "1x",
			rows: []row{
				{bench: "BenchmarkVisibleToApt", what: "task success to package visible to apt (bucket of 10,000 packages)", figure: p5099,
					how: "a running publisher (repo.Serve, woken by NOTIFY kiln_publish) and kiln-web; a job's task finishes with a real .deb; " +
						"measured until kiln-web serves the package file (the same commit serves its Packages entry, checked each round), 20 rounds; apt-get update then sees the last one"},
				{bench: "BenchmarkRegenerate/packages=100", what: "publish one package into 100", figure: func(m metrics) string { return ms(m, "p50", "max") },
					how: "one job's .deb published (parse, Packages/.gz/.xz, Release signed twice, manifest rows, commit), 5 rounds; bucket seeded in SQL"},
				{bench: "BenchmarkRegenerate/packages=1000", what: "publish one package into 1,000", figure: func(m metrics) string { return ms(m, "p50", "max") }, how: "as above"},
				{bench: "BenchmarkRegenerate/packages=10000", what: "publish one package into 10,000", figure: func(m metrics) string { return ms(m, "p50", "max") }, how: "as above"},
				{bench: "BenchmarkServe", what: "serving a 50 MB package",
					figure: func(m metrics) string {
						return fmt.Sprintf("kiln-web %s MB/s, http.FileServer %s MB/s; ratio %s",
							m.f("kiln-MB/s", "%.0f"), m.f("fileserver-MB/s", "%.0f"), m.f("ratio", "%.2f"))
					},
					how: "GET of the pool file from kiln-web's /repos (streamed from PostgreSQL) and of the same bytes from http.FileServer on disk, both over local TCP, 5 each, same run"},
			},
		},
		etaSuite(), dispatchSuite(),
		{
			title: "scale", pkg: "./internal/builder/", pattern: "^BenchmarkScale$", benchtime: "1x",
			env: []string{fmt.Sprintf("KILN_BENCH_SCALE_BUILDERS=%d", c.Int("scale-builders")), "KILN_BENCH_SCALE_PLATFORMS=20",
				"KILN_BENCH_SCALE_TASKS=100000", "KILN_BENCH_SCALE_RATE=20", "KILN_BENCH_SCALE_SECONDS=30"},
			rows: []row{{bench: "BenchmarkScale", what: fmt.Sprintf("%d builders through PgBouncer, 20 platforms, 100,000 queued tasks", c.Int("scale-builders")),
				figure: func(m metrics) string {
					return fmt.Sprintf("dispatch p50 %s ms, p99 %s ms; PostgreSQL CPU %s ms/task (%s net of idle); idle %s queries/s, %s%% of a core; server connections %s busy, %s idle",
						m.f("p50-ms", "%.0f"), m.f("p99-ms", "%.0f"), m.f("pg-cpu-ms/task", "%.1f"), m.f("pg-cpu-net-ms/task", "%.1f"),
						m.f("idle-queries/s", "%.0f"), m.f("idle-pg-cpu-%", "%.0f"), m.f("server-conns-busy", "%.0f"), m.f("server-conns-idle", "%.0f"))
				},
				how: "each simulated builder is internal/builder's own Builder (its own role and pool through the harness's PgBouncer in transaction pooling, " +
					"its buildTask with one slot and the noop backend, its heartbeat every 5 s) fed by a stand-in for its poll-only River client " +
					"(River's own statements through riverpgxv5 every 1 s, docs/scaling.md), without its direct --listen-db session; " +
					"tasks seeded with generate_series with their River jobs, 600 made available at 20/s; dispatch = available to task.started_at; " +
					"CPU of the primary's processes from /proc; idle over 30 s from PgBouncer's SHOW STATS; connections from SHOW POOLS"}},
		},
		{
			title: "upload", pkg: "./internal/submit/", pattern: "^BenchmarkUploadVsCopy$", benchtime: "4x",
			rows: []row{{bench: "BenchmarkUploadVsCopy", what: "submit upload vs plain COPY (200 MB)",
				figure: func(m metrics) string {
					return fmt.Sprintf("submit %s MB/s, COPY %s MB/s; submit takes %sx the COPY's time",
						m.f("submit-MB/s", "%.0f"), m.f("copy-MB/s", "%.0f"), m.f("submit/copy-time", "%.2f"))
				},
				how: "kiln submit of four 50 MB files (each hashed ahead while the one before streams into its blob, one transaction) against COPY of the same bytes into a bytea table in 256 KiB rows, same database"}},
		},
		{
			title: "crash takeover", pkg: "./internal/e2e/", pattern: "^Benchmark(KillSplitterToSplit|KillFetchedToTaken)$", benchtime: "1x",
			env: []string{"KILN_BENCH_DEFAULTS=1"},
			rows: []row{
				{bench: "BenchmarkKillSplitterToSplit", what: "killed splitter's job split by another, defaults (3 kills)",
					figure: func(m metrics) string {
						return fmt.Sprintf("median %s s, best %s s, worst %s s", m.f("median-s", "%.1f"), m.f("best-s", "%.1f"), m.f("worst-s", "%.1f"))
					},
					how: "kiln-splitter processes, one SIGKILLed while its split waits for the job's row lock (held by the benchmark, let go after the kill); " +
						"kill (clock_timestamp) to job.validated_at by the other splitter; janitor at its default 15 s interval"},
				{bench: "BenchmarkKillFetchedToTaken", what: "killed builder's fetched River job taken elsewhere, defaults (3 kills)",
					figure: func(m metrics) string {
						return fmt.Sprintf("median %s s, best %s s, worst %s s", m.f("fetched-median-s", "%.1f"), m.f("fetched-best-s", "%.1f"), m.f("fetched-worst-s", "%.1f"))
					},
					how: "kiln-builder of two platforms with one slot, SIGKILLed while building one task with the other's build River job fetched and waiting for the slot; " +
						"kill to that task's attempt 1 started on another builder; janitor and builders at their defaults (horizon 20 s, interval 15 s, heartbeat 5 s)"},
			},
		},
	}
}

func run(c *cli.Context) error {
	var only *regexp.Regexp
	if s := c.String("only"); s != "" {
		var err error
		if only, err = regexp.Compile(s); err != nil {
			return fmt.Errorf("--only: %w", err)
		}
	}
	if os.Getenv("KILN_TEST_PGURL") == "" {
		return fmt.Errorf("no private cluster: run it inside .ci/with-cluster (make bench)")
	}
	var rows []row
	results := map[string]metrics{}
	for _, s := range suites(c) {
		if only != nil && !only.MatchString(s.title) {
			continue
		}
		fmt.Fprintf(os.Stderr, "kiln-bench: %s: %s\n", s.title, strings.Join(s.command(), " "))
		began := time.Now()
		found, err := s.run(c.Context)
		if err != nil {
			return fmt.Errorf("%s: %w", s.title, err)
		}
		fmt.Fprintf(os.Stderr, "kiln-bench: %s took %s\n", s.title, time.Since(began).Round(time.Second))
		for k, v := range found {
			results[k] = v
		}
		rows = append(rows, s.rows...)
	}
	printTable(os.Stdout, rows, results, c.Bool("markdown"))
	return nil
}

// command is the go test command line of the suite.
func (s suite) command() []string {
	cmd := append([]string{}, s.env...)
	return append(cmd, "go", "test", "-run", "^$", "-bench", s.pattern, "-benchtime", s.benchtime, "-timeout", "30m", "-count", "1", s.pkg)
}

// run runs the suite's benchmarks and returns their metrics by name.
func (s suite) run(ctx context.Context) (map[string]metrics, error) {
	args := s.command()[len(s.env):]
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), s.env...)
	var out bytes.Buffer
	progress := &prefixed{w: os.Stderr}
	cmd.Stdout = io.MultiWriter(&out, progress)
	cmd.Stderr = progress
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("go test: %w", err)
	}
	return parse(&out), nil
}

// prefixed indents what go test prints, so the table stands out.
type prefixed struct {
	w       io.Writer
	midLine bool
}

func (p *prefixed) Write(b []byte) (int, error) {
	var out []byte
	for _, c := range b {
		if !p.midLine {
			out = append(out, "    "...)
		}
		out = append(out, c)
		p.midLine = c != '\n'
	}
	_, err := p.w.Write(out)
	return len(b), err
}

var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// parse reads go test's benchmark lines: name, iterations, then value and
// unit pairs.
func parse(r io.Reader) map[string]metrics {
	out := map[string]metrics{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		ms := metrics{}
		for i := 0; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				ms[f[i+1]] = v
			}
		}
		out[m[1]] = ms
	}
	return out
}

// printTable writes the table.
func printTable(w io.Writer, rows []row, results map[string]metrics, markdown bool) {
	figure := func(r row) string {
		m, ok := results[r.bench]
		if !ok {
			return "missing from go test's output"
		}
		return r.figure(m)
	}
	if markdown {
		fmt.Fprintln(w, "| measurement | figure | how it was measured |")
		fmt.Fprintln(w, "|---|---|---|")
		for _, r := range rows {
			fmt.Fprintf(w, "| %s | %s | %s |\n", strings.TrimSpace(r.what), figure(r), r.how)
		}
		return
	}
	wide := 0
	for _, r := range rows {
		wide = max(wide, len(r.what))
	}
	fmt.Fprintln(w)
	for _, r := range rows {
		fmt.Fprintf(w, "%-*s  %s\n", wide, r.what, figure(r))
		for i, l := range wrap("how: "+r.how, 100) {
			if i > 0 {
				l = "     " + l
			}
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
}

// wrap breaks text into lines of at most width characters, between words.
func wrap(text string, width int) []string {
	var lines []string
	line := ""
	for _, word := range strings.Fields(text) {
		if line != "" && len(line)+1+len(word) > width {
			lines = append(lines, line)
			line = ""
		}
		if line != "" {
			line += " "
		}
		line += word
	}
	return append(lines, line)
}
