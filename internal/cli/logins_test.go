package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/krb/krbtest"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// dropRoles drops cluster-wide roles when the test ends.
func dropRoles(t *testing.T, names ...string) {
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, pgtest.AdminURL(t))
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		for _, n := range names {
			_, _ = conn.Exec(ctx, "DROP ROLE IF EXISTS "+pgx.Identifier{n}.Sanitize())
		}
	})
}

func memberOf(t *testing.T, db *pgtest.DB, role, group string) bool {
	t.Helper()
	var login, member bool
	err := db.Pool.QueryRow(context.Background(), `SELECT rolcanlogin, pg_has_role(oid, $2, 'MEMBER') FROM pg_roles WHERE rolname = $1`,
		role, group).Scan(&login, &member)
	if err == pgx.ErrNoRows {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return login && member
}

func TestAdminPersonAndHosts(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	alice, root := krbtest.Unique("alice_"), krbtest.Unique("root_")
	host := krbtest.Unique("b")
	dropRoles(t, alice, root, "builder_"+host, "splitter_"+host, "publisher_"+host)
	if out, err := run(t, db.URL, "admin", "bucket", "add", "devel"); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}

	// An unknown bucket: nothing is created.
	out, err := run(t, db.URL, "admin", "person", "add", "--bucket", "devel", "--bucket", "nosuch", alice)
	if err == nil || !strings.Contains(err.Error(), `bucket "nosuch" does not exist`) {
		t.Fatalf("unknown bucket: %v\n%s", err, out)
	}
	if memberOf(t, db, alice, "kiln_submitter") {
		t.Fatalf("role %s was left behind after a failed person add", alice)
	}

	out, err = run(t, db.URL, "admin", "person", "add", "--bucket", "devel", alice)
	if err != nil || !strings.Contains(out, "created login role "+alice+" (member of kiln_submitter)") {
		t.Fatalf("person add: %v\n%s", err, out)
	}
	if !memberOf(t, db, alice, "kiln_submitter") || memberOf(t, db, alice, "kiln_admin") {
		t.Fatalf("%s is not a plain submitter", alice)
	}
	var grants int
	if err := db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM kiln.bucket_grant WHERE bucket = 'devel' AND grantee = $1", alice).Scan(&grants); err != nil || grants != 1 {
		t.Fatalf("bucket grant for %s: %d, %v", alice, grants, err)
	}
	if _, err := run(t, db.URL, "admin", "person", "add", alice); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("adding %s twice: %v", alice, err)
	}
	if out, err := run(t, db.URL, "admin", "person", "add", "--admin", root); err != nil || !memberOf(t, db, root, "kiln_admin") {
		t.Fatalf("admin person add: %v\n%s", err, out)
	}

	out, err = run(t, db.URL, "admin", "builder-host", "add", host+".farm.example.org")
	if err != nil || !strings.Contains(out, "created login role builder_"+host) || !strings.Contains(out, "kiln-builder/"+host+".farm.example.org@REALM") {
		t.Fatalf("builder-host add: %v\n%s", err, out)
	}
	if !memberOf(t, db, "builder_"+host, "kiln_builder") {
		t.Fatalf("builder_%s is not a member of kiln_builder", host)
	}
	if out, err := run(t, db.URL, "admin", "daemon-host", "add", "splitter", host); err != nil || !memberOf(t, db, "splitter_"+host, "kiln_splitter") {
		t.Fatalf("daemon-host add splitter: %v\n%s", err, out)
	}

	if out, err := run(t, db.URL, "admin", "daemon-host", "add", "publisher", host+".farm.example.org"); err != nil ||
		!memberOf(t, db, "publisher_"+host, "kiln_publisher") || !strings.Contains(out, "kiln-publisher/"+host+".farm.example.org@REALM") {
		t.Fatalf("daemon-host add publisher: %v\n%s", err, out)
	}

	for _, bad := range [][]string{
		{"admin", "person", "add", "builder_x"},
		{"admin", "person", "add", "publisher_x"},
		{"admin", "person", "add", "reporter_x"},
		{"admin", "person", "add", "postgres"},
		{"admin", "person", "add", "Alice"},
		{"admin", "builder-host", "add", "bad_host.example.org"},
		{"admin", "daemon-host", "add", "compiler", "h1"},
	} {
		if _, err := run(t, db.URL, bad...); err == nil {
			t.Errorf("kiln %s: accepted", strings.Join(bad, " "))
		}
	}
}

