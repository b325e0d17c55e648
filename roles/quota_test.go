package roles_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/krb/krbtest"
	"github.com/kiln-build/kiln/riverjob"
)

// The attacks of the quota finding, each made as a person's own SQL session
// (schema/0018_quotas.sql, docs/quotas.md).

const quotaCode = "KL001"

// overQuota fails the test unless err is the quota refusal for quota (a
// column of kiln.quota) with a message containing want.
func overQuota(t *testing.T, err error, quota, want string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != quotaCode || pgErr.Detail != "quota="+quota || !strings.Contains(pgErr.Message, want) {
		t.Fatalf("want quota %s refused (%s, %q), got %v", quota, quotaCode, want, err)
	}
	if !strings.Contains(pgErr.Hint, "kiln admin quota set") {
		t.Errorf("quota refusal without the admin hint: %q", pgErr.Hint)
	}
}

// clearOfWindowEdges waits, when the clock is within a few seconds of a
// full hour, until it has passed: a test that fills a window and then
// expects a refusal must not see the window change in between.
func clearOfWindowEdges(t *testing.T) {
	t.Helper()
	now := time.Now().UTC()
	if next := now.Truncate(time.Hour).Add(time.Hour); next.Sub(now) < 15*time.Second {
		time.Sleep(next.Sub(now) + time.Second)
	}
}

// insertJobs inserts n jobs as role in one statement.
func (f *farm) insertJobs(role string, n int) error {
	_, err := f.conn(role).Exec(context.Background(), `INSERT INTO kiln.job (bucket, platforms, submission_key)
		SELECT 'public', '{p1}', $1 || g FROM generate_series(1, $2) g`, krbtest.Unique("q"), n)
	return err
}

func (f *farm) jobsOf(role string) int64 {
	f.t.Helper()
	return f.int("postgres", `SELECT count(*) FROM kiln.job WHERE submitter = $1`, role)
}

// 1. Many jobs fast: 20,000 in one statement, then the hour's limit exactly.
func TestQuotaJobsPerHour(t *testing.T) {
	t.Parallel()
	clearOfWindowEdges(t)
	f := newFarm(t)
	alice := f.login("alice_", "kiln_submitter")

	overQuota(t, f.insertJobs(alice, 20000), "jobs_per_hour", "exceeded for "+alice+": 500 jobs since")
	if n := f.jobsOf(alice); n != 0 {
		t.Fatalf("the refused statement left %d jobs", n)
	}
	// The default is 500 an hour: all of them go in, the 501st does not,
	// and the message says when the window resets.
	if err := f.insertJobs(alice, 500); err != nil {
		t.Fatalf("500 jobs in an hour: %v", err)
	}
	err := f.insertJobs(alice, 1)
	hour := time.Now().UTC().Truncate(time.Hour)
	overQuota(t, err, "jobs_per_hour", fmt.Sprintf("500 jobs since %s UTC (limit 500); resets at %s UTC",
		hour.Format("2006-01-02 15:04"), hour.Add(time.Hour).Format("2006-01-02 15:04")))
	if n := f.jobsOf(alice); n != 500 {
		t.Fatalf("alice has %d jobs, want 500", n)
	}
	// Someone else is not affected.
	if err := f.insertJobs(f.login("bob_", "kiln_submitter"), 1); err != nil {
		t.Fatalf("bob's first job: %v", err)
	}
}

