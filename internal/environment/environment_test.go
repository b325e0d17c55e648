package environment_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	urfave "github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/backend"
	"github.com/kiln-build/kiln/internal/blob"
	kilncli "github.com/kiln-build/kiln/internal/cli"
	"github.com/kiln-build/kiln/internal/environment"
	"github.com/kiln-build/kiln/internal/environment/envtest"
	"github.com/kiln-build/kiln/internal/sandbox"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/riverjob"
	"github.com/kiln-build/kiln/schema"
)

func as(t *testing.T, db *pgtest.DB, role string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), db.URLAs(role))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// builder registers builder name in its own login role (a kiln_builder)
// for platforms, and returns a pool connected as that role.
func builder(t *testing.T, db *pgtest.DB, name string, platforms ...string) *pgxpool.Pool {
	t.Helper()
	role := farmtest.Person(t, db, name, "kiln_builder")
	if _, err := db.Pool.Exec(t.Context(), `INSERT INTO kiln.builder (name, host, role) VALUES ($1, $1 || '.example.org', $2)`, name, role); err != nil {
		t.Fatal(err)
	}
	for _, p := range platforms {
		if _, err := db.Pool.Exec(t.Context(), `INSERT INTO kiln.builder_platform (builder, platform) VALUES ($1, $2)`, name, p); err != nil {
			t.Fatal(err)
		}
	}
	return as(t, db, role)
}

func sbuildPlatform(t *testing.T, db *pgtest.DB, name string) {
	t.Helper()
	if _, err := db.Pool.Exec(t.Context(), `INSERT INTO kiln.platform (name, arch, package_format, backend, backend_settings)
		VALUES ($1, 'amd64', 'deb', 'sbuild', '{"dist": "bookworm"}')`, name); err != nil {
		t.Fatal(err)
	}
}

func wantCode(t *testing.T, err error, code, what string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != code {
		t.Fatalf("%s: want SQLSTATE %s, got %v", what, code, err)
	}
}

// small is a stand-in tarball (the guards do not look inside).
func small(t *testing.T, content string) environment.Made {
	t.Helper()
	p := filepath.Join(t.TempDir(), "environment.tar.zst")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return environment.Made{Path: p, Sum: sha256.Sum256([]byte(content)), Size: int64(len(content)),
		Spec:     environment.Spec{Dist: "bookworm", Arch: "amd64", Mirror: "http://deb.debian.org/debian", Components: []string{"main"}},
		Packages: map[string]string{"base-files": "12.4+deb12u5"}}
}

