package roles_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/kiln-build/kiln/internal/krb/krbtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// farm is a test database with login roles for people and daemons.
type farm struct {
	t     *testing.T
	db    *pgtest.DB
	conns map[string]*pgx.Conn
}

func newFarm(t *testing.T) *farm {
	t.Helper()
	f := &farm{t: t, db: pgtest.New(t), conns: map[string]*pgx.Conn{}}
	f.exec("postgres", `INSERT INTO kiln.platform (name, arch, package_format, backend) VALUES ('p1', 'x86_64', 'rpm', 'noop')`)
	f.exec("postgres", `INSERT INTO kiln.bucket (name, open) VALUES ('public', true)`)
	f.exec("postgres", `INSERT INTO kiln.bucket (name, private) VALUES ('secret', true)`)
	return f
}

// login creates a login role in group and returns its name.
func (f *farm) login(prefix, group string) string {
	f.t.Helper()
	name := krbtest.Unique(prefix)
	createLogin(f.t, f.db.URL, name, group)
	return name
}

func (f *farm) conn(role string) *pgx.Conn {
	f.t.Helper()
	if c, ok := f.conns[role]; ok {
		return c
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, f.db.URLAs(role))
	if err != nil {
		f.t.Fatalf("connecting as %s: %v", role, err)
	}
	f.t.Cleanup(func() { c.Close(ctx) })
	f.conns[role] = c
	return c
}

// exec runs sql as role and fails the test on error.
func (f *farm) exec(role, sql string, args ...any) int64 {
	f.t.Helper()
	tag, err := f.conn(role).Exec(context.Background(), sql, args...)
	if err != nil {
		f.t.Fatalf("as %s: %s: %v", role, sql, err)
	}
	return tag.RowsAffected()
}

// refused runs sql as role and fails the test unless it is refused with
// permission denied (42501) and a message containing want.
func (f *farm) refused(role, want, sql string, args ...any) {
	f.t.Helper()
	_, err := f.conn(role).Exec(context.Background(), sql, args...)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" || !strings.Contains(pgErr.Message, want) {
		f.t.Errorf("as %s: %s: want permission denied (%q), got %v", role, sql, want, err)
	}
}

// missing runs sql with id as role and fails the test unless it is answered
// as for a what that does not exist (no_data_found, "does not exist or is
// not yours").
func (f *farm) missing(role, what, sql string, id int64) {
	f.t.Helper()
	_, err := f.conn(role).Exec(context.Background(), sql, id)
	var pgErr *pgconn.PgError
	want := fmt.Sprintf("%s %d does not exist or is not yours", what, id)
	if !errors.As(err, &pgErr) || pgErr.Code != "P0002" || pgErr.Message != want {
		f.t.Errorf("as %s: %s: want %q (P0002), got %v", role, sql, want, err)
	}
}

// refusedCode runs sql as role and fails the test unless it fails with
// SQLSTATE code.
func (f *farm) refusedCode(role, code, sql string, args ...any) {
	f.t.Helper()
	_, err := f.conn(role).Exec(context.Background(), sql, args...)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		f.t.Errorf("as %s: %s: want SQLSTATE %s, got %v", role, sql, code, err)
	}
}

func (f *farm) int(role, sql string, args ...any) int64 {
	f.t.Helper()
	var n int64
	if err := f.conn(role).QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		f.t.Fatalf("as %s: %s: %v", role, sql, err)
	}
	return n
}

// submit inserts a job with one package as person and returns its id.
func (f *farm) submit(person, bucket string) int64 {
	f.t.Helper()
	id := f.int(person, `INSERT INTO kiln.job (bucket, platforms, submission_key) VALUES ($1, '{p1}', $2) RETURNING id`,
		bucket, krbtest.Unique("k"))
	sum := krbtest.Unique("") // unique content per job
	f.exec(person, `INSERT INTO kiln.blob (sha256, size, chunk_size) VALUES (sha256($1::bytea), 1, 1)`, sum)
	f.exec(person, `INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size) VALUES ($1, 0, 'a.src.rpm', 'srpm', sha256($2::bytea), 1)`, id, sum)
	return id
}

// task adds a pending task for job, as the splitter does.
func (f *farm) task(splitter string, job int64) int64 {
	f.t.Helper()
	return f.int(splitter, `INSERT INTO kiln.task (job_id, platform) VALUES ($1, 'p1') RETURNING id`, job)
}

// register adds a builder of platform p1 for the builder daemon's role.
func (f *farm) register(role, name string) {
	f.t.Helper()
	f.exec(role, `INSERT INTO kiln.builder (name, host, state, heartbeat_at) VALUES ($1, 'h', 'online', now())`, name)
	f.exec(role, `INSERT INTO kiln.builder_platform (builder, platform) VALUES ($1, 'p1')`, name)
}

