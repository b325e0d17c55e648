// Package pgtest gives tests their own migrated database in the private
// PostgreSQL cluster that .ci/with-cluster starts (make test does this).
//
// A template database is migrated once per schema version, under an advisory
// lock so that parallel test binaries share it; every test then gets a fresh
// copy (CREATE DATABASE ... TEMPLATE), dropped when the test ends.
package pgtest

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/roles"
	"github.com/kiln-build/kiln/schema"
)

// EnvURL names the variable holding the private cluster's superuser URL.
const EnvURL = "KILN_TEST_PGURL"

// EnvPgBouncerURL and EnvStandbyURL name the variables holding the URLs of
// the PgBouncer (transaction pooling, in front of the primary) and of the
// hot standby that .ci/pgcluster starts beside the primary.
const (
	EnvPgBouncerURL = "KILN_TEST_PGBOUNCER_URL"
	EnvStandbyURL   = "KILN_TEST_STANDBY_URL"
)

// URLHost returns the host:port of a URL.
func URLHost(t testing.TB, s string) (string, *url.URL) {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return u.Host, u
}

// ViaAs returns a URL for this database as role through the server that
// the variable env names (EnvPgBouncerURL, EnvStandbyURL), failing the test
// when it is not set.
func (d *DB) ViaAs(t testing.TB, env, role string) string {
	t.Helper()
	s := os.Getenv(env)
	if s == "" {
		t.Fatalf("%s is not set: run the tests with 'make test' (or .ci/with-cluster go test ./...), whose cluster has a PgBouncer and a standby", env)
	}
	via, err := url.Parse(s)
	if err != nil {
		t.Fatalf("%s: %v", env, err)
	}
	u, _ := url.Parse(d.URLAs(role))
	u.Host = via.Host
	return u.String()
}

// DB is one test's database.
type DB struct {
	Name string
	URL  string // superuser URL of this database
	Pool *pgxpool.Pool
}

// URLAs returns a URL for this database connecting as role (the private
// cluster trusts local connections, so no password is needed).
func (d *DB) URLAs(role string) string {
	u, _ := url.Parse(d.URL)
	u.User = url.User(role)
	return u.String()
}

// AdminURL returns the cluster's superuser URL, failing the test when no
// private cluster is running.
func AdminURL(t testing.TB) string {
	t.Helper()
	s := os.Getenv(EnvURL)
	if s == "" {
		t.Fatalf("%s is not set: run the tests with 'make test' (or .ci/with-cluster go test ./...) so a private PostgreSQL cluster is started", EnvURL)
	}
	return s
}

var (
	templateOnce sync.Once
	templateName string
	templateErr  error
)

// New creates a fresh migrated database for the test and drops it afterwards.
func New(t testing.TB) *DB {
	t.Helper()
	admin := AdminURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	templateOnce.Do(func() { templateName, templateErr = ensureTemplate(ctx, admin) })
	if templateErr != nil {
		t.Fatalf("preparing template database: %v", templateErr)
	}
	name := "kiln_test_" + randomHex(6)
	if err := execAdmin(ctx, admin, fmt.Sprintf("CREATE DATABASE %s TEMPLATE %s", name, templateName)); err != nil {
		t.Fatalf("creating test database: %v", err)
	}
	dbURL := withDatabase(admin, name)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatalf("connecting to test database: %v", err)
	}
	// Database-level grants are not copied from a template.
	if _, err := pool.Exec(ctx, roles.Groups()); err != nil {
		t.Fatalf("granting database privileges: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if os.Getenv("KILN_TEST_KEEP_DB") == "" {
			_ = execAdmin(ctx, admin, fmt.Sprintf("DROP DATABASE IF EXISTS %s WITH (FORCE)", name))
		}
	})
	return &DB{Name: name, URL: dbURL, Pool: pool}
}

// NewEmpty creates an empty database (nothing migrated) for the test.
func NewEmpty(t testing.TB) *DB {
	t.Helper()
	admin := AdminURL(t)
	ctx := context.Background()
	name := "kiln_empty_" + randomHex(6)
	if err := execAdmin(ctx, admin, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("creating empty database: %v", err)
	}
	dbURL := withDatabase(admin, name)
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(func() {
		pool.Close()
		_ = execAdmin(context.Background(), admin, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return &DB{Name: name, URL: dbURL, Pool: pool}
}

// ensureTemplate creates (once per cluster and schema version) a database
// migrated to the latest schema with the roles applied.
func ensureTemplate(ctx context.Context, admin string) (string, error) {
	h := sha256.New()
	ms, err := schema.Migrations()
	if err != nil {
		return "", err
	}
	cur, err := schema.Current()
	if err != nil {
		return "", err
	}
	for _, m := range append(ms, cur...) {
		h.Write([]byte(m.Name))
		h.Write([]byte(m.SQL))
	}
	h.Write([]byte(roles.Groups()))
	h.Write([]byte(roles.Grants()))
	name := "kiln_tpl_" + hex.EncodeToString(h.Sum(nil))[:16]

	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", fmt.Errorf("connecting to private cluster: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(4242)"); err != nil {
		return "", err
	}
	defer conn.Exec(ctx, "SELECT pg_advisory_unlock(4242)") //nolint:errcheck
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if exists {
		return name, nil
	}
	building := name + "_new"
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+building+" WITH (FORCE)"); err != nil {
		return "", err
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+building); err != nil {
		return "", err
	}
	pool, err := pgxpool.New(ctx, withDatabase(admin, building))
	if err != nil {
		return "", err
	}
	if _, err := pool.Exec(ctx, roles.Groups()); err != nil {
		pool.Close()
		return "", fmt.Errorf("creating group roles: %w", err)
	}
	if _, err := schema.Migrate(ctx, pool); err != nil {
		pool.Close()
		return "", fmt.Errorf("migrating template: %w", err)
	}
	if _, err := pool.Exec(ctx, roles.Grants()); err != nil {
		pool.Close()
		return "", fmt.Errorf("applying roles: %w", err)
	}
	pool.Close()
	if _, err := conn.Exec(ctx, "ALTER DATABASE "+building+" RENAME TO "+name); err != nil {
		return "", err
	}
	return name, nil
}

func execAdmin(ctx context.Context, admin, sql string) error {
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

func withDatabase(base, db string) string {
	u, err := url.Parse(base)
	if err != nil {
		panic(err)
	}
	u.Path = "/" + db
	return u.String()
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Querier is what Plan explains with: a pool, a connection or a
// transaction (whose role and settings the plan is made under).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// Plan returns the plan PostgreSQL makes for query with args (EXPLAIN
// (COSTS OFF), one line per node), for tests that check which indexes a
// query reads.
func Plan(t testing.TB, q Querier, query string, args ...any) string {
	t.Helper()
	rows, err := q.Query(context.Background(), "EXPLAIN (COSTS OFF) "+query, args...)
	if err != nil {
		t.Fatalf("explaining %q: %v", query, err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("explaining %q: %v", query, err)
	}
	return strings.Join(lines, "\n")
}