// 2 and 3. A 20 MB options object and a 200,000-entry platform list.
func TestQuotaJobSizes(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	alice := f.login("alice_", "kiln_submitter")
	ctx := context.Background()
	insert := func(options string, platforms []string) error {
		_, err := f.conn(alice).Exec(ctx, `INSERT INTO kiln.job (bucket, platforms, options, submission_key) VALUES ('public', $1, $2, $3)`,
			platforms, options, krbtest.Unique("s"))
		return err
	}
	big := `{"x": "` + strings.Repeat("a", 20<<20) + `"}`
	overQuota(t, insert(big, []string{"p1"}), "options_bytes", fmt.Sprintf("options of %d bytes (limit 65536)", len(big)))
	fits := `{"x": "` + strings.Repeat("a", 64<<10-9) + `"}`
	if err := insert(fits, []string{"p1"}); err != nil {
		t.Fatalf("options of exactly 64 KiB: %v", err)
	}
	many := make([]string, 200000)
	for i := range many {
		many[i] = fmt.Sprintf("p%d", i)
	}
	overQuota(t, insert("{}", many), "platforms_per_job", "200000 platforms in the list (limit 1000)")
	if err := insert("{}", many[:1000]); err != nil {
		t.Fatalf("1000 platforms: %v", err)
	}
	// Entries no platform name can be, and bucket names, are refused too.
	var pgErr *pgconn.PgError
	if err := insert("{}", []string{strings.Repeat("p", 52)}); !errors.As(err, &pgErr) || pgErr.Code != "23514" {
		t.Errorf("a 52-byte platform entry: %v", err)
	}
	_, err := f.conn(alice).Exec(ctx, `INSERT INTO kiln.job (bucket, submission_key) VALUES (repeat('b', 1000000), 'long-bucket')`)
	if !errors.As(err, &pgErr) || pgErr.Code != "23514" {
		t.Errorf("a 1 MB bucket name: %v", err)
	}
	if n := f.jobsOf(alice); n != 2 {
		t.Fatalf("alice has %d jobs, want the 2 that fit", n)
	}
}

