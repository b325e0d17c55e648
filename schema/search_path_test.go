package schema_test

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// safePath is the search_path every kiln function runs with: built-ins
// first (they cannot be shadowed), kiln next, the session's temporary
// schema last (PostgreSQL otherwise searches it first for relations and
// types, and a temporary domain named like a type the function uses
// would run its CHECK as the function's owner).
const safePath = "search_path=pg_catalog, kiln, pg_temp"

// preparsed are the functions that run without SET search_path, and why:
// each is a SQL-language function with a SQL-standard body (RETURN ...),
// which PostgreSQL parses when the function is created and stores resolved
// to object ids (pg_proc.prosqlbody), so a call looks up no name whatever
// the caller's search_path, and a SET would only add its cost to every
// row of the policy or constraint that calls it (docs/security.md). None
// is SECURITY DEFINER. Anything else without safePath fails the test.
var preparsed = map[string]string{
	"kiln.valid_name(text)":                                "in CHECK constraints on names (platform, bucket, builder)",
	"kiln.safe_file_name(text)":                            "in CHECK constraints on file names (package, package_file, artifact)",
	"kiln.bucket_readable(text)":                           "in the job_read policy, evaluated for every job a person reads",
	"kiln.blob_readable(bytea)":                            "in the package_submit and package_file_submit policies",
	"kiln.own_validate_river_job(text,text,jsonb,boolean)": "in the River job policies of people",
}

// riverOwn are the functions River's own migrations create (in schema
// river, owned by kiln_owner, which runs them). River replaces them when it
// migrates, so kiln cannot keep a SET on them; each must stay an IMMUTABLE
// SQL function with the caller's rights that names no relation or type
// (only built-in functions and operators, which are never looked up in
// pg_temp), so whoever calls it, whatever their search_path, can only run
// it as themselves.
var riverOwn = map[string]string{
	"river.river_job_state_in_bitmask(bit,river.river_job_state)": "in River's unique-job index predicate and queries",
}

