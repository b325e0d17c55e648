package roles_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// The attack suite (docs/security.md): one test per class of hole found by
// attacking the database, each written as the attacker would, in a SQL
// session as the attacking role. A test fails when its class reopens.

// evil is a temporary function an attacker hopes kiln_owner runs: it marks
// the victim's job and empties its note field only as the owner could.
const evil = `CREATE FUNCTION pg_temp.evil() RETURNS boolean LANGUAGE sql
	AS $$ UPDATE kiln.job SET note = 'pwned', cancelled_by = session_user WHERE id = %d; SELECT true $$`

// TestAttackTempShadowing: a person (or kiln-web) puts objects in its
// temporary schema named like what kiln's functions use (a domain named
// like a type, a view named like a catalog) and calls the functions,
// hoping they resolve to its objects and run its code as kiln_owner.
// Two walls: no role may create temporary objects (roles/00-groups.sql),
// and, where a DBA grants TEMP anyway, every function's search_path puts
// pg_temp last (schema/0017_hardening.sql), so nothing resolves there.
func TestAttackTempShadowing(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	alice, bob := f.login("alice_", "kiln_submitter"), f.login("bob_", "kiln_submitter")
	web, builder := f.login("web_", "kiln_web"), f.login("builder_", "kiln_builder")
	splitter := f.login("splitter_", "kiln_splitter")
	victim := f.submit(bob, "secret")
	victimTask := f.task(splitter, victim)

	// Wall one: no temporary objects at all.
	for _, role := range []string{alice, web, builder} {
		f.refused(role, "permission denied to create temporary tables", `CREATE TEMP TABLE x (a int)`)
		f.refused(role, "permission denied to create temporary tables", `CREATE DOMAIN pg_temp.name AS pg_catalog.name`)
		f.refused(role, "permission denied to create temporary tables", `CREATE TEMP VIEW pg_roles AS SELECT 1`)
	}

	// Wall two: a database where TEMP was granted back.
	f.exec("postgres", fmt.Sprintf("GRANT TEMPORARY ON DATABASE %s TO %s, %s, %s",
		pgx.Identifier{f.db.Name}.Sanitize(), alice, web, builder))
	untouched := func(what string) {
		t.Helper()
		if n := f.int("postgres", `SELECT count(*) FROM kiln.job WHERE id = $1 AND note = '' AND cancelled_by IS NULL`, victim); n != 1 {
			t.Fatalf("%s: the attacker's temporary function ran as the owner and changed bob's private job", what)
		}
		if n := f.int("postgres", `SELECT count(*) FROM kiln.task WHERE id = $1 AND status = 'pending'`, victimTask); n != 1 {
			t.Fatalf("%s: bob's task changed", what)
		}
	}

	// A person: domains named like every type the cancel functions use,
	// whose CHECK runs the attacker's function, then cancel their own task
	// and job.
	f.exec(alice, fmt.Sprintf(evil, victim))
	for _, typ := range []string{"name", "text", "int8", "int4", "bool", "jsonb", "timestamptz", "oid"} {
		f.exec(alice, fmt.Sprintf(`CREATE DOMAIN pg_temp.%s AS pg_catalog.%s CHECK (pg_temp.evil())`, typ, typ))
	}
	own := f.submit(alice, "public")
	ownTask := f.task(splitter, own)
	f.exec(alice, `SELECT kiln.cancel_task($1)`, ownTask)
	untouched("kiln.cancel_task with temporary domains")
	own2 := f.submit(alice, "public")
	f.task(splitter, own2)
	f.exec(alice, `SELECT kiln.cancel_job($1)`, own2)
	untouched("kiln.cancel_job with temporary domains")
	if n := f.int("postgres", `SELECT count(*) FROM kiln.task WHERE id = $1 AND status = 'cancelled'`, ownTask); n != 1 {
		t.Fatalf("alice's own cancel did not work")
	}

	// kiln-web: the same through the web_* functions, acting for alice.
	f.exec(web, fmt.Sprintf(evil, victim))
	for _, typ := range []string{"name", "text", "int8", "bool"} {
		f.exec(web, fmt.Sprintf(`CREATE DOMAIN pg_temp.%s AS pg_catalog.%s CHECK (pg_temp.evil())`, typ, typ))
	}
	own3 := f.submit(alice, "public")
	own3Task := f.task(splitter, own3)
	f.exec(web, `SELECT kiln.web_cancel_task($1, $2)`, alice, own3Task)
	f.exec(web, `SELECT kiln.web_cancel_job($1, $2)`, alice, f.submit(alice, "public"))
	untouched("kiln.web_cancel_* with temporary domains")

	// kiln-web: a temporary pg_roles in which the superuser is an ordinary
	// login, to act for it (a superuser is a member of every role, so it
	// would pass as an admin and cancel bob's job).
	f.exec(web, `CREATE TEMP VIEW pg_roles AS SELECT 'postgres'::pg_catalog.name AS rolname, true AS rolcanlogin,
		false AS rolsuper, 10::pg_catalog.oid AS oid`)
	f.refused(web, "has no login role here", `SELECT kiln.web_cancel_job('postgres', $1)`, victim)
	untouched("kiln.web_cancel_job for the superuser with a temporary pg_roles")

	// A builder: a temporary pg_roles in which it is a superuser, so that
	// the task protocol's guard would wave its moves through; then it ends a
	// pending task it never took. Builders may not update tasks at all any
	// more (they move them only through the task protocol's functions,
	// roles/attack_builder_test.go), so the shadow changes nothing.
	f.exec(builder, `CREATE TEMP VIEW pg_roles AS SELECT current_user::pg_catalog.name AS rolname, true AS rolsuper`)
	f.refused(builder, "permission denied for table task", `UPDATE kiln.task SET status = 'succeeded', finished_at = now() WHERE id = $1`, victimTask)
	untouched("a builder with a temporary pg_roles")
}

