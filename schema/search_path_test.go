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

// TestEveryFunctionHasASafeSearchPath enumerates every function in schema
// kiln, and every SECURITY DEFINER function anywhere outside the system
// schemas, and fails for one whose search_path does not end in pg_temp
// (unless it is one of the preparsed helpers above, whose properties are
// checked instead). Functions added by later migrations are covered
// without changing this test.
func TestEveryFunctionHasASafeSearchPath(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t)
	rows, err := db.Pool.Query(ctx, `
		SELECT p.oid::regprocedure::text, n.nspname, p.prosecdef, l.lanname, p.prosqlbody IS NOT NULL,
		       coalesce(p.proconfig, '{}'), p.prosrc
		FROM pg_catalog.pg_proc p
		JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
		JOIN pg_catalog.pg_language l ON l.oid = p.prolang
		WHERE n.nspname = 'kiln'
		   OR (p.prosecdef AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%')
		ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	type fn struct {
		name, schema, lang, src string
		secdef, sqlBody         bool
		config                  []string
	}
	var fns []fn
	for rows.Next() {
		var f fn
		if err := rows.Scan(&f.name, &f.schema, &f.secdef, &f.lang, &f.sqlBody, &f.config, &f.src); err != nil {
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
	for name := range preparsed {
		if !seen[name] {
			t.Errorf("preparsed names %s, which the database does not have", name)
		}
	}
}