// TestEveryFunctionHasASafeSearchPath enumerates every function outside
// the system schemas (schema kiln, River's, and any other a migration
// creates), and fails for one whose search_path does not end in pg_temp
// (unless it is one of the preparsed helpers or River's own functions
// above, whose properties are checked instead). Functions added by later
// migrations are covered without changing this test, and so is every
// trigger: each must run one of these functions (or a built-in one).
func TestEveryFunctionHasASafeSearchPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	rows, err := db.Pool.Query(ctx, `
		SELECT p.oid::regprocedure::text, n.nspname, p.prosecdef, l.lanname, p.prosqlbody IS NOT NULL,
		       coalesce(p.proconfig, '{}'), p.prosrc, p.provolatile::text
		FROM pg_catalog.pg_proc p
		JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
		JOIN pg_catalog.pg_language l ON l.oid = p.prolang
		WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%'
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	type fn struct {
		name, schema, lang, src string
		volatile                string
		secdef, sqlBody         bool
		config                  []string
	}
	var fns []fn
	for rows.Next() {
		var f fn
		if err := rows.Scan(&f.name, &f.schema, &f.secdef, &f.lang, &f.sqlBody, &f.config, &f.src, &f.volatile); err != nil {
			t.Fatal(err)
		}
		fns = append(fns, f)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if len(fns) < 20 {
		t.Fatalf("found only %d functions; is the query right?", len(fns))
	}

	// Relations of schemas that are not on the safe path (River's): a
	// body naming one unqualified would look it up in pg_temp, last.
	var offPath []string
	if err := db.Pool.QueryRow(ctx, `
		SELECT coalesce(array_agg(DISTINCT c.relname::text), '{}') FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname NOT IN ('pg_catalog', 'kiln', 'information_schema') AND n.nspname NOT LIKE 'pg_%'`).Scan(&offPath); err != nil {
		t.Fatal(err)
	}

	// Every relation a body names after FROM, JOIN, UPDATE or INTO is
	// schema-qualified: the names of kiln's, River's and the catalog's
	// relations must not appear bare there.
	var relations []string
	if err := db.Pool.QueryRow(ctx, `
		SELECT array_agg(DISTINCT c.relname::text) FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname IN ('pg_catalog', 'kiln', 'river') AND c.relkind IN ('r', 'v', 'm', 'p', 'f', 'S')`).Scan(&relations); err != nil {
		t.Fatal(err)
	}
	bare := regexp.MustCompile(`(?i)\b(?:FROM|JOIN|UPDATE|INTO)\s+([a-z_][a-z0-9_]*)\b([^.]|$)`)

	seen := map[string]bool{}
	for _, f := range fns {
		name := strings.ReplaceAll(f.name, " ", "")
		seen[name] = true
		var paths []string
		for _, c := range f.config {
			if strings.HasPrefix(c, "search_path=") {
				paths = append(paths, c)
			}
		}
		if why, ok := preparsed[name]; ok {
			if f.lang != "sql" || !f.sqlBody || f.secdef || len(paths) > 0 {
				t.Errorf("%s is kept without SET search_path (%s), so it must be LANGUAGE sql with a SQL-standard body, not SECURITY DEFINER and without SET: language %s, standard body %v, security definer %v, config %v",
					name, why, f.lang, f.sqlBody, f.secdef, f.config)
			}
			continue
		}
		if why, ok := riverOwn[name]; ok {
			if f.schema != "river" || f.lang != "sql" || f.secdef || len(f.config) > 0 || f.volatile != "i" {
				t.Errorf("%s is River's (%s), kept without SET search_path, so it must be an IMMUTABLE SQL function of schema river with the caller's rights and no SET: schema %s, language %s, security definer %v, config %v, volatility %s",
					name, why, f.schema, f.lang, f.secdef, f.config, f.volatile)
			}
			for _, rel := range relations {
				if regexp.MustCompile(`(?i)\b` + regexp.QuoteMeta(rel) + `\b`).MatchString(f.src) {
					t.Errorf("%s is River's and runs with the caller's search_path, but names relation %s", name, rel)
				}
			}
			continue
		}
		if !slices.Equal(paths, []string{safePath}) {
			t.Errorf("%s runs with %v; every function must be SET %s (pg_temp last; docs/security.md)", name, f.config, strings.Replace(safePath, "=", " = ", 1))
		}
		for _, m := range bare.FindAllStringSubmatch(f.src, -1) {
			if slices.Contains(relations, strings.ToLower(m[1])) {
				t.Errorf("%s names relation %s without its schema", name, m[1])
			}
		}
		for _, rel := range offPath {
			// (a quote before it: a string, such as a JSON key, not a name)
			re := regexp.MustCompile(`(^|[^.\w"'])` + regexp.QuoteMeta(rel) + `\b`)
			if re.MatchString(f.src) {
				t.Errorf("%s names %s without its schema; with pg_temp on the path it must be qualified", name, rel)
			}
		}
	}
	for _, list := range []map[string]string{preparsed, riverOwn} {
		for name := range list {
			if !seen[name] {
				t.Errorf("%s is listed as an exception, but the database does not have it", name)
			}
		}
	}

	// Triggers run the functions checked above, or built-in ones.
	triggers, err := db.Pool.Query(ctx, `
		SELECT t.tgrelid::regclass::text || ' ' || t.tgname, replace(t.tgfoid::regprocedure::text, ' ', ''), n.nspname
		FROM pg_catalog.pg_trigger t
		JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
		JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
		WHERE NOT t.tgisinternal
		UNION ALL
		SELECT 'event trigger ' || e.evtname, replace(e.evtfoid::regprocedure::text, ' ', ''), n.nspname
		FROM pg_catalog.pg_event_trigger e
		JOIN pg_catalog.pg_proc p ON p.oid = e.evtfoid
		JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace`)
	if err != nil {
		t.Fatal(err)
	}
	var count int
	for triggers.Next() {
		var trigger, fn, schema string
		if err := triggers.Scan(&trigger, &fn, &schema); err != nil {
			t.Fatal(err)
		}
		count++
		if !seen[fn] && schema != "pg_catalog" {
			t.Errorf("trigger %s runs %s, which this test did not check", trigger, fn)
		}
	}
	if err := triggers.Err(); err != nil {
		t.Fatal(err)
	}
	if count < 10 {
		t.Fatalf("found only %d triggers; is the query right?", count)
	}
}