// TestAttackPrivateDataStaysPrivate: a person who may not read a private
// bucket looks for its jobs' data wherever kiln shows something: events of
// every kind, the answers of the cancel and resubmit functions, and the
// NOTIFY payloads anyone may LISTEN to.
func TestAttackPrivateDataStaysPrivate(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFarm(t)
	bob, dave := f.login("bob_", "kiln_submitter"), f.login("dave_", "kiln_submitter")
	reader, web := f.login("reader_", "kiln_reader"), f.login("web_", "kiln_web")
	splitter, janitor := f.login("splitter_", "kiln_splitter"), f.login("janitor_", "kiln_janitor")
	const secret = "embargoed fix for CVE-2026-0001"

	// dave listens before anything happens.
	for _, ch := range []string{"kiln_job", "kiln_task", "kiln_log"} {
		f.exec(dave, "LISTEN "+ch)
	}

	private := f.submit(bob, "secret")
	task := f.task(splitter, private)
	public := f.submit(bob, "public")
	// A build that fails with a reason naming the embargoed fix (as a
	// builder would write it; the triggers record the events).
	f.exec("postgres", `INSERT INTO kiln.builder (name, host, role, state, heartbeat_at) VALUES ('b1', 'h', 'nobody', 'online', now())`)
	f.exec("postgres", `INSERT INTO kiln.builder_platform (builder, platform) VALUES ('b1', 'p1')`)
	f.exec("postgres", `UPDATE kiln.task SET status = 'building', builder = 'b1', attempt = 1, started_at = now(), heartbeat_at = now() WHERE id = $1`, task)
	f.exec("postgres", `INSERT INTO kiln.attempt (task_id, attempt, builder) VALUES ($1, 1, 'b1')`, task)
	f.exec("postgres", `INSERT INTO kiln.log_chunk (task_id, attempt, seq, data) VALUES ($1, 1, 0, $2)`, task, secret+"\n")
	f.exec("postgres", `UPDATE kiln.attempt SET status = 'failed', finished_at = now(), reason = $2 WHERE task_id = $1`, task, secret)
	f.exec("postgres", `UPDATE kiln.task SET status = 'failed', builder = NULL, finished_at = now(), reason = $2 WHERE id = $1`, task, secret)
	// A daemon's event about the private task that names the public job.
	f.exec(janitor, `INSERT INTO kiln.event (kind, job_id, task_id, detail) VALUES ('janitor.timeout', $1, $2, jsonb_build_object('reason', $3::text))`,
		public, task, secret)

	leaks := `SELECT count(*) FROM kiln.event WHERE detail::text LIKE '%embargoed%' OR task_id = $1 OR job_id = $2`
	if n := f.int(bob, leaks, task, private); n < 5 {
		t.Fatalf("bob sees %d events of his own private job, want every one", n)
	}
	for _, role := range []string{dave, reader, web} {
		if n := f.int(role, leaks, task, private); n != 0 {
			t.Errorf("%s sees %d events of a private job", role, n)
		}
		// Every event a reader sees is about no job, or about a job it
		// may read.
		if n := f.int(role, `SELECT count(*) FROM kiln.event e WHERE (e.job_id IS NOT NULL OR e.task_id IS NOT NULL)
			AND NOT EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = e.job_id)`); n != 0 {
			t.Errorf("%s sees %d events of jobs it may not read", role, n)
		}
	}

	// The answers: someone else's private (or public) job or task gets the
	// answer a job that does not exist gets, naming neither owner nor bucket.
	answer := func(role, sql string, args ...any) (code, msg string) {
		t.Helper()
		_, err := f.conn(role).Exec(ctx, sql, args...)
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			t.Fatalf("as %s: %s: want an error, got %v", role, sql, err)
		}
		return pgErr.Code, pgErr.Message + " " + pgErr.Detail + " " + pgErr.Hint
	}
	const missing = 999999999
	for _, c := range []struct {
		role, sql string
		id        int64
		args      []any
	}{
		{dave, `SELECT kiln.cancel_job($1)`, private, nil},
		{dave, `SELECT kiln.cancel_job($1)`, public, nil},
		{dave, `SELECT kiln.cancel_task($1)`, task, nil},
		{web, `SELECT kiln.web_cancel_job($2, $1)`, private, []any{dave}},
		{web, `SELECT kiln.web_cancel_task($2, $1)`, task, []any{dave}},
		{web, `SELECT kiln.web_resubmit($2, $1, 'k1')`, private, []any{dave}},
	} {
		code, msg := answer(c.role, c.sql, append([]any{c.id}, c.args...)...)
		code0, msg0 := answer(c.role, c.sql, append([]any{int64(missing)}, c.args...)...)
		msg0 = strings.ReplaceAll(msg0, fmt.Sprint(missing), fmt.Sprint(c.id))
		if code != code0 || msg != msg0 {
			t.Errorf("%s: someone else's %d answers %s %q, one that does not exist %s %q", c.sql, c.id, code, msg, code0, msg0)
		}
		if !strings.Contains(msg, "does not exist or is not") || strings.Contains(msg, bob) || strings.Contains(msg, "secret") {
			t.Errorf("%s on someone else's %d: %q", c.sql, c.id, msg)
		}
	}

	// NOTIFY: dave heard about the private job's changes; the payloads
	// carry ids only, never a status or a reason.
	heard := f.notifications(dave)
	for _, p := range heard {
		keys := slices.Sorted(maps.Keys(p))
		if !slices.Equal(keys, []string{"job"}) && !slices.Equal(keys, []string{"job", "task"}) &&
			!slices.Equal(keys, []string{"attempt", "seq", "task"}) {
			t.Errorf("payload %v carries more than ids", p)
		}
	}
	if len(heard) == 0 {
		t.Fatalf("dave heard no notification at all")
	}
}

