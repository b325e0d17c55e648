package web

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/testsupport/benchstat"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// benchJobs is how many jobs BenchmarkPages seeds (KILN_BENCH_JOBS), each
// with a task on each of 4 platforms.
func benchJobs(b *testing.B) int {
	n := 1_000_000
	if v := os.Getenv("KILN_BENCH_JOBS"); v != "" {
		if _, err := fmt.Sscan(v, &n); err != nil || n < 1000 {
			b.Fatalf("KILN_BENCH_JOBS=%s: want a number >= 1000", v)
		}
	}
	return n
}

// seedMillion fills the database with n jobs (30 s apart, the newest now)
// of 50 people in 3 buckets, 4n tasks on 4 platforms, an attempt for every
// started task, and for the newest thousand jobs artifacts and logs. It
// writes as superuser with triggers off (session_replication_role =
// replica), in a few INSERT ... SELECT generate_series statements; the data
// satisfies every constraint the triggers would have kept.
func seedMillion(b *testing.B, db *pgtest.DB, n int) {
	ctx := context.Background()
	p := db.Pool
	for i, name := range []string{"p0-x86_64", "p1-x86_64", "p2-amd64", "p3-aarch64"} {
		farmtest.Platform(b, p, name, []string{"x86_64", "x86_64", "amd64", "aarch64"}[i])
	}
	for _, name := range []string{"devel", "testing", "stable"} {
		farmtest.Bucket(b, p, name)
	}
	for i := range 20 {
		farmtest.Builder(b, p, fmt.Sprintf("b%02d", i), 4, i < 18, "p0-x86_64", "p1-x86_64", "p2-amd64", "p3-aarch64")
	}
	start := time.Now()
	conn, err := p.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Release()
	steps := []string{
		`SET session_replication_role = replica`,
		`INSERT INTO kiln.blob (sha256, size, chunk_size, verified_at) VALUES (sha256('bench'), 5, 262144, now())`,
		`INSERT INTO kiln.blob_chunk (sha256, seq, data) VALUES (sha256('bench'), 0, 'bench')`,
		// Jobs: the newest 200 still run (queued or building), every tenth
		// of the rest failed on one platform.
		fmt.Sprintf(`INSERT INTO kiln.job (id, submitter, bucket, platforms, note, submission_key, status, reason,
			submitted_at, validated_at, started_at, finished_at) OVERRIDING SYSTEM VALUE
		SELECT g, 'user' || lpad((g %% 50)::text, 2, '0'), (ARRAY['devel', 'testing', 'stable'])[1 + g %% 3], '{all}',
		       CASE WHEN g %% 7 = 0 THEN 'rebuild for the mass update' ELSE '' END, 'k' || g,
		       CASE WHEN g > %[1]d - 100 THEN 'queued' WHEN g > %[1]d - 200 THEN 'building'
		            WHEN g %% 10 = 0 THEN 'partially_failed' ELSE 'succeeded' END, NULL,
		       t, t + interval '1 second', CASE WHEN g > %[1]d - 100 THEN NULL ELSE t + interval '20 seconds' END,
		       CASE WHEN g > %[1]d - 200 THEN NULL ELSE t + interval '15 minutes' END
		FROM generate_series(1, %[1]d) g, LATERAL (SELECT now() - (%[1]d - g) * interval '30 seconds' AS t) ts`, n),
		`INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size, name, version, release)
		 SELECT id, 0, 'pkg' || (id % 5000) || '-1.' || (id % 17) || '-1.src.rpm', 'srpm', sha256('bench'), 5,
		        'pkg' || (id % 5000), '1.' || (id % 17), '1' FROM kiln.job`,
		// Tasks: one per job and platform. Running jobs have pending tasks
		// (queued) or a building first task; a failed job failed on p3.
		`INSERT INTO kiln.task (id, job_id, platform, status, attempt, builder, heartbeat_at, created_at, started_at, finished_at, reason)
		 OVERRIDING SYSTEM VALUE
		 SELECT (j.id - 1) * 4 + k + 1, j.id, (ARRAY['p0-x86_64', 'p1-x86_64', 'p2-amd64', 'p3-aarch64'])[k + 1],
		        s, CASE WHEN s = 'pending' THEN 0 ELSE 1 END,
		        CASE WHEN s = 'building' THEN 'b' || lpad(((j.id * 4 + k) % 18)::text, 2, '0') END,
		        CASE WHEN s = 'building' THEN now() END,
		        j.validated_at, CASE WHEN s <> 'pending' THEN j.started_at + k * interval '1 second' END,
		        CASE WHEN s IN ('succeeded', 'failed') THEN j.finished_at END,
		        CASE WHEN s = 'failed' THEN 'rpmbuild exited with status 1' END
		 FROM kiln.job j, generate_series(0, 3) k,
		      LATERAL (SELECT CASE WHEN j.status = 'queued' THEN 'pending'
		                           WHEN j.status = 'building' THEN CASE WHEN k = 0 THEN 'building' ELSE 'pending' END
		                           WHEN j.status = 'partially_failed' AND k = 3 THEN 'failed' ELSE 'succeeded' END AS s) st`,
		`INSERT INTO kiln.attempt (task_id, attempt, builder, status, started_at, finished_at, reason, log_bytes)
		 SELECT t.id, 1, coalesce(t.builder, 'b' || lpad((t.id % 20)::text, 2, '0')), t.status, t.started_at, t.finished_at, t.reason, 120
		 FROM kiln.task t WHERE t.attempt = 1`,
		`INSERT INTO kiln.artifact (task_id, attempt, kind, file_name, blob_sha256, size)
		 SELECT t.id, 1, 'package', 'pkg-' || t.id || '.rpm', sha256('bench'), 5
		 FROM kiln.task t WHERE t.status = 'succeeded' AND t.job_id > (SELECT max(id) - 1000 FROM kiln.job)`,
		`INSERT INTO kiln.log_chunk (task_id, attempt, seq, data)
		 SELECT t.id, 1, s, repeat('+ make -j4 all # building and compiling line ' || s || E'\n', 20)
		 FROM kiln.task t, generate_series(0, 9) s WHERE t.attempt = 1 AND t.job_id > (SELECT max(id) - 1000 FROM kiln.job)`,
		`SELECT setval(pg_get_serial_sequence('kiln.job', 'id'), (SELECT max(id) FROM kiln.job))`,
		`SELECT setval(pg_get_serial_sequence('kiln.task', 'id'), (SELECT max(id) FROM kiln.task))`,
		`SET session_replication_role = origin`,
		`VACUUM ANALYZE`,
	}
	for _, sql := range steps {
		if _, err := conn.Exec(ctx, sql); err != nil {
			b.Fatalf("seeding: %v\n%s", err, sql)
		}
	}
	var jobs, tasks, attempts int
	if err := conn.QueryRow(ctx, `SELECT (SELECT count(*) FROM kiln.job), (SELECT count(*) FROM kiln.task), (SELECT count(*) FROM kiln.attempt)`).Scan(&jobs, &tasks, &attempts); err != nil {
		b.Fatal(err)
	}
	fmt.Printf("seeded %d jobs, %d tasks, %d attempts in %s\n", jobs, tasks, attempts, time.Since(start).Round(time.Second))
}

