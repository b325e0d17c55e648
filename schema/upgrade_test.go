package schema_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/roles"
	"github.com/kiln-build/kiln/schema"
)

// TestUpgradeMatchesFresh builds database A the way kiln did before
// current-state files existed (testdata/legacy: every function, view,
// trigger and policy in the numbered migrations, superseded bodies and
// all), upgrades it with today's Migrate, and compares it with itself
// before the upgrade and with database B, migrated fresh: the schemas kiln and river (pg_dump), the catalog's
// functions, policies, triggers, views, comments and privileges, and the
// rows the migrations insert must all be the same.
func TestUpgradeMatchesFresh(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	a := pgtest.NewEmpty(t)
	groups(t, a)
	if _, err := schema.MigrateLegacy(ctx, a.Pool, 0); err != nil {
		t.Fatalf("migrating A with the legacy migrations: %v", err)
	}
	grants(t, a)
	legacyDump, legacyCat := dump(t, a), catalog(t, a)
	res, err := schema.Migrate(ctx, a.Pool)
	if err != nil {
		t.Fatalf("upgrading A: %v", err)
	}
	if len(res.Applied) != 0 {
		t.Fatalf("upgrading A applied numbered migrations %v: the legacy files and today's must share their versions", res.Applied)
	}
	grants(t, a)

	b := pgtest.NewEmpty(t)
	groups(t, b)
	if _, err := schema.Migrate(ctx, b.Pool); err != nil {
		t.Fatalf("migrating B: %v", err)
	}
	grants(t, b)

	// The current-state files define what the legacy migrations left, and
	// the upgraded database is the fresh one.
	same(t, "pg_dump of A before and after the upgrade", legacyDump, dump(t, a))
	same(t, "catalog of A before and after the upgrade", legacyCat, catalog(t, a))
	same(t, "pg_dump of the upgraded database (A) and the fresh one (B)", dump(t, a), dump(t, b))
	same(t, "catalog of A and B", catalog(t, a), catalog(t, b))
}

// TestUpgradeFromOlderVersions upgrades databases that older kilns left at
// earlier versions: today's numbered migrations then run over the
// functions, triggers and policies of those versions, and the result must
// equal a fresh database.
func TestUpgradeFromOlderVersions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	fresh := pgtest.NewEmpty(t)
	groups(t, fresh)
	if _, err := schema.Migrate(ctx, fresh.Pool); err != nil {
		t.Fatalf("migrating the fresh database: %v", err)
	}
	grants(t, fresh)
	want, wantCat := dump(t, fresh), catalog(t, fresh)
	for _, from := range []int{1, 5, 12, 16, 20} {
		old := pgtest.NewEmpty(t)
		groups(t, old)
		if _, err := schema.MigrateLegacy(ctx, old.Pool, from); err != nil {
			t.Fatalf("migrating with the legacy migrations up to %d: %v", from, err)
		}
		// (Today's roles/ name tables an older schema lacks: the grants
		// come after the upgrade, as kiln admin roles apply would.)
		if _, err := schema.Migrate(ctx, old.Pool); err != nil {
			t.Fatalf("upgrading from version %d: %v", from, err)
		}
		grants(t, old)
		same(t, fmt.Sprintf("pg_dump of the database upgraded from %d and the fresh one", from), dump(t, old), want)
		same(t, fmt.Sprintf("catalog of the database upgraded from %d and the fresh one", from), catalog(t, old), wantCat)
	}
}

// TestMigrateTwiceChangesNothing migrates a fresh database, then migrates it
// again: re-applying the current-state files leaves the schema as it was.
func TestMigrateTwiceChangesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.NewEmpty(t)
	groups(t, db)
	if _, err := schema.Migrate(ctx, db.Pool); err != nil {
		t.Fatalf("first migrate: %v", err)
	}
	grants(t, db)
	before, beforeCat := dump(t, db), catalog(t, db)
	if _, err := schema.Migrate(ctx, db.Pool); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	same(t, "pg_dump before and after migrating again", before, dump(t, db))
	same(t, "catalog before and after migrating again", beforeCat, catalog(t, db))
}

// groups applies roles/00-groups.sql under the lock pgtest holds while it
// does the same (roles belong to the cluster, and CREATE ROLE races).
func groups(t *testing.T, db *pgtest.DB) {
	t.Helper()
	ctx := context.Background()
	conn, err := db.Pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(4242)"); err != nil {
		t.Fatal(err)
	}
	defer conn.Exec(ctx, "SELECT pg_advisory_unlock(4242)") //nolint:errcheck
	if _, err := conn.Exec(ctx, roles.Groups()); err != nil {
		t.Fatalf("creating group roles: %v", err)
	}
}

// grants applies roles/ as kiln admin roles apply does after a migrate.
func grants(t *testing.T, db *pgtest.DB) {
	t.Helper()
	if _, err := db.Pool.Exec(context.Background(), roles.Grants()); err != nil {
		t.Fatalf("applying roles: %v", err)
	}
}