// Only a builder of the platform installs an environment, and only from a
// verified blob its own role stored; nobody writes the tables directly;
// the current environment cannot be removed.
func TestInstallGuards(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t)
	sbuildPlatform(t, db, "bookworm-amd64")
	sbuildPlatform(t, db, "trixie-amd64")
	b1 := builder(t, db, "b1", "bookworm-amd64")
	b2 := builder(t, db, "b2", "trixie-amd64")

	first, err := environment.Install(ctx, b1, "b1", "bookworm-amd64", small(t, "first"))
	if err != nil {
		t.Fatal(err)
	}
	cur, err := environment.Current(ctx, b2, "bookworm-amd64")
	if err != nil || cur.ID != first.ID || cur.Sum != sha256.Sum256([]byte("first")) || cur.Builder != "b1" || !cur.Retired.IsZero() {
		t.Fatalf("current environment %+v, %v", cur, err)
	}
	var actor string
	if err := db.Pool.QueryRow(ctx, `SELECT actor FROM kiln.event WHERE kind = 'environment.install' AND builder = 'b1'`).Scan(&actor); err != nil || !strings.HasPrefix(actor, "b1_") {
		t.Fatalf("install event by %q, %v", actor, err)
	}

	// b2 does not build bookworm-amd64, and cannot pass for b1.
	_, err = environment.Install(ctx, b2, "b2", "bookworm-amd64", small(t, "b2's"))
	wantCode(t, err, "42501", "a builder of another platform")
	_, err = environment.Install(ctx, b2, "b1", "bookworm-amd64", small(t, "b2 as b1"))
	wantCode(t, err, "42501", "a builder naming another role's builder")

	// A blob b2 stored (verified) is not b1's to install; nor is an
	// unverified blob of b1's own.
	other := small(t, "stored by b2")
	info, err := blob.PutFile(ctx, b2, other.Path, true)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b1.Exec(ctx, `SELECT kiln.environment_install('b1', 'bookworm-amd64', $1, '{}', '{}')`, info.Sum[:])
	wantCode(t, err, "42501", "installing another role's blob")
	unverified, err := blob.Put(ctx, b1, bytes.NewReader([]byte("unverified")), false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b1.Exec(ctx, `SELECT kiln.environment_install('b1', 'bookworm-amd64', $1, '{}', '{}')`, unverified.Sum[:])
	wantCode(t, err, "42501", "installing an unverified blob")
	_, err = b1.Exec(ctx, `SELECT kiln.environment_install('b1', 'bookworm-amd64', $1, '[]', '{}')`, first.Sum[:])
	wantCode(t, err, "22023", "a spec that is not an object")

	// Nobody writes the tables directly, and people cannot install.
	_, err = b1.Exec(ctx, `INSERT INTO kiln.environment (platform, blob_sha256, size, spec, builder) VALUES ('bookworm-amd64', $1, 5, '{}', 'b1')`, first.Sum[:])
	wantCode(t, err, "42501", "a builder inserting directly")
	_, err = b1.Exec(ctx, `UPDATE kiln.platform_environment SET environment = environment`)
	wantCode(t, err, "42501", "a builder repointing a platform")
	alice := as(t, db, farmtest.Person(t, db, "alice", "kiln_submitter"))
	_, err = alice.Exec(ctx, `SELECT kiln.environment_install('b1', 'bookworm-amd64', $1, '{}', '{}')`, first.Sum[:])
	wantCode(t, err, "42501", "a submitter installing")
	reader := as(t, db, farmtest.Person(t, db, "reader", "kiln_reader"))
	var n int
	if err := reader.QueryRow(ctx, `SELECT count(*) FROM kiln.environment e JOIN kiln.platform_environment pe ON pe.environment = e.id`).Scan(&n); err != nil || n != 1 {
		t.Fatalf("a reader sees %d current environments, %v", n, err)
	}
	_, err = reader.Exec(ctx, `DELETE FROM kiln.environment`)
	wantCode(t, err, "42501", "a reader removing environments")

	// A refresh retires the first; an admin removes it, but not the
	// current one.
	second, err := environment.Install(ctx, b1, "b1", "bookworm-amd64", small(t, "second"))
	if err != nil {
		t.Fatal(err)
	}
	if old, err := environment.Get(ctx, b1, first.ID); err != nil || old.Retired.IsZero() {
		t.Fatalf("the replaced environment %+v, %v", old, err)
	}
	admin := as(t, db, farmtest.Person(t, db, "admin", "kiln_admin"))
	_, err = admin.Exec(ctx, `DELETE FROM kiln.environment WHERE id = $1`, second.ID)
	wantCode(t, err, "23503", "removing the current environment")
	if tag, err := admin.Exec(ctx, `DELETE FROM kiln.environment WHERE id = $1`, first.ID); err != nil || tag.RowsAffected() != 1 {
		t.Fatalf("removing the retired environment: %v %v", tag, err)
	}
	list, err := environment.List(ctx, admin, "")
	if err != nil || len(list) != 1 || list[0].ID != second.ID {
		t.Fatalf("environments after removal: %+v, %v", list, err)
	}
}