// TestAttackReadOnlyRolesCannotWrite: a reader (or kiln-web, or any role)
// stores bytes outside every table and policy: large objects and
// temporary tables. NOTIFY cannot be refused (PostgreSQL has no privilege
// for it): the listeners treat a payload as a hint to re-read with their
// own rights, which internal/report and internal/web test with forged
// payloads.
func TestAttackReadOnlyRolesCannotWrite(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	for _, group := range groupRoles {
		role := f.login("ro_", "kiln_"+group)
		for _, sql := range []string{
			`SELECT lo_from_bytea(0, 'stolen bytes')`,
			`SELECT lo_create(0)`,
			`SELECT lo_creat(-1)`,
			`SELECT lo_import('/etc/hostname')`,
			`SELECT lo_put(1, 0, 'x')`,
			`SELECT lo_open(1, 131072)`,
			`SELECT lo_unlink(1)`,
			`CREATE TEMP TABLE stash (b bytea)`,
		} {
			f.refused(role, "permission denied", sql)
		}
		// NOTIFY works for everyone; what a forged one may cause is tested
		// where it is listened to.
		f.exec(role, `NOTIFY kiln_task, '{"job": 1, "task": 1, "status": "succeeded"}'`)
	}
}

// TestAttackPromoteSomeoneElsesPrivateJob: a person who may publish to a
// bucket of their own promotes into it a job of a private bucket they may
// not read, hoping the publisher serves its embargoed packages there (or
// at least that the answer names its bucket). kiln.promote_for runs as
// the owner, past row-level security, so it checks that the person may
// read the job and answers as for a job that does not exist.
func TestAttackPromoteSomeoneElsesPrivateJob(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	bob, dave := f.login("bob_", "kiln_submitter"), f.login("dave_", "kiln_submitter")
	web := f.login("web_", "kiln_web")
	f.exec("postgres", `INSERT INTO kiln.bucket (name) VALUES ('daves')`)
	f.exec("postgres", `INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('daves', $1), ('secret', $2)`, dave, bob)
	private, public := f.submit(bob, "secret"), f.submit(bob, "public")
	// Both jobs' packages are published in their buckets (as the
	// publisher would have done), so a promotion would have something to
	// copy.
	for _, j := range []struct {
		id     int64
		bucket string
	}{{private, "secret"}, {public, "public"}} {
		f.exec("postgres", `INSERT INTO kiln.repository_file (bucket, platform, path, from_seq, blob_sha256, size, job_id)
			SELECT $2, 'p1', 'pool/a-' || $1::bigint || '.rpm', 1, p.blob_sha256, p.size, $1::bigint FROM kiln.package p WHERE p.job_id = $1::bigint`, j.id, j.bucket)
	}

	for _, c := range []attackCall{
		{dave, `SELECT kiln.promote($1, 'daves')`, nil},
		{web, `SELECT kiln.web_promote($2, $1, 'daves')`, []any{dave}},
	} {
		f.answersAsMissing(c, private, "secret", bob)
	}
	if n := f.int("postgres", `SELECT count(*) FROM kiln.publication_request WHERE job_id = $1`, private); n != 0 {
		t.Fatalf("a promotion of bob's private job into dave's bucket was queued (%d requests)", n)
	}

	// What dave may read he may promote: bob's public job, and bob his own
	// private one.
	f.exec("postgres", `INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('public', $1)`, bob)
	f.exec(dave, `SELECT kiln.promote($1, 'daves')`, public)
	f.exec(bob, `SELECT kiln.promote($1, 'public')`, private)
	if n := f.int("postgres", `SELECT count(*) FROM kiln.publication_request WHERE job_id IN ($1, $2)`, private, public); n != 2 {
		t.Fatalf("%d promotion requests of jobs their people may read, want 2", n)
	}
}