// take takes task for builder through the task protocol, as role, and
// returns the attempt (0 when the task was not pending).
func (f *farm) take(role, builder string, task int64) int64 {
	f.t.Helper()
	return f.int(role, `SELECT coalesce(attempt, 0) FROM kiln.task_take($1, $2, (SELECT job_id FROM kiln.task WHERE id = $2), 'p1')`, builder, task)
}

// finish ends an attempt through the task protocol, as role, with no
// artifacts, and reports whether it was accepted.
func (f *farm) finish(role, builder string, task, attempt int64, status string) bool {
	f.t.Helper()
	return f.int(role, `SELECT kiln.task_finish($1, $2, $3, $4, 'x', NULL, false, '{}', '{}', '{}', '{}')::int`,
		builder, task, attempt, status) == 1
}

func TestBuilderTouchesOnlyItsOwnTasks(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	alice := f.login("alice_", "kiln_submitter")
	splitter := f.login("splitter_", "kiln_splitter")
	b1, b2 := f.login("builder_a", "kiln_builder"), f.login("builder_b", "kiln_builder")
	f.register(b1, "one")
	f.register(b2, "two")
	job := f.submit(alice, "public")
	t1, t2 := f.task(splitter, job), f.task(splitter, f.submit(alice, "public"))

	// b1 takes t1 for its own builder; the take records the attempt.
	if n := f.take(b1, "one", t1); n != 1 {
		t.Fatalf("taking a pending task: attempt %d", n)
	}

	// b2 can neither heartbeat, log into, finish nor give back b1's
	// attempt, in its own builder's name or in b1's.
	if n := f.int(b2, `SELECT count(*) FROM kiln.task_heartbeat('two', ARRAY[$1::bigint], '{1}')`, t1); n != 1 {
		t.Errorf("another builder's heartbeat of b1's attempt was not refused")
	}
	if f.int(b2, `SELECT kiln.task_log('two', $1, 1, 0, 'x', false)::int`, t1) != 0 {
		t.Errorf("another builder logged into b1's attempt")
	}
	if f.finish(b2, "two", t1, 1, "failed") {
		t.Errorf("another builder finished b1's attempt")
	}
	if f.int(b2, `SELECT kiln.task_give_back('two', $1, 1)::int`, t1) != 0 {
		t.Errorf("another builder gave back b1's attempt")
	}
	const notOwn = "is not one of the builders"
	f.refused(b2, notOwn, `SELECT kiln.task_heartbeat('one', ARRAY[$1::bigint], '{1}')`, t1)
	f.refused(b2, notOwn, `SELECT kiln.task_log('one', $1, 1, 0, 'x', false)`, t1)
	f.refused(b2, notOwn, `SELECT kiln.task_finish('one', $1, 1, 'failed', 'x', NULL, false, '{}', '{}', '{}', '{}')`, t1)
	f.refused(b2, notOwn, `SELECT kiln.task_give_back('one', $1, 1)`, t1)
	f.refused(b2, notOwn, `SELECT kiln.task_recover('one', $1, 1)`, t1)
	f.refused(b2, notOwn, `SELECT kiln.task_take('one', $1, (SELECT job_id FROM kiln.task WHERE id = $1), 'p1')`, t2)
	f.refused(b2, "row-level security", `INSERT INTO kiln.builder_platform (builder, platform) VALUES ('one', 'p1')`)
	if n := f.exec(b2, `UPDATE kiln.builder SET heartbeat_at = now() WHERE name = 'one'`); n != 0 {
		t.Errorf("another builder heart-beat builder one: %d rows", n)
	}
	// b1 writes its log and finishes its own task; the job follows.
	if f.int(b1, `SELECT kiln.task_log('one', $1, 1, 0, 'built', false)::int`, t1) != 1 {
		t.Fatal("b1's log batch was refused")
	}
	if !f.finish(b1, "one", t1, 1, "succeeded") {
		t.Fatal("b1's finish of its own attempt was refused")
	}
	var status string
	if err := f.conn(alice).QueryRow(context.Background(), "SELECT status FROM kiln.job WHERE id = $1", job).Scan(&status); err != nil || status != "succeeded" {
		t.Fatalf("job status %q (%v), want succeeded", status, err)
	}
	// b2 still takes the other pending task for its own builder.
	if n := f.take(b2, "two", t2); n != 1 {
		t.Fatalf("second builder taking a pending task: attempt %d", n)
	}
}