// The cache fetches a tarball once, checks it and evicts the least
// recently used beyond its limits, never one in use.
func TestCacheEvicts(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t)
	sbuildPlatform(t, db, "bookworm-amd64")
	b1 := builder(t, db, "b1", "bookworm-amd64")
	var envs []environment.Environment
	for _, content := range []string{"one", "two", "three"} {
		e, err := environment.Install(ctx, b1, "b1", "bookworm-amd64", small(t, content))
		if err != nil {
			t.Fatal(err)
		}
		envs = append(envs, e)
	}
	c := &environment.Cache{Dir: filepath.Join(t.TempDir(), "cache"), Keep: 2}
	var releases []func()
	for i, e := range envs {
		got, err := c.Use(ctx, b1, e.Sum)
		if err != nil {
			t.Fatal(err)
		}
		p, release := got.Path, got.Release
		if b, _ := os.ReadFile(p); string(b) != []string{"one", "two", "three"}[i] {
			t.Fatalf("cached %s holds %q", p, b)
		}
		// Distinct use times, oldest first.
		old := time.Now().Add(time.Duration(i-10) * time.Minute)
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		releases = append(releases, release)
	}
	// All in use: nothing goes.
	if removed, err := c.Evict(); err != nil || len(removed) != 0 {
		t.Fatalf("evicted %v (%v) while in use", removed, err)
	}
	releases[0]()
	releases[0]() // releasing twice is harmless
	removed, err := c.Evict()
	if err != nil || len(removed) != 1 || removed[0] != envs[0].Sum {
		t.Fatalf("evicted %v (%v), want the oldest", removed, err)
	}
	if _, err := os.Stat(c.Path(envs[0].Sum)); !os.IsNotExist(err) {
		t.Fatalf("the evicted tarball is still there: %v", err)
	}
	// A byte cap: three bytes leave only the newest ("three" is 5 bytes,
	// over the cap, but it is in use).
	releases[1]()
	c.MaxBytes = 3
	removed, err = c.Evict()
	if err != nil || len(removed) != 1 || removed[0] != envs[1].Sum {
		t.Fatalf("byte cap evicted %v (%v)", removed, err)
	}
	// A corrupt cached copy is never produced: a fetch of a blob that does
	// not exist leaves nothing.
	var missing blob.Sum
	if _, err := c.Use(ctx, b1, missing); err == nil {
		t.Fatal("fetching a missing blob succeeded")
	}
	if _, err := os.Stat(c.Path(missing)); !os.IsNotExist(err) {
		t.Fatalf("a failed fetch left %s: %v", c.Path(missing), err)
	}
	releases[2]()
}