// dump is pg_dump --schema-only of schemas kiln and river as sorted object
// blocks (pg_dump orders objects of one kind by name, but breaks ties and
// dependency loops by object id, which an upgrade and a fresh build do not
// share).
func dump(t *testing.T, db *pgtest.DB) []string {
	t.Helper()
	bindir := os.Getenv("KILN_PG_BINDIR")
	if bindir == "" {
		t.Fatal("KILN_PG_BINDIR is not set: run the test under .ci/with-cluster")
	}
	out, err := exec.Command(filepath.Join(bindir, "pg_dump"), "--schema-only", "--schema=kiln", "--schema=river", "--dbname="+db.URL).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	var blocks []string
	var cur strings.Builder
	for _, line := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(line, `\restrict`) || strings.HasPrefix(line, `\unrestrict`) {
			continue // a random key per dump (pg_dump 15.14 and later)
		}
		if strings.HasPrefix(line, "-- Name: ") || strings.HasPrefix(line, "-- Data for Name: ") {
			blocks = append(blocks, cur.String())
			cur.Reset()
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	blocks = append(blocks, cur.String())
	sort.Strings(blocks)
	return blocks
}

// catalog lists, one line each, what the current-state files define:
// functions (definition, settings, owner, privileges, comment), policies,
// triggers (with whether they are enabled), views (definition, options,
// privileges, comment) and the rows the numbered migrations insert (but
// when they were inserted).
func catalog(t *testing.T, db *pgtest.DB) []string {
	t.Helper()
	rows, err := db.Pool.Query(context.Background(), `
		SELECT 'function ' || p.oid::regprocedure::text || ' ' || pg_get_functiondef(p.oid)
		       || ' owner ' || p.proowner::regrole::text || ' acl ' || coalesce(p.proacl::text, 'default')
		       || ' comment ' || coalesce(obj_description(p.oid, 'pg_proc'), '-')
		FROM pg_proc p WHERE p.pronamespace IN ('kiln'::regnamespace, 'river'::regnamespace)
		UNION ALL
		SELECT 'policy ' || p.schemaname || '.' || p.tablename || ' ' || p.policyname || ' ' || p.permissive
		       || ' ' || p.cmd || ' ' || p.roles::text || ' using ' || coalesce(p.qual, '-')
		       || ' check ' || coalesce(p.with_check, '-')
		       || ' comment ' || coalesce((SELECT obj_description(o.oid, 'pg_policy') FROM pg_policy o
		            WHERE o.polname = p.policyname AND o.polrelid = (quote_ident(p.schemaname) || '.' || quote_ident(p.tablename))::regclass), '-')
		FROM pg_policies p WHERE p.schemaname IN ('kiln', 'river')
		UNION ALL
		SELECT 'trigger ' || pg_get_triggerdef(g.oid) || ' enabled ' || g.tgenabled::text
		       || ' comment ' || coalesce(obj_description(g.oid, 'pg_trigger'), '-')
		FROM pg_trigger g JOIN pg_class c ON c.oid = g.tgrelid
		WHERE c.relnamespace IN ('kiln'::regnamespace, 'river'::regnamespace) AND NOT g.tgisinternal
		UNION ALL
		SELECT 'relation ' || c.oid::regclass::text || ' ' || c.relkind::text || ' rls ' || c.relrowsecurity
		       || ' options ' || coalesce(c.reloptions::text, '-') || ' acl ' || coalesce(c.relacl::text, 'default')
		       || ' owner ' || c.relowner::regrole::text || ' comment ' || coalesce(obj_description(c.oid, 'pg_class'), '-')
		       || CASE WHEN c.relkind = 'v' THEN ' view ' || pg_get_viewdef(c.oid) ELSE '' END
		FROM pg_class c WHERE c.relnamespace IN ('kiln'::regnamespace, 'river'::regnamespace)
		UNION ALL
		SELECT 'row kiln.protocol_setting ' || (s.singleton, s.max_lost, s.changed_by)::text FROM kiln.protocol_setting s
		UNION ALL
		SELECT 'row kiln.quota ' || (q.person, q.jobs_per_hour, q.bytes_per_day, q.options_bytes, q.platforms_per_job,
		       q.validate_river_jobs_per_job, q.river_job_bytes, q.set_by)::text FROM kiln.quota q
		ORDER BY 1`)
	if err != nil {
		t.Fatalf("reading the catalog: %v", err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("reading the catalog: %v", err)
	}
	return lines
}

// same fails the test with the lines only one side has.
func same(t *testing.T, what string, a, b []string) {
	t.Helper()
	inA := map[string]int{}
	for _, l := range a {
		inA[l]++
	}
	for _, l := range b {
		inA[l]--
	}
	var diff []string
	for l, n := range inA {
		switch {
		case n > 0:
			diff = append(diff, "only in the first: "+l)
		case n < 0:
			diff = append(diff, "only in the second: "+l)
		}
	}
	sort.Strings(diff)
	if len(diff) > 0 {
		t.Errorf("%s differ:\n%s", what, strings.Join(diff, "\n"))
	}
}