// TestAttackResubmitSomeoneElsesPrivateJob is the attack on the one
// implementation of resubmitting (kiln.resubmit_for, through kiln.resubmit
// and kiln.web_resubmit): dave may not resubmit bob's private job (the
// answer is that of a job that does not exist, and no job is made), may not
// reach kiln.resubmit_for to name someone else as the new job's submitter,
// and what he may resubmit becomes his own job.
func TestAttackResubmitSomeoneElsesPrivateJob(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFarm(t)
	bob, dave := f.login("bob_", "kiln_submitter"), f.login("dave_", "kiln_submitter")
	web := f.login("web_", "kiln_web")
	private, public := f.submit(bob, "secret"), f.submit(bob, "public")
	jobs := func() int64 {
		return f.int("postgres", `SELECT count(*) FROM kiln.job`)
	}
	before := jobs()
	for _, c := range []attackCall{
		{dave, `SELECT kiln.resubmit($1, NULL, 'k1')`, nil},
		{dave, `SELECT kiln.resubmit($1, ARRAY['p1'], 'k2')`, nil},
		{web, `SELECT kiln.web_resubmit($2, $1, 'k3')`, []any{dave}},
	} {
		f.answersAsMissing(c, private, "secret", bob)
	}
	if code, _ := f.refusal(dave, `SELECT kiln.resubmit_for($1, $2, NULL, 'k4')`, public, bob); code != "42501" {
		t.Errorf("dave calling kiln.resubmit_for directly: %s, want 42501 (permission denied)", code)
	}
	if n := jobs(); n != before {
		t.Fatalf("the refused resubmits made %d jobs", n-before)
	}

	// What dave may read he may resubmit, and the new job is his.
	var id int64
	if err := f.conn(dave).QueryRow(ctx, `SELECT kiln.resubmit($1, NULL, 'k5')`, public).Scan(&id); err != nil {
		t.Fatalf("dave resubmitting bob's public job: %v", err)
	}
	var submitter string
	var of int64
	f.conn("postgres").QueryRow(ctx, `SELECT submitter, resubmit_of FROM kiln.job WHERE id = $1`, id).Scan(&submitter, &of)
	if submitter != dave || of != public {
		t.Errorf("dave's resubmit of job %d is job %d of %s (resubmit of %d), want his own of %d", public, id, submitter, of, public)
	}
}