// The whole lifecycle with real parts: the environment mmdebstrap made is
// installed by one builder; a second builder, which has never seen it,
// fetches it from the database and builds in it while the first refreshes
// the platform's environment (a new mmdebstrap run); the build is
// unaffected and names the old environment, the platform then uses the new
// one, and the old one stays fetchable until it is removed.
func TestLifecycle(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	shared, spec := envtest.Shared(t)
	db := pgtest.New(t)
	sbuildPlatform(t, db, "bookworm-amd64")
	maker := builder(t, db, "maker", "bookworm-amd64")
	user := builder(t, db, "user", "bookworm-amd64")

	// Create: install what mmdebstrap made (envtest.Shared ran
	// environment.Create).
	made, err := environment.Inspect(ctx, shared, spec)
	if err != nil {
		t.Fatal(err)
	}
	if made.Packages["build-essential"] == "" || made.Packages["apt"] == "" {
		t.Fatalf("the environment's package list lacks build-essential or apt: %d packages", len(made.Packages))
	}
	old, err := environment.Install(ctx, maker, "maker", "bookworm-amd64", made)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("environment %d: %s, %d bytes, %d packages", old.ID, old.Sum, old.Size, len(old.Packages))

	// The second builder has never seen it: its cache fetches it.
	cache := &environment.Cache{Dir: filepath.Join(t.TempDir(), "cache"), Keep: 1}
	cur, err := environment.Current(ctx, user, "bookworm-amd64")
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	first, err := cache.Use(ctx, user, cur.Sum)
	if err != nil {
		t.Fatal(err)
	}
	chroot, release := first.Path, first.Release
	if !first.Fetched {
		t.Fatal("the first use on a builder without it did not say it fetched it")
	}
	again, err := cache.Use(ctx, user, cur.Sum)
	if err != nil {
		t.Fatal(err)
	}
	again.Release()
	if again.Fetched || again.Path != chroot {
		t.Fatalf("the second use %+v: want %s, not fetched", again, chroot)
	}
	t.Logf("first use on a builder without it: fetched %d bytes in %s", cur.Size, time.Since(start).Round(time.Millisecond))
	r, u := envtest.Runner(t)
	if err := os.Chmod(filepath.Dir(chroot), 0o755); err != nil {
		t.Fatal(err)
	}
	for d := filepath.Dir(filepath.Dir(chroot)); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	b, err := backend.New(backend.Platform{Backend: "sbuild", Arch: "amd64", Settings: map[string]any{
		"dist": spec.Dist, "chroot": chroot, "chroot_mode": "unshare"}}, backend.Options{})
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(r.Home, "work")
	pkg := filepath.Join(work, "kiln-life_1.0")
	if err := os.MkdirAll(filepath.Join(pkg, "kiln-life-1.0", "debian", "source"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"debian/source/format": "3.0 (native)\n",
		"debian/changelog":     "kiln-life (1.0) bookworm; urgency=medium\n\n  * Test package.\n\n -- kiln tests <kiln@example.org>  Mon, 01 Jan 2024 00:00:00 +0000\n",
		"debian/control": "Source: kiln-life\nMaintainer: kiln tests <kiln@example.org>\nBuild-Depends: debhelper-compat (= 13)\nRules-Requires-Root: no\n\n" +
			"Package: kiln-life\nArchitecture: all\nDescription: kiln test package\n A package made by kiln's tests.\n",
		"debian/rules": "#!/usr/bin/make -f\n%:\n\tdh $@\n",
	} {
		mode := os.FileMode(0o644)
		if name == "debian/rules" {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(pkg, "kiln-life-1.0", name), []byte(body), mode); err != nil {
			t.Fatal(err)
		}
	}
	envtest.GiveTree(t, u, work)
	var out bytes.Buffer
	if err := r.Run(ctx, sandbox.Command{Dir: pkg, Args: []string{"dpkg-source", "-b", "kiln-life-1.0"}, Output: &out}); err != nil {
		t.Fatalf("dpkg-source: %v\n%s", err, out.String())
	}

	// Build in the old environment while the maker refreshes.
	type built struct {
		out []backend.Output
		err error
		log string
	}
	done := make(chan built, 1)
	go func() {
		var log bytes.Buffer
		o, err := b.Build(context.Background(), r, backend.Request{Source: filepath.Join(pkg, "kiln-life_1.0.dsc"), Dir: pkg, Log: &log})
		done <- built{o, err, log.String()}
	}()
	// The refresh: an admin asks for it, and the maker works the River
	// job (riverjob.EnvironmentWorker with an environment.Maker, as a builder
	// does) while the build runs.
	adminURL := db.URLAs(farmtest.Person(t, db, "admin", "kiln_admin"))
	if out, err := kiln(t, adminURL, "admin", "environment", "refresh", "bookworm-amd64"); err != nil || !strings.Contains(out, "queued") {
		t.Fatalf("kiln admin environment refresh: %v\n%s", err, out)
	}
	// Until the refresh is in place the platform keeps its environment.
	if cur, err := environment.Current(ctx, user, "bookworm-amd64"); err != nil || cur.ID != old.ID {
		t.Fatalf("with the refresh queued the platform uses %+v (%v), want environment %d", cur, err, old.ID)
	}
	var mmlog bytes.Buffer
	workers := river.NewWorkers()
	river.AddWorker(workers, &riverjob.EnvironmentWorker{Maker: &environment.Maker{DB: maker, Builder: "maker", Runner: r, User: u, WorkDir: r.Home, Log: &mmlog}})
	client, err := river.NewClient(riverpgxv5.New(maker), &river.Config{
		Schema: schema.RiverSchema, Queues: map[string]river.QueueConfig{riverjob.BuildQueue("bookworm-amd64"): {MaxWorkers: 1}},
		Workers: workers, LeaderElectionDisabled: true, ReindexerSchedule: river.NeverSchedule(), FetchPollInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	events, cancelEvents := client.Subscribe(river.EventKindJobCompleted, river.EventKindJobFailed)
	defer cancelEvents()
	if err := client.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer client.Stop(context.Background()) //nolint:errcheck
	if ev := <-events; ev.Kind != river.EventKindJobCompleted || ev.Job.Kind != "environment" {
		t.Fatalf("the environment River job: %s %s %v\n%s", ev.Kind, ev.Job.Kind, ev.Job.Errors, mmlog.String())
	}
	newer, err := environment.Current(ctx, maker, "bookworm-amd64")
	if err != nil || newer.ID == old.ID || newer.Builder != "maker" {
		t.Fatalf("after the refresh job the platform uses %+v, %v", newer, err)
	}
	res := <-done
	if res.err != nil {
		t.Fatalf("the build in the old environment: %v\n%s", res.err, res.log)
	}
	if !strings.Contains(res.log, "Status: successful") {
		t.Fatalf("the build's log:\n%s", res.log)
	}
	if o, err := environment.Get(ctx, user, old.ID); err != nil || o.Retired.IsZero() {
		t.Fatalf("the old environment after the refresh: %+v, %v", o, err)
	}

	// The next build fetches the new one; the old one, released, is
	// evicted (Keep 1).
	release()
	next, err := cache.Use(ctx, user, newer.Sum)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Release()
	removed, err := cache.Evict()
	if err != nil || len(removed) != 1 || removed[0] != old.Sum {
		t.Fatalf("evicted %v (%v), want the old environment", removed, err)
	}

	// The admin's view: both listed, the old one removable, the current
	// one not.
	listing, err := kiln(t, adminURL, "admin", "environment", "list", "bookworm-amd64")
	if err != nil || !strings.Contains(listing, "current") || !strings.Contains(listing, "retired") {
		t.Fatalf("kiln admin environment list: %v\n%s", err, listing)
	}
	shown, err := kiln(t, adminURL, "admin", "environment", "show", fmt.Sprint(newer.ID))
	if err != nil || !strings.Contains(shown, newer.Sum.String()) || !strings.Contains(shown, "  build-essential ") {
		t.Fatalf("kiln admin environment show: %v\n%s", err, shown)
	}
	if out, err := kiln(t, adminURL, "admin", "environment", "rm", fmt.Sprint(newer.ID)); err == nil || !strings.Contains(err.Error(), "current environment") {
		t.Fatalf("removing the current environment: %v\n%s", err, out)
	}
	if out, err := kiln(t, adminURL, "admin", "environment", "rm", fmt.Sprint(old.ID)); err != nil {
		t.Fatalf("removing the old environment: %v\n%s", err, out)
	}

	// A refresh that fails (its mirror is gone) leaves the current
	// environment in place.
	if _, err := db.Pool.Exec(ctx, `UPDATE kiln.platform_environment SET spec = jsonb_set(spec, '{mirror}', '"file:///nonexistent/debian"')
		WHERE platform = 'bookworm-amd64'`); err != nil {
		t.Fatal(err)
	}
	mmlog.Reset()
	failing := &environment.Maker{DB: maker, Builder: "maker", Runner: r, User: u, WorkDir: r.Home, Log: &mmlog}
	if err := failing.MakeEnvironment(ctx, "bookworm-amd64"); err == nil {
		t.Fatalf("a refresh from a missing mirror succeeded:\n%s", mmlog.String())
	}
	if cur, err := environment.Current(ctx, user, "bookworm-amd64"); err != nil || cur.ID != newer.ID || !cur.Retired.IsZero() {
		t.Fatalf("after a failed refresh the platform uses %+v (%v), want environment %d", cur, err, newer.ID)
	}
}

// kiln runs the kiln CLI against dbURL.
func kiln(t *testing.T, dbURL string, args ...string) (string, error) {
	t.Helper()
	app := kilncli.App()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	app.ExitErrHandler = func(*urfave.Context, error) {}
	err := app.RunContext(t.Context(), append([]string{"kiln", "--db", dbURL}, args...))
	return out.String(), err
}

// kiln admin environment create records the spec and queues one River job
// in the platform's build queue; bad input is refused with a reason.
func TestAdminEnvironmentCreate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t)
	sbuildPlatform(t, db, "bookworm-amd64")
	farmtest.Platform(t, db.Pool, "plain-amd64", "amd64")
	adminRole := farmtest.Person(t, db, "admin", "kiln_admin")
	adminURL := db.URLAs(adminRole)
	for _, c := range []struct {
		args []string
		err  string
	}{
		{[]string{"plain-amd64"}, "only sbuild platforms"},
		{[]string{"nowhere"}, "does not exist"},
		{[]string{"--mirror", "ftp://example.org/debian", "bookworm-amd64"}, "not an http, https or file URL"},
		{[]string{"--package", "../evil", "bookworm-amd64"}, "not a package name"},
		{[]string{"--dist", "-x", "bookworm-amd64"}, "not a suite name"},
	} {
		out, err := kiln(t, adminURL, append([]string{"admin", "environment", "create"}, c.args...)...)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("create %v: %v (%s), want an error containing %q", c.args, err, out, c.err)
		}
	}
	out, err := kiln(t, adminURL, "admin", "environment", "create", "--package", "dose-distcheck", "--max-age", "48h", "bookworm-amd64")
	if err != nil || !strings.Contains(out, "queued: a builder of bookworm-amd64 makes its bookworm/amd64 environment") {
		t.Fatalf("create: %v\n%s", err, out)
	}
	if _, err := kiln(t, adminURL, "admin", "environment", "refresh", "bookworm-amd64"); err == nil || !strings.Contains(err.Error(), "already being made") {
		t.Fatalf("a second request while one waits: %v", err)
	}
	var spec, queue, args string
	var maxAge float64
	if err := db.Pool.QueryRow(ctx, `SELECT pe.spec::text, extract(epoch FROM pe.max_age), j.queue, j.args::text
		FROM kiln.platform_environment pe, river.river_job j WHERE j.kind = 'environment'`).Scan(&spec, &maxAge, &queue, &args); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(spec, `"packages": ["dose-distcheck"]`) || !strings.Contains(spec, `"dist": "bookworm"`) || maxAge != 48*3600 ||
		queue != "build-bookworm-amd64" || args != `{"platform": "bookworm-amd64"}` {
		t.Fatalf("spec %s, max age %v, River job %s %s", spec, maxAge, queue, args)
	}
	if _, err := kiln(t, adminURL, "admin", "environment", "refresh", "plain-amd64"); err == nil || !strings.Contains(err.Error(), "no environment to refresh") {
		t.Fatalf("refreshing a platform without an environment: %v", err)
	}
	// Admins queue nothing else: no other kind, no other queue, no
	// platform without a spec.
	admin := as(t, db, adminRole)
	for _, c := range [][3]string{
		{"build", "build-bookworm-amd64", `{"platform": "bookworm-amd64", "task_id": 1}`},
		{"environment", "build-plain-amd64", `{"platform": "bookworm-amd64"}`},
		{"environment", "build-plain-amd64", `{"platform": "plain-amd64"}`},
	} {
		_, err := admin.Exec(ctx, `INSERT INTO river.river_job (kind, queue, args, max_attempts, state) VALUES ($1, $2, $3, 1, 'available')`, c[0], c[1], c[2])
		wantCode(t, err, "42501", "an admin inserting River job "+c[0]+" in "+c[1])
	}
	_, err = admin.Exec(ctx, `UPDATE river.river_job SET kind = 'build' WHERE kind = 'environment'`)
	wantCode(t, err, "42501", "an admin changing the environment job's kind")
	// People who are not admins cannot queue it.
	alice := db.URLAs(farmtest.Person(t, db, "alice", "kiln_submitter"))
	if _, err := kiln(t, alice, "admin", "environment", "create", "bookworm-amd64"); err == nil {
		t.Fatal("a submitter queued an environment job")
	}
}