func TestPersonCancelsOnlyOwnJobs(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	alice, bob := f.login("alice_", "kiln_submitter"), f.login("bob_", "kiln_submitter")
	adm := f.login("admin_", "kiln_admin")
	splitter := f.login("splitter_", "kiln_splitter")
	job := f.submit(alice, "public")
	task := f.task(splitter, job)

	// Someone else's job is answered as one that does not exist.
	f.missing(bob, "job", `SELECT kiln.cancel_job($1)`, job)
	f.missing(bob, "task", `SELECT kiln.cancel_task($1)`, task)
	// Around the functions: no grant to change jobs or tasks at all.
	f.refused(bob, "permission denied", `UPDATE kiln.job SET status = 'cancelled', finished_at = now() WHERE id = $1`, job)
	f.refused(bob, "permission denied", `UPDATE kiln.task SET status = 'cancelled', finished_at = now() WHERE id = $1`, task)
	f.refused(bob, "permission denied", `DELETE FROM kiln.job WHERE id = $1`, job)
	// Nor slip a package into someone else's job.
	f.refused(bob, "row-level security", `INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size)
		SELECT $1, 1, 'b.src.rpm', 'srpm', blob_sha256, size FROM kiln.package WHERE job_id = $1`, job)
	// Nor call the janitor's repair function.
	f.refused(bob, "permission denied", `SELECT kiln.refresh_job_status($1)`, job)

	var status string
	if err := f.conn(alice).QueryRow(context.Background(), "SELECT kiln.cancel_task($1)", task).Scan(&status); err != nil || status != "cancelled" {
		t.Fatalf("alice cancelling her task: %q, %v", status, err)
	}
	job2 := f.submit(alice, "public")
	if err := f.conn(adm).QueryRow(context.Background(), "SELECT kiln.cancel_job($1)", job2).Scan(&status); err != nil || status != "cancelled" {
		t.Fatalf("an admin cancelling alice's job: %q, %v", status, err)
	}
	if who := f.int("postgres", `SELECT count(*) FROM kiln.job WHERE id = $1 AND cancelled_by = $2`, job2, adm); who != 1 {
		t.Fatalf("cancelled_by is not the admin")
	}
}

func TestPrivateBucketsHideJobs(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	carol, dave, erin := f.login("carol_", "kiln_submitter"), f.login("dave_", "kiln_submitter"), f.login("erin_", "kiln_submitter")
	adm := f.login("admin_", "kiln_admin")
	web := f.login("web_", "kiln_web")
	splitter, janitor := f.login("splitter_", "kiln_splitter"), f.login("janitor_", "kiln_janitor")
	f.exec("postgres", `INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('secret', $1)`, erin)
	secret, public := f.submit(carol, "secret"), f.submit(carol, "public")
	f.task(splitter, secret)
	f.task(splitter, public)

	visible := func(role string, job int64) bool {
		t.Helper()
		n := f.int(role, `SELECT (SELECT count(*) > 0 FROM kiln.job WHERE id = $1)::int + (SELECT count(*) > 0 FROM kiln.job_summary WHERE job_id = $1)::int
			+ (SELECT count(*) > 0 FROM kiln.task WHERE job_id = $1)::int + (SELECT count(*) > 0 FROM kiln.package WHERE job_id = $1)::int
			+ (SELECT count(*) > 0 FROM kiln.event WHERE job_id = $1 AND kind = 'job.status')::int
			+ (SELECT count(*) > 0 FROM kiln.blob b JOIN kiln.package p ON p.blob_sha256 = b.sha256 WHERE p.job_id = $1)::int
			+ (SELECT count(*) > 0 FROM kiln.job_statuses_from_tasks(ARRAY[$1::bigint]))::int
			+ (kiln.job_status_from_tasks($1) IS NOT NULL)::int`, job)
		switch n {
		case 0:
			return false
		case 8:
			return true
		}
		t.Fatalf("%s sees job %d partly (%d of 8 kinds of rows)", role, job, n)
		return false
	}
	for _, c := range []struct {
		role   string
		secret bool
	}{{carol, true}, {erin, true}, {adm, true}, {dave, false}, {web, false}} {
		if got := visible(c.role, secret); got != c.secret {
			t.Errorf("%s sees the private job: %v, want %v", c.role, got, c.secret)
		}
		if !visible(c.role, public) {
			t.Errorf("%s does not see the public job", c.role)
		}
	}
	for _, daemon := range []string{splitter, janitor} {
		if n := f.int(daemon, `SELECT count(*) FROM kiln.job WHERE id = $1`, secret); n != 1 {
			t.Errorf("%s does not see the private job", daemon)
		}
	}
	// Withdrawing the grant hides it again.
	f.exec("postgres", `DELETE FROM kiln.bucket_grant WHERE grantee = $1`, erin)
	if visible(erin, secret) {
		t.Errorf("erin still sees the private job after the grant was withdrawn")
	}
}