// daemon-host list shows the daemons' login roles with their principals;
// daemon-host rm drops one, and only a daemon's login: not a role of that
// name outside kiln_PROCESS (a person's, say), not one that is missing,
// and not for an admin without CREATEROLE.
func TestAdminDaemonHostListAndRm(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	host, odd := krbtest.Unique("d"), krbtest.Unique("o")
	dropRoles(t, "janitor_"+host, "publisher_"+host, "janitor_"+odd, "kiln_janitor_"+odd)
	for _, p := range []string{"janitor", "publisher"} {
		if out, err := run(t, db.URL, "admin", "daemon-host", "add", p, host+".example.org"); err != nil {
			t.Fatalf("daemon-host add %s: %v\n%s", p, err, out)
		}
	}
	ctx := context.Background()
	// A login in kiln_janitor that is not named janitor_<host>, and a role
	// named like a daemon's login that is no member of kiln_janitor.
	for _, sql := range []string{
		"CREATE ROLE " + pgx.Identifier{"kiln_janitor_" + odd}.Sanitize() + " LOGIN IN ROLE kiln_janitor",
		"CREATE ROLE " + pgx.Identifier{"janitor_" + odd}.Sanitize() + " LOGIN IN ROLE kiln_submitter",
	} {
		if _, err := db.Pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	out, err := run(t, db.URL, "admin", "daemon-host", "list", "--json")
	if err != nil {
		t.Fatalf("daemon-host list: %v\n%s", err, out)
	}
	for _, want := range []string{
		`"process": "janitor",
    "role": "janitor_` + host + `",
    "principal": "kiln-janitor/` + host + `[.DOMAIN]@REALM"`,
		`"process": "publisher",
    "role": "publisher_` + host + `",
    "principal": "kiln-publisher/` + host + `[.DOMAIN]@REALM"`,
		`"role": "kiln_janitor_` + odd + `",
    "principal": ""`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("daemon-host list --json lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"janitor_`+odd+`"`) {
		t.Errorf("daemon-host list shows janitor_%s, which is no daemon's login:\n%s", odd, out)
	}

	ada := farmtest.Person(t, db, "ada", "kiln_admin")
	for _, c := range []struct {
		url  string
		args []string
		code int
		want string
	}{
		{db.URL, []string{"janitor", odd}, ExitUsage, "not a login member of kiln_janitor"},
		{db.URL, []string{"splitter", host}, ExitNotFound, "there is no login role splitter_" + host},
		{db.URL, []string{"compiler", host}, ExitUsage, "unknown process"},
		{db.URLAs(ada), []string{"janitor", host}, ExitPermission, "may not drop roles"},
	} {
		out, err := run(t, c.url, append([]string{"admin", "daemon-host", "rm"}, c.args...)...)
		if err == nil || ExitCode(err) != c.code || !strings.Contains(err.Error(), c.want) {
			t.Errorf("daemon-host rm %v: exit %d, %v; want exit %d, %q\n%s", c.args, ExitCode(err), err, c.code, c.want, out)
		}
	}
	if !memberOf(t, db, "janitor_"+host, "kiln_janitor") || !memberOf(t, db, "janitor_"+odd, "kiln_submitter") {
		t.Fatal("a refused daemon-host rm dropped a role")
	}
	out, err = run(t, db.URL, "admin", "daemon-host", "rm", "janitor", host+".example.org")
	if err != nil || !strings.Contains(out, "dropped login role janitor_"+host) {
		t.Fatalf("daemon-host rm: %v\n%s", err, out)
	}
	if memberOf(t, db, "janitor_"+host, "kiln_janitor") || !memberOf(t, db, "publisher_"+host, "kiln_publisher") {
		t.Fatal("daemon-host rm janitor dropped the wrong roles")
	}
}

func TestAdminRolesApplyIsIdempotent(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)
	ctx := context.Background()
	// A stray privilege a grant file does not give is withdrawn by apply.
	if _, err := db.Pool.Exec(ctx, "GRANT DELETE ON kiln.job TO kiln_reader"); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if out, err := run(t, db.URL, "admin", "roles", "apply"); err != nil || !strings.Contains(out, "applied") {
			t.Fatalf("roles apply: %v\n%s", err, out)
		}
	}
	var stray, insert bool
	if err := db.Pool.QueryRow(ctx, `SELECT has_table_privilege('kiln_reader', 'kiln.job', 'DELETE'),
		has_column_privilege('kiln_submitter', 'kiln.job', 'bucket', 'INSERT')`).Scan(&stray, &insert); err != nil {
		t.Fatal(err)
	}
	if stray || !insert {
		t.Fatalf("after roles apply: reader may delete jobs %v (want false), submitter may insert jobs %v (want true)", stray, insert)
	}
}

// TestAdminSetup: kiln admin setup makes a farm database out of an empty
// one in one command (group roles, migrations, grants), and running it
// again changes nothing. (The group roles are the cluster's, shared with
// the other tests, so they exist already; CreateGroups is idempotent.)
func TestAdminSetup(t *testing.T) {
	t.Parallel()
	db := pgtest.NewEmpty(t)
	out, err := run(t, db.URL, "admin", "setup")
	if err != nil || !strings.Contains(out, "group roles are there") || !strings.Contains(out, "applied 0001_farm.sql") || !strings.Contains(out, "grants applied") {
		t.Fatalf("admin setup: %v\n%s", err, out)
	}
	var insert bool
	if err := db.Pool.QueryRow(t.Context(), `SELECT has_column_privilege('kiln_submitter', 'kiln.job', 'bucket', 'INSERT')`).Scan(&insert); err != nil || !insert {
		t.Fatalf("after setup kiln_submitter may insert jobs: %v (%v)", insert, err)
	}
	if out, err := run(t, db.URL, "admin", "setup"); err != nil || !strings.Contains(out, "schema is up to date") {
		t.Fatalf("admin setup again: %v\n%s", err, out)
	}
}