// planting stands in for mmdebstrap run as the build user: instead of a
// tarball it leaves plant in its directory.
type planting func(dir string) error

func (p planting) Run(_ context.Context, c sandbox.Command) error { return p(c.Dir) }

// As the build user, whose directory mmdebstrap writes: an environment
// that is a symbolic link to a file only the builder may read, or a FIFO,
// is refused rather than followed or waited on, and nothing of the file
// reaches the builder's copy (which is what is hashed and stored).
func TestCreateRefusesWhatTheBuildUserPlanted(t *testing.T) {
	t.Parallel()
	spec := environment.Spec{Dist: "bookworm", Arch: "amd64", Mirror: "http://deb.debian.org/debian"}
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("THE BUILDER'S SECRET"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		plant planting
		want  string
	}{
		{"symlink", func(dir string) error { return os.Symlink(secret, filepath.Join(dir, "environment.tar.zst")) }, "symbolic link"},
		{"fifo", func(dir string) error { return syscall.Mkfifo(filepath.Join(dir, "environment.tar.zst"), 0o644) }, "not a regular file"},
		{"symlinked directory", func(dir string) error {
			if err := os.Symlink(filepath.Dir(secret), filepath.Join(dir, "sub")); err != nil {
				return err
			}
			return os.Symlink("sub/secret", filepath.Join(dir, "environment.tar.zst"))
		}, "symbolic link"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir, into := t.TempDir(), t.TempDir()
			done := make(chan error, 1)
			go func() {
				_, err := environment.Create(t.Context(), c.plant, spec, dir, into, io.Discard)
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Create blocked on what the build user left")
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Create: %v, want an error saying %q", err, c.want)
			}
			left, _ := os.ReadDir(into)
			for _, e := range left {
				b, _ := os.ReadFile(filepath.Join(into, e.Name()))
				if bytes.Contains(b, []byte("SECRET")) {
					t.Fatalf("the builder's copy %s holds the secret", e.Name())
				}
			}
		})
	}
}