// put stores data as a blob in a transaction of role's and commits it.
func (f *farm) put(role string, data []byte, verified bool) (blob.Info, error) {
	ctx := context.Background()
	tx, err := f.conn(role).Begin(ctx)
	if err != nil {
		f.t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	info, err := blob.Put(ctx, tx, bytes.NewReader(data), verified)
	if err != nil {
		return info, err
	}
	return info, tx.Commit(ctx)
}

func (f *farm) bytesToday(role string) int64 {
	f.t.Helper()
	return f.int("postgres", `SELECT coalesce(sum(used), 0) FROM kiln.quota_usage
		WHERE person = $1 AND quota = 'bytes_per_day' AND window_start = date_trunc('day', now(), 'UTC')`, role)
}

func randomBytes(n int, seed int64) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

// 4. A large blob that nobody references, past the day's bytes; reusing
// stored bytes costs nothing.
func TestQuotaBytesPerDay(t *testing.T) {
	t.Parallel()
	clearOfWindowEdges(t)
	f := newFarm(t)
	alice := f.login("alice_", "kiln_submitter")
	// 20 GiB is the default; the attack is the same with 40 MiB.
	f.exec("postgres", `INSERT INTO kiln.quota (person, bytes_per_day) VALUES ($1, 40 << 20)`, alice)

	small := randomBytes(30<<20, 1)
	info, err := f.put(alice, small, false)
	if err != nil {
		t.Fatalf("30 MiB of 40: %v", err)
	}
	if used := f.bytesToday(alice); used != 30<<20 {
		t.Fatalf("30 MiB stored, %d bytes counted", used)
	}
	// The same bytes again: reused, not stored, not counted.
	if again, err := f.put(alice, small, false); err != nil || again.New || again.Sum != info.Sum {
		t.Fatalf("storing the same bytes again: %+v, %v", again, err)
	}
	if used := f.bytesToday(alice); used != 30<<20 {
		t.Fatalf("a reused blob was counted: %d bytes", used)
	}

	huge := randomBytes(100<<20, 2)
	_, err = f.put(alice, huge, false)
	overQuota(t, err, "bytes_per_day", "storing a blob of 100 MB would make 136314880 bytes since")
	overQuota(t, err, "bytes_per_day", "(limit 41943040 bytes, 40 MB); resets at ")
	// Refused when the blob row is stored, before any chunk is sent.
	if strings.Contains(err.Error(), "storing chunks") {
		t.Errorf("refused only once chunks were sent: %v", err)
	}
	if used := f.bytesToday(alice); used != 30<<20 {
		t.Fatalf("the refused upload was counted: %d bytes", used)
	}
	if n := f.int("postgres", `SELECT count(*) FROM kiln.blob WHERE created_by = $1`, alice); n != 1 {
		t.Fatalf("alice has %d blobs, want the one that fitted", n)
	}
	// What is left still fits.
	if _, err := f.put(alice, randomBytes(10<<20, 3), false); err != nil {
		t.Fatalf("the last 10 MiB: %v", err)
	}
	// Several blobs in one statement are charged together (the trigger is
	// statement-level) and refused together, past the limit.
	_, err = f.conn(alice).Exec(context.Background(), `INSERT INTO kiln.blob (sha256, size, chunk_size)
		SELECT sha256(convert_to($1 || g, 'UTF8')), 1 << 20, 262144 FROM generate_series(1, 3) g`, krbtest.Unique("many"))
	overQuota(t, err, "bytes_per_day", "storing 3 blobs of 3072 kB in all would make 45088768 bytes since")
	if used := f.bytesToday(alice); used != 40<<20 {
		t.Fatalf("the refused blobs were counted: %d bytes", used)
	}

	// Declaring a small blob and storing more in its chunks does not get
	// round the count: chunks stay within the declared size and layout.
	f.exec("postgres", `UPDATE kiln.quota SET bytes_per_day = NULL WHERE person = $1`, alice)
	ctx := context.Background()
	for _, chunks := range []string{
		`(0, repeat('x', 2000))`,                         // one chunk past the size
		`(0, repeat('x', 1000)), (1, repeat('x', 1000))`, // two within the size, the second past it
		`(5000, 'x')`, // a chunk numbered past the end
	} {
		err := pgx.BeginFunc(ctx, f.conn(alice), func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `INSERT INTO kiln.blob (sha256, size, chunk_size) VALUES (sha256($1::bytea), 1500, 1000)`, chunks); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO kiln.blob_chunk (sha256, seq, data) SELECT sha256($1::bytea), s, convert_to(d, 'UTF8') FROM (VALUES `+chunks+`) c (s, d)`, chunks)
			return err
		})
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "23514" || !strings.Contains(pgErr.Message, "past the blob's declared size of 1500 bytes") {
			t.Errorf("chunks %s of a 1500-byte blob: %v", chunks, err)
		}
	}
	if n := f.int("postgres", `SELECT count(*) FROM kiln.blob WHERE created_by = $1`, alice); n != 2 {
		t.Fatalf("alice has %d blobs, want 2", n)
	}
}

// riverInsert inserts a River job as role through River, as kiln submit does.
func (f *farm) riverInsert(role string, args river.JobArgs) error {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, f.db.URLAs(role))
	if err != nil {
		f.t.Fatal(err)
	}
	defer pool.Close()
	rc, err := river.NewClient(riverpgxv5.New(pool), &river.Config{Schema: "river"})
	if err != nil {
		f.t.Fatal(err)
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		_, err := rc.InsertTx(ctx, tx, args, nil)
		return err
	})
}

// 5. Many validate River jobs for one job, and a 100 KB one.
func TestQuotaRiverJobs(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	alice := f.login("alice_", "kiln_submitter")
	job := f.submit(alice, "public")
	for i := 0; i < 5; i++ {
		if err := f.riverInsert(alice, riverjob.ValidateArgs{JobID: job}); err != nil {
			t.Fatalf("validate River job %d of 5: %v", i+1, err)
		}
	}
	err := f.riverInsert(alice, riverjob.ValidateArgs{JobID: job})
	overQuota(t, err, "validate_river_jobs_per_job", fmt.Sprintf("job %d already has 5 validate River jobs (limit 5)", job))
	_, err = f.conn(alice).Exec(context.Background(), `INSERT INTO river.river_job (args, kind, max_attempts, queue, state)
		VALUES (jsonb_build_object('job_id', $1::bigint, 'pad', repeat('x', 100000)), 'validate', 1, 'incoming', 'available')`, f.submit(alice, "public"))
	overQuota(t, err, "river_job_bytes", "(limit 8192)")
	if n := f.int("postgres", `SELECT count(*) FROM river.river_job`); n != 5 {
		t.Fatalf("%d River jobs stored, want 5", n)
	}
}

// 6. Concurrent submits of one person at the limit: no more than the limit
// commit, however they interleave.
func TestQuotaConcurrentSubmits(t *testing.T) {
	t.Parallel()
	clearOfWindowEdges(t)
	f := newFarm(t)
	alice := f.login("alice_", "kiln_submitter")
	f.exec("postgres", `INSERT INTO kiln.quota (person, jobs_per_hour) VALUES ($1, 10)`, alice)
	ctx := context.Background()

	// Two sessions at the boundary: nine jobs stored, both insert the tenth
	// in open transactions. The second waits for the first and, once that
	// commits, is refused.
	if err := f.insertJobs(alice, 9); err != nil {
		t.Fatal(err)
	}
	one, two := f.session(alice), f.session(alice)
	tx1, err := one.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx1.Exec(ctx, `INSERT INTO kiln.job (bucket, submission_key) VALUES ('public', 'first')`); err != nil {
		t.Fatalf("the tenth job: %v", err)
	}
	second := make(chan error, 1)
	go func() {
		_, err := two.Exec(ctx, `INSERT INTO kiln.job (bucket, submission_key) VALUES ('public', 'second')`)
		second <- err
	}()
	if err := tx1.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	overQuota(t, <-second, "jobs_per_hour", "10 jobs since")

	// And many at once: a fresh limit of 10 more, 8 sessions of 3 jobs.
	f.exec("postgres", `UPDATE kiln.quota SET jobs_per_hour = 20 WHERE person = $1`, alice)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		c := f.session(alice)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
				for k := 0; k < 3; k++ {
					if _, err := tx.Exec(ctx, `INSERT INTO kiln.job (bucket, submission_key) VALUES ('public', $1)`, krbtest.Unique("c")); err != nil {
						return err
					}
				}
				return nil
			})
		}()
	}
	wg.Wait()
	// The sessions are counted one after the other: three fit whole (19
	// jobs), the fourth reaches 21 and rolls back, so do the rest.
	if n := f.jobsOf(alice); n != 19 {
		t.Fatalf("alice has %d jobs, want 19 (10, then three sessions of 3 under the limit of 20)", n)
	}
}

// session opens a connection of its own as role (farm.conn shares one).
func (f *farm) session(role string) *pgx.Conn {
	f.t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, f.db.URLAs(role))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { c.Close(ctx) })
	return c
}

// 7. An admin raises one person's limit; everyone else keeps the default.
// 9. A person cannot change quotas, their own or anyone's.
func TestQuotaAdminOverride(t *testing.T) {
	t.Parallel()
	clearOfWindowEdges(t)
	f := newFarm(t)
	alice, bob := f.login("alice_", "kiln_submitter"), f.login("bob_", "kiln_submitter")
	adm := f.login("admin_", "kiln_admin")

	for _, sql := range []string{
		`INSERT INTO kiln.quota (person, jobs_per_hour) VALUES (session_user, 100000)`,
		`UPDATE kiln.quota SET jobs_per_hour = 100000 WHERE person = 'public'`,
		`DELETE FROM kiln.quota`,
		`INSERT INTO kiln.quota_usage (person, quota, window_start, used) VALUES (session_user, 'jobs_per_hour', 'epoch', 0)`,
		`UPDATE kiln.quota_usage SET used = 0`,
		`DELETE FROM kiln.quota_usage`,
		`SELECT kiln.quota_charge(session_user, 'jobs_per_hour', -1000)`,
		`SELECT kiln.quota_lock('bob')`,
		`SELECT kiln.quota_refuse('bob', 'jobs_per_hour', 'x')`,
		`SELECT kiln.quota_for('bob')`,
		`SELECT kiln.quota_builtin()`,
	} {
		f.refused(alice, "permission denied", sql)
	}
	// Anyone may ask what applies to a person.
	if n := f.int(alice, `SELECT (kiln.quota_limits($1)).jobs_per_hour`, bob); n != 500 {
		t.Fatalf("bob's jobs per hour as alice reads them: %d", n)
	}
	// Only the defaults row stays, whoever asks.
	f.refused(adm, "cannot be removed", `DELETE FROM kiln.quota WHERE person = 'public'`)

	f.exec(adm, `INSERT INTO kiln.quota (person, jobs_per_hour) VALUES ($1, 600)`, alice)
	if who := f.int("postgres", `SELECT count(*) FROM kiln.quota WHERE person = $1 AND set_by = $2`, alice, adm); who != 1 {
		t.Fatalf("the override does not name the admin who set it")
	}
	if err := f.insertJobs(alice, 600); err != nil {
		t.Fatalf("alice's 600 jobs under her raised limit: %v", err)
	}
	overQuota(t, f.insertJobs(alice, 1), "jobs_per_hour", "(limit 600)")
	overQuota(t, f.insertJobs(bob, 501), "jobs_per_hour", "(limit 500)")
	// Removing the override brings back the default.
	f.exec(adm, `DELETE FROM kiln.quota WHERE person = $1`, alice)
	overQuota(t, f.insertJobs(alice, 1), "jobs_per_hour", "600 jobs since")
	overQuota(t, f.insertJobs(alice, 1), "jobs_per_hour", "(limit 500)")
}

// 8. The daemons are not limited: a builder stores a big blob, the splitter
// and the janitor insert River jobs past every person's limit, superusers
// too.
func TestQuotaDaemonsUnlimited(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	alice := f.login("alice_", "kiln_submitter")
	builder := f.login("builder_", "kiln_builder")
	splitter, janitor := f.login("splitter_", "kiln_splitter"), f.login("janitor_", "kiln_janitor")
	// Everyone's defaults tiny: 1 MiB a day, one validate River job per job,
	// 100-byte River jobs.
	f.exec("postgres", `UPDATE kiln.quota SET bytes_per_day = 1 << 20, validate_river_jobs_per_job = 1, river_job_bytes = 100 WHERE person = 'public'`)

	if _, err := f.put(builder, randomBytes(8<<20, 4), true); err != nil {
		t.Fatalf("a builder storing 8 MiB: %v", err)
	}
	if _, err := f.put("postgres", randomBytes(2<<20, 5), false); err != nil {
		t.Fatalf("a superuser storing 2 MiB: %v", err)
	}
	_, err := f.put(alice, randomBytes(2<<20, 6), false)
	overQuota(t, err, "bytes_per_day", "(limit 1048576 bytes, 1024 kB)")

	job := f.submit(alice, "public")
	for _, role := range []string{splitter, splitter, janitor, janitor, "postgres"} {
		if err := f.riverInsert(role, riverjob.ValidateArgs{JobID: job}); err != nil {
			t.Fatalf("%s inserting a validate River job: %v", role, err)
		}
	}
	for i := 0; i < 20; i++ {
		if err := f.riverInsert(splitter, riverjob.BuildArgs{TaskID: int64(i), JobID: job, Platform: "p1"}); err != nil {
			t.Fatalf("the splitter inserting build River job %d: %v", i, err)
		}
	}
	if n := f.int("postgres", `SELECT count(*) FROM kiln.quota_usage WHERE person <> $1`, alice); n != 0 {
		t.Fatalf("%d usage rows counted for daemons or superusers", n)
	}
	// The person's own validate River job is the one that is too large now.
	overQuota(t, f.riverInsert(alice, riverjob.ValidateArgs{JobID: job}), "river_job_bytes", "(limit 100)")
}

// kiln-web resubmitting for a person counts against that person's jobs,
// not the web's.
func TestQuotaWebResubmit(t *testing.T) {
	t.Parallel()
	clearOfWindowEdges(t)
	f := newFarm(t)
	alice := f.login("alice_", "kiln_submitter")
	web := f.login("web_", "kiln_web")
	f.exec("postgres", `INSERT INTO kiln.quota (person, jobs_per_hour) VALUES ($1, 2)`, alice)
	job := f.submit(alice, "public")
	if n := f.int(web, `SELECT kiln.web_resubmit($1, $2, 'again-1')`, alice, job); n == 0 {
		t.Fatal("no job")
	}
	_, err := f.conn(web).Exec(context.Background(), `SELECT kiln.web_resubmit($1, $2, 'again-2')`, alice, job)
	overQuota(t, err, "jobs_per_hour", "exceeded for "+alice+": 2 jobs since")
	if n := f.jobsOf(alice); n != 2 {
		t.Fatalf("alice has %d jobs, want 2", n)
	}
}