// BenchmarkPages measures every page and API endpoint against a farm of a
// million jobs and prints the 50th and 95th percentile of its answer time:
//
//	.ci/with-cluster go test ./internal/web/ -run '^$' -bench Pages -benchtime 200x
//
// Each request goes through HTTP to the handler and its queries, one at a
// time, as the web's own database role.
//
// make bench (cmd/kiln-bench) reports the job list and the job page from
// internal/report's BenchmarkListJobs instead, which fetches them the same
// way on the farm it seeds for kiln jobs and kiln show, so that a million
// jobs are seeded once.
func BenchmarkPages(b *testing.B) {
	n := benchJobs(b)
	db := pgtest.New(b)
	seedMillion(b, db, n)
	web := farmtest.Person(b, db, "web", "kiln_web")
	pool, err := pgxpool.New(context.Background(), db.URLAs(web))
	if err != nil {
		b.Fatal(err)
	}
	defer pool.Close()
	s, err := New(Config{DB: pool})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()

	last := int64(n)
	job := func(i int) int64 { return 1 + int64(i*7919)%last }
	pages := []struct {
		name string
		path func(i int) string
	}{
		{"dashboard", func(int) string { return "/" }},
		{"jobs", func(int) string { return "/jobs" }},
		{"jobs-submitter", func(i int) string { return fmt.Sprintf("/jobs?submitter=user%02d", i%50) }},
		{"jobs-status", func(int) string { return "/jobs?status=partially_failed" }},
		{"jobs-status-rare", func(int) string { return "/jobs?status=queued" }},
		{"jobs-bucket-status", func(int) string { return "/jobs?bucket=testing&status=succeeded" }},
		{"jobs-platform", func(int) string { return "/jobs?platform=p2-amd64" }},
		{"jobs-since", func(int) string { return "/jobs?since=1h" }},
		{"jobs-submitter-since", func(i int) string { return fmt.Sprintf("/jobs?submitter=user%02d&since=6h", i%50) }},
		{"jobs-deep-page", func(i int) string { return fmt.Sprintf("/jobs?before=%d", job(i)) }},
		{"job", func(i int) string { return fmt.Sprintf("/jobs/%d", job(i)) }},
		{"job-recent", func(i int) string { return fmt.Sprintf("/jobs/%d", last-int64(i%1000)) }},
		{"task", func(i int) string { return fmt.Sprintf("/tasks/%d", job(i)*4) }},
		{"task-log", func(i int) string { return fmt.Sprintf("/tasks/%d", (last-int64(i%900))*4) }},
		{"task-log.txt", func(i int) string { return fmt.Sprintf("/tasks/%d/log.txt", (last-int64(i%900))*4) }},
		{"builders", func(int) string { return "/builders" }},
		{"builder", func(i int) string { return fmt.Sprintf("/builders/b%02d", i%20) }},
		{"platforms", func(int) string { return "/platforms" }},
		{"api-jobs", func(i int) string { return fmt.Sprintf("/api/jobs?submitter=user%02d", i%50) }},
		{"api-job", func(i int) string { return fmt.Sprintf("/api/jobs/%d", job(i)) }},
		{"api-queue", func(int) string { return "/api/queue" }},
		{"api-health", func(int) string { return "/api/health" }},
		{"metrics", func(int) string { return "/metrics" }},
		{"healthz", func(int) string { return "/healthz" }},
	}
	fmt.Printf("%-22s %8s %8s %8s\n", "page", "p50 ms", "p95 ms", "max ms")
	for _, pg := range pages {
		b.Run(pg.name, func(b *testing.B) {
			var took []time.Duration
			for i := 0; i < b.N; i++ {
				if pg.name == "metrics" { // measure the queries, not the cache
					s.metrics.mu.Lock()
					s.metrics.at = time.Time{}
					s.metrics.mu.Unlock()
				}
				t0 := time.Now()
				resp, err := http.Get(ts.URL + pg.path(i))
				if err != nil {
					b.Fatal(err)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				took = append(took, time.Since(t0))
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("%s: %d", pg.path(i), resp.StatusCode)
				}
			}
			p50, p95 := benchstat.Percentile(took, 50), benchstat.Percentile(took, 95)
			benchstat.Report(b, "", took, 50, 95)
			if b.N >= 20 {
				fmt.Printf("%-22s %8.1f %8.1f %8.1f\n", pg.name, float64(p50.Microseconds())/1000,
					float64(p95.Microseconds())/1000, float64(took[len(took)-1].Microseconds())/1000)
			}
		})
	}
}
