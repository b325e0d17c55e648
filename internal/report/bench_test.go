package report_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/cli"
	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/testsupport/benchstat"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/internal/web"
)

// BenchmarkListJobs measures the listings on a farm of KILN_BENCH_JOBS jobs
// (default 200000; the figures in docs/reporting.md are for 1000000), each
// with one package and tasks on two of four platforms (all four with
// KILN_BENCH_TASKS_PER_JOB=4, as make bench seeds 4 million tasks), one job
// in a thousand on a rare platform, 50 submitters, a tenth in bucket
// stable, one in twenty failed, the newest hundred queued. Rows are written
// with generate_series and triggers off (session_replication_role), which
// is how a farm of that size is made quickly, not how the farm writes them.
// Every sub-benchmark reports its p50 and p95 besides the mean; kiln_jobs
// and kiln_show run the CLI's commands in process as a kiln_submitter role
// (a new connection each time, as the command makes). web_jobs and web_job
// fetch the web's job list and job page over HTTP from its handler
// (internal/web) as a kiln_web role, the two pages internal/web's
// BenchmarkPages measures with the rest on a farm of its own; measuring
// them here seeds the million jobs of make bench once.
//
//	.ci/with-cluster go test ./internal/report/ -run '^$' -bench ListJobs -benchtime 200x
func BenchmarkListJobs(b *testing.B) {
	n := 200000
	if s := os.Getenv("KILN_BENCH_JOBS"); s != "" {
		var err error
		if n, err = strconv.Atoi(s); err != nil {
			b.Fatalf("KILN_BENCH_JOBS: %v", err)
		}
	}
	platforms := `CASE WHEN j.id % 1000 = 7 THEN ARRAY['rare-s390x']
		WHEN j.id % 2 = 0 THEN ARRAY['el9-x86_64', 'el9-aarch64']
		ELSE ARRAY['el9-x86_64', 'el8-x86_64'] END`
	switch os.Getenv("KILN_BENCH_TASKS_PER_JOB") {
	case "", "2":
	case "4":
		platforms = `CASE WHEN j.id % 1000 = 7 THEN ARRAY['rare-s390x']
			ELSE ARRAY['el9-x86_64', 'el9-aarch64', 'el8-x86_64', 'el8-aarch64'] END`
	default:
		b.Fatal("KILN_BENCH_TASKS_PER_JOB: 2 or 4")
	}
	db := pgtest.New(b)
	ctx := context.Background()
	start := time.Now()
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		b.Fatal(err)
	}
	_, err = conn.Exec(ctx, strings.ReplaceAll(strings.ReplaceAll(`SET session_replication_role = replica;
		INSERT INTO kiln.platform (name, arch, package_format, backend) VALUES
			('el9-x86_64', 'x86_64', 'rpm', 'rpmbuild'), ('el9-aarch64', 'aarch64', 'rpm', 'rpmbuild'),
			('el8-x86_64', 'x86_64', 'rpm', 'rpmbuild'), ('el8-aarch64', 'aarch64', 'rpm', 'rpmbuild'),
			('rare-s390x', 's390x', 'rpm', 'rpmbuild');
		INSERT INTO kiln.blob (sha256, size, chunk_size) VALUES (sha256('x'), 1, 262144);
		INSERT INTO kiln.job (submitter, bucket, submission_key, status, submitted_at, validated_at, started_at, finished_at)
		SELECT 'user' || (g % 50), CASE WHEN g % 10 = 0 THEN 'stable' ELSE 'devel' END, 'k' || g,
		       CASE WHEN g > $1 - 100 THEN 'queued' WHEN g % 20 = 0 THEN 'failed' ELSE 'succeeded' END,
		       now() - ($1 - g) * interval '10 seconds', now(), now(),
		       CASE WHEN g > $1 - 100 THEN NULL ELSE now() END
		FROM generate_series(1, $1) g;
		INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size, name)
		SELECT id, 0, 'pkg' || (id % 1000) || '-1-1.src.rpm', 'srpm', sha256('x'), 1, 'pkg' || (id % 1000) FROM kiln.job;
		INSERT INTO kiln.task (job_id, platform, status, created_at, started_at, finished_at, attempt, reason)
		SELECT j.id, p.platform,
		       CASE WHEN j.status = 'queued' THEN 'pending' WHEN j.status = 'failed' THEN 'failed' ELSE 'succeeded' END,
		       j.submitted_at, CASE WHEN j.status <> 'queued' THEN j.submitted_at END,
		       j.finished_at, CASE WHEN j.status = 'queued' THEN 0 ELSE 1 END,
		       CASE WHEN j.status = 'failed' THEN 'failed' END
		FROM kiln.job j
		CROSS JOIN LATERAL (SELECT unnest($2) AS platform) p;
		RESET session_replication_role;
		ANALYZE;`, "$1", strconv.Itoa(n)), "$2", platforms))
	conn.Release()
	if err != nil {
		b.Fatalf("seeding %d jobs: %v", n, err)
	}
	b.Logf("seeded %d jobs in %s", n, time.Since(start).Round(time.Second))

	var newest int64
	if err := db.Pool.QueryRow(ctx, "SELECT max(id) FROM kiln.job").Scan(&newest); err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name string
		f    report.Filter
	}{
		{"newest", report.Filter{}},
		{"user", report.Filter{Submitter: "user7"}},
		{"status_failed", report.Filter{Status: []string{"failed"}}},
		{"status_queued", report.Filter{Status: []string{"queued"}}},
		{"bucket_stable", report.Filter{Bucket: "stable"}},
		{"platform_rare", report.Filter{Platform: "rare-s390x"}},
		{"platform_common", report.Filter{Platform: "el9-aarch64"}},
		{"since_1h", report.Filter{Since: time.Now().Add(-time.Hour)}},
		{"user_failed_since_1d", report.Filter{Submitter: "user10", Status: []string{"failed"}, Since: time.Now().Add(-24 * time.Hour)}},
		{"page_in_the_middle", report.Filter{Before: newest / 2}},
	} {
		b.Run(c.name, func(b *testing.B) {
			timed(b, func() {
				l, err := report.ListJobs(ctx, db.Pool, c.f)
				if err != nil {
					b.Fatal(err)
				}
				if len(l.Jobs) == 0 {
					b.Fatal("no jobs")
				}
			})
		})
	}
	b.Run("get_job", func(b *testing.B) {
		timed(b, func() {
			if _, err := report.GetJob(ctx, db.Pool, newest/3); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("queue", func(b *testing.B) {
		timed(b, func() {
			if _, err := report.GetQueue(ctx, db.Pool, report.QueueFilter{Submitter: "user7"}); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("health", func(b *testing.B) {
		timed(b, func() {
			if _, err := report.GetHealth(ctx, db.Pool); err != nil {
				b.Fatal(err)
			}
		})
	})

	// The commands as a person runs them: kiln jobs (the newest page) and
	// kiln show of a job in the middle of the history.
	person := farmtest.Person(b, db, "reader", "kiln_submitter")
	for _, c := range []struct {
		name string
		args []string
	}{
		{"kiln_jobs", []string{"jobs"}},
		{"kiln_show", []string{"show", strconv.FormatInt(newest/2, 10)}},
	} {
		b.Run(c.name, func(b *testing.B) {
			timed(b, func() {
				app := cli.App()
				var out strings.Builder
				app.Writer, app.ErrWriter = &out, &out
				args := append([]string{"kiln", "--config", "/dev/null", "--color", "never", "--db", db.URLAs(person)}, c.args...)
				if err := app.RunContext(ctx, args); err != nil {
					b.Fatalf("kiln %s: %v\n%s", strings.Join(c.args, " "), err, out.String())
				}
			})
		})
	}

	// The web's job list (newest page) and the page of the same job as kiln
	// show, fetched as internal/web's BenchmarkPages fetches them.
	webRole := farmtest.Person(b, db, "web", "kiln_web")
	webPool, err := pgxpool.New(ctx, db.URLAs(webRole))
	if err != nil {
		b.Fatal(err)
	}
	defer webPool.Close()
	site, err := web.New(web.Config{DB: webPool})
	if err != nil {
		b.Fatal(err)
	}
	ts := httptest.NewServer(site.Handler())
	defer ts.Close()
	for _, c := range []struct {
		name, path, want string
	}{
		{"web_jobs", "/jobs", fmt.Sprintf("/jobs/%d", newest)},
		{"web_job", fmt.Sprintf("/jobs/%d", newest/2), fmt.Sprintf("Job %d", newest/2)},
	} {
		b.Run(c.name, func(b *testing.B) {
			timed(b, func() {
				resp, err := http.Get(ts.URL + c.path)
				if err != nil {
					b.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), c.want) {
					b.Fatalf("GET %s: %d, %v; want a page with %q", c.path, resp.StatusCode, err, c.want)
				}
			})
		})
	}
}

// timed runs f as the benchmark's loop and reports the p50 and p95 of its
// durations besides the mean.
func timed(b *testing.B, f func()) {
	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		f()
		lat = append(lat, time.Since(start))
	}
	benchstat.Report(b, "", lat, 50, 95)
}