// attackCall is a statement an attacking role runs; its first argument ($1)
// is the id of the object attacked, args are the others.
type attackCall struct {
	role, sql string
	args      []any
}

// refusal runs sql as role and returns the error's SQLSTATE and its
// message, detail and hint; it fails the test when the statement succeeds.
func (f *farm) refusal(role, sql string, args ...any) (code, msg string) {
	f.t.Helper()
	_, err := f.conn(role).Exec(context.Background(), sql, args...)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		f.t.Fatalf("as %s: %s: want an error, got %v", role, sql, err)
	}
	return pgErr.Code, pgErr.Message + " " + pgErr.Detail + " " + pgErr.Hint
}

// answersAsMissing checks that c on someone else's private object id is
// answered exactly as on one that does not exist (P0002, "does not exist or
// is not ..."), naming none of secrets.
func (f *farm) answersAsMissing(c attackCall, id int64, secrets ...string) {
	f.t.Helper()
	const missing = 999999999
	code, msg := f.refusal(c.role, c.sql, append([]any{id}, c.args...)...)
	code0, msg0 := f.refusal(c.role, c.sql, append([]any{int64(missing)}, c.args...)...)
	msg0 = strings.ReplaceAll(msg0, fmt.Sprint(missing), fmt.Sprint(id))
	if code != code0 || msg != msg0 {
		f.t.Errorf("%s: someone else's private object %d answers %s %q, one that does not exist %s %q", c.sql, id, code, msg, code0, msg0)
	}
	if code != "P0002" || !strings.Contains(msg, "does not exist or is not") {
		f.t.Errorf("%s on someone else's private object: %s %q", c.sql, code, msg)
	}
	for _, secret := range secrets {
		if strings.Contains(msg, secret) {
			f.t.Errorf("%s on someone else's private object names %q: %q", c.sql, secret, msg)
		}
	}
}
