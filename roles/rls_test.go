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

const take = `UPDATE kiln.task SET status = 'building', builder = $2, attempt = attempt + 1, started_at = now(), heartbeat_at = now(), reason = NULL
	WHERE id = $1 AND status = 'pending'`

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

	// b1 takes t1 for its own builder and records the attempt.
	if n := f.exec(b1, take, t1, "one"); n != 1 {
		t.Fatalf("taking a pending task: %d rows", n)
	}
	f.exec(b1, `INSERT INTO kiln.attempt (task_id, attempt, builder) VALUES ($1, 1, 'one')`, t1)

	// b2 can neither heartbeat, finish nor give back b1's task: the rows
	// are not there for it.
	for _, sql := range []string{
		`UPDATE kiln.task SET heartbeat_at = now() WHERE id = $1`,
		`UPDATE kiln.task SET status = 'failed', builder = NULL, finished_at = now(), reason = 'x' WHERE id = $1`,
		`UPDATE kiln.task SET status = 'pending', builder = NULL WHERE id = $1`,
		`UPDATE kiln.attempt SET status = 'failed', finished_at = now() WHERE task_id = $1`,
	} {
		if n := f.exec(b2, sql, t1); n != 0 {
			t.Errorf("as another builder: %s changed %d rows", sql, n)
		}
	}
	// Nor write into b1's attempt, nor claim b1's builder for a task.
	f.refused(b2, "row-level security", `INSERT INTO kiln.log_chunk (task_id, attempt, seq, data) VALUES ($1, 1, 0, 'x')`, t1)
	f.refused(b2, "row-level security", `INSERT INTO kiln.artifact (task_id, attempt, kind, file_name, size) VALUES ($1, 1, 'log', 'x', 0)`, t1)
	f.refused(b2, "row-level security", take, t2, "one")
	f.refused(b2, "row-level security", `INSERT INTO kiln.attempt (task_id, attempt, builder) VALUES ($1, 1, 'one')`, t2)
	f.refused(b2, "row-level security", `INSERT INTO kiln.builder_platform (builder, platform) VALUES ('one', 'p1')`)
	if n := f.exec(b2, `UPDATE kiln.builder SET heartbeat_at = now() WHERE name = 'one'`); n != 0 {
		t.Errorf("another builder heart-beat builder one: %d rows", n)
	}
	// b1 writes its log and finishes its own task; the job follows.
	f.exec(b1, `INSERT INTO kiln.log_chunk (task_id, attempt, seq, data) VALUES ($1, 1, 0, 'built')`, t1)
	f.exec(b1, `UPDATE kiln.attempt SET status = 'succeeded', finished_at = now() WHERE task_id = $1 AND attempt = 1`, t1)
	if n := f.exec(b1, `UPDATE kiln.task SET status = 'succeeded', builder = NULL, finished_at = now()
		WHERE id = $1 AND attempt = 1 AND builder = 'one' AND status = 'building'`, t1); n != 1 {
		t.Fatalf("finishing its own task: %d rows", n)
	}
	var status string
	if err := f.conn(alice).QueryRow(context.Background(), "SELECT status FROM kiln.job WHERE id = $1", job).Scan(&status); err != nil || status != "succeeded" {
		t.Fatalf("job status %q (%v), want succeeded", status, err)
	}
	// b2 still takes the other pending task for its own builder.
	if n := f.exec(b2, take, t2, "two"); n != 1 {
		t.Fatalf("second builder taking a pending task: %d rows", n)
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
			+ (SELECT count(*) > 0 FROM kiln.blob b JOIN kiln.package p ON p.blob_sha256 = b.sha256 WHERE p.job_id = $1)::int`, job)
		switch n {
		case 0:
			return false
		case 6:
			return true
		}
		t.Fatalf("%s sees job %d partly (%d of 6 kinds of rows)", role, job, n)
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
