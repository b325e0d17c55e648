package split_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"

	"github.com/kiln-build/kiln/internal/blob"
	"github.com/kiln-build/kiln/internal/split"
	"github.com/kiln-build/kiln/internal/submit"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
	"github.com/kiln-build/kiln/riverjob"
)

// bundle is one test's farm: a database with platforms and buckets, a
// submitter (member of kiln_submitter) and a splitter (kiln_splitter), each
// a login role of its own connected as itself.
type bundle struct {
	db        *pgtest.DB
	alice     string // the submitter's role
	splitter  string // the splitter's role
	asAlice   *pgxpool.Pool
	asSplit   *pgxpool.Pool
	submitter *submit.Client
	maxSize   int64
}

func setup(t testing.TB) *bundle {
	t.Helper()
	ctx := context.Background()
	db := pgtest.New(t)
	b := &bundle{db: db, alice: "alice_" + db.Name, maxSize: split.DefaultMaxFileSize}
	splitter := "splitter_" + db.Name
	b.splitter = splitter
	mustExec(t, db.Pool, fmt.Sprintf(`CREATE ROLE %s LOGIN IN ROLE kiln_submitter; CREATE ROLE %s LOGIN IN ROLE kiln_splitter`, b.alice, splitter))
	t.Cleanup(func() {
		b.asAlice.Close()
		b.asSplit.Close()
		db.Pool.Exec(context.Background(), fmt.Sprintf("REASSIGN OWNED BY %s, %s TO postgres; DROP OWNED BY %s, %s; DROP ROLE %s; DROP ROLE %s",
			b.alice, splitter, b.alice, splitter, b.alice, splitter))
	})
	mustExec(t, db.Pool, `
		INSERT INTO kiln.platform (name, arch, package_format, backend, active) VALUES
			('el9-x86_64', 'x86_64', 'rpm', 'rpmbuild', true),
			('el9-aarch64', 'aarch64', 'rpm', 'rpmbuild', true),
			('el8-x86_64', 'x86_64', 'rpm', 'rpmbuild', false),
			('bookworm-amd64', 'amd64', 'deb', 'dpkg', true),
			('bookworm-arm64', 'arm64', 'deb', 'dpkg', true);
		INSERT INTO kiln.bucket (name, open) VALUES ('devel', false), ('stable', false), ('scratch', true);`)
	mustExec(t, db.Pool, fmt.Sprintf(`INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('devel', '%s')`, b.alice))
	var err error
	if b.asAlice, err = pgxpool.New(ctx, db.URLAs(b.alice)); err != nil {
		t.Fatal(err)
	}
	if b.asSplit, err = pgxpool.New(ctx, db.URLAs(splitter)); err != nil {
		t.Fatal(err)
	}
	if b.submitter, err = submit.New(b.asAlice); err != nil {
		t.Fatal(err)
	}
	return b
}

func mustExec(t testing.TB, db *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (b *bundle) submit(t *testing.T, req submit.Request) int64 {
	t.Helper()
	if req.Bucket == "" {
		req.Bucket = "devel"
	}
	res, err := b.submitter.Submit(context.Background(), req)
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	return res.JobID
}

// startSplitter starts the splitter's River client, as kiln-splitter runs
// it, connected as the splitter role.
func (b *bundle) startSplitter(t testing.TB) *river.Client[pgx.Tx] {
	t.Helper()
	rc, err := split.NewRiverClient(b.asSplit, split.New(b.asSplit, b.maxSize), slog.New(slog.DiscardHandler), 2)
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return rc
}

// validate runs the splitter's River worker until queue incoming has
// nothing left to run.
func (b *bundle) validate(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	rc := b.startSplitter(t)
	defer rc.Stop(ctx)
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var left int
		var errs []string
		err := b.db.Pool.QueryRow(ctx, `SELECT count(*) FILTER (WHERE state NOT IN ('completed', 'discarded', 'cancelled')),
				coalesce(array_agg(errors::text) FILTER (WHERE errors IS NOT NULL), '{}')
			FROM river.river_job WHERE queue = 'incoming'`).Scan(&left, &errs)
		if err != nil {
			t.Fatal(err)
		}
		if len(errs) > 0 {
			t.Fatalf("validation failed: %v", errs)
		}
		if left == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("validation did not finish: %d River jobs left", left)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type jobRow struct {
	Status                         string
	Reason                         *string
	Validated, Finished, StartedAt bool
	Submitter                      string
}

func (b *bundle) job(t *testing.T, id int64) jobRow {
	t.Helper()
	var j jobRow
	err := b.db.Pool.QueryRow(context.Background(), `SELECT status, reason, validated_at IS NOT NULL, finished_at IS NOT NULL, started_at IS NOT NULL, submitter
		FROM kiln.job WHERE id = $1`, id).Scan(&j.Status, &j.Reason, &j.Validated, &j.Finished, &j.StartedAt, &j.Submitter)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

type taskRow struct {
	Platform, Status string
	Reason           *string
	RiverQueue       *string
	RiverPriority    *int
	RiverTaskID      *int64
}

func (b *bundle) tasks(t *testing.T, id int64) []taskRow {
	t.Helper()
	rows, _ := b.db.Pool.Query(context.Background(), `
		SELECT t.platform, t.status, t.reason, r.queue, r.priority::int, (r.args->>'task_id')::bigint
		  FROM kiln.task t LEFT JOIN river.river_job r ON r.id = t.river_job_id
		 WHERE t.job_id = $1 AND (r.id IS NULL OR (r.args->>'job_id')::bigint = t.job_id) ORDER BY t.platform`, id)
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[taskRow])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (b *bundle) count(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := b.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func ptr[T any](v T) *T { return &v }

func TestSubmitValidateSplit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	hello := testpkg.SRPM(t, testpkg.Spec{Name: "hello", Version: "1.2", Release: "3", ExclusiveArch: []string{"x86_64"}})
	world := testpkg.SRPM(t, testpkg.Spec{Name: "world", ExcludeArch: []string{"ppc64le"}})
	id := b.submit(t, submit.Request{Files: []string{hello, world}, Priority: 3, Note: "first"})
	if j := b.job(t, id); j.Status != "submitted" || j.Submitter != b.alice {
		t.Fatalf("after submit: %+v", j)
	}
	b.validate(t)

	j := b.job(t, id)
	if j.Status != "queued" || j.Reason != nil || !j.Validated || j.Finished {
		t.Fatalf("after validation: %+v", j)
	}
	want := []taskRow{
		{Platform: "el9-aarch64", Status: "skipped", Reason: ptr("hello-1.2-3.src.rpm: ExclusiveArch x86_64 excludes aarch64")},
		{Platform: "el9-x86_64", Status: "pending", RiverQueue: ptr("build-el9-x86_64"), RiverPriority: ptr(3)},
	}
	got := b.tasks(t, id)
	if len(got) == 2 {
		want[1].RiverTaskID = got[1].RiverTaskID // the task id, checked against the task below
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("tasks = %s, want %s", dump(got), dump(want))
	}
	if n := b.count(t, `SELECT count(*) FROM kiln.task WHERE id = $1 AND platform = 'el9-x86_64'`, *got[1].RiverTaskID); n != 1 {
		t.Fatalf("the build River job names task %d, which is not the el9-x86_64 task", *got[1].RiverTaskID)
	}

	type pkgRow struct {
		FileName, Name, Version, Release string
		ExclusiveArch, ExcludeArch       []string
		Reason                           *string
		Verified                         bool
	}
	rows, _ := b.db.Pool.Query(ctx, `SELECT p.file_name, p.name, p.version, p.release, p.exclusive_arch, p.exclude_arch, p.reason, b.verified_at IS NOT NULL
		FROM kiln.package p JOIN kiln.blob b ON b.sha256 = p.blob_sha256 WHERE job_id = $1 ORDER BY seq`, id)
	pkgs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[pkgRow])
	if err != nil {
		t.Fatal(err)
	}
	wantPkgs := []pkgRow{
		{"hello-1.2-3.src.rpm", "hello", "1.2", "3", []string{"x86_64"}, nil, nil, true},
		{"world-1.0-1.src.rpm", "world", "1.0", "1", nil, []string{"ppc64le"}, nil, true},
	}
	if !reflect.DeepEqual(pkgs, wantPkgs) {
		t.Fatalf("packages = %+v, want %+v", pkgs, wantPkgs)
	}

	// Validating again (a retried River job) creates nothing twice.
	client, _ := river.NewClient(riverpgxv5.New(b.db.Pool), &river.Config{Schema: "river"})
	if _, err := client.Insert(ctx, riverjob.ValidateArgs{JobID: id}, nil); err != nil {
		t.Fatal(err)
	}
	b.validate(t)
	if n := b.count(t, `SELECT count(*) FROM kiln.task WHERE job_id = $1`, id); n != 2 {
		t.Fatalf("%d tasks after validating twice", n)
	}
	if n := b.count(t, `SELECT count(*) FROM river.river_job WHERE kind = 'build'`); n != 1 {
		t.Fatalf("%d build River jobs after validating twice", n)
	}
	if n := b.count(t, `SELECT count(*) FROM river.river_job WHERE kind = 'validate' AND state = 'completed'`); n != 2 {
		t.Fatalf("%d validate River jobs completed, want 2", n)
	}
}

func TestSubmitValidateSplitDSC(t *testing.T) {
	t.Parallel()
	b := setup(t)
	dsc := testpkg.DSC(t, testpkg.Deb{Name: "greet", Version: "2.0", Architecture: "any"})
	id := b.submit(t, submit.Request{Files: []string{dsc}, Platforms: []string{"BOOKWORM-AMD64"}})
	b.validate(t)
	if j := b.job(t, id); j.Status != "queued" {
		t.Fatalf("job %+v", j)
	}
	want := []taskRow{{Platform: "bookworm-amd64", Status: "pending", RiverQueue: ptr("build-bookworm-amd64"), RiverPriority: ptr(2)}}
	got := b.tasks(t, id)
	if len(got) == 1 {
		want[0].RiverTaskID = got[0].RiverTaskID
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("tasks = %s, want %s", dump(got), dump(want))
	}
	var name, version string
	var files int
	if err := b.db.Pool.QueryRow(context.Background(), `SELECT name, version, (SELECT count(*) FROM kiln.package_file f JOIN kiln.blob b ON b.sha256 = f.blob_sha256
		WHERE f.job_id = p.job_id AND b.verified_at IS NOT NULL) FROM kiln.package p WHERE job_id = $1`, id).Scan(&name, &version, &files); err != nil {
		t.Fatal(err)
	}
	if name != "greet" || version != "2.0" || files != 1 {
		t.Fatalf("package %s %s with %d verified files", name, version, files)
	}
}

func TestCancelledBeforeValidationIsLeftAlone(t *testing.T) {
	t.Parallel()
	b := setup(t)
	id := b.submit(t, submit.Request{Files: []string{testpkg.SRPM(t, testpkg.Spec{Name: "hello"})}})
	if _, err := b.asAlice.Exec(context.Background(), `SELECT kiln.cancel_job($1)`, id); err != nil {
		t.Fatal(err)
	}
	b.validate(t)
	j := b.job(t, id)
	if j.Status != "cancelled" || j.Validated || *j.Reason != "cancelled by "+b.alice {
		t.Fatalf("job %+v", j)
	}
	if n := b.count(t, `SELECT count(*) FROM kiln.task`); n != 0 {
		t.Fatalf("%d tasks for a cancelled job", n)
	}
	if n := b.count(t, `SELECT count(*) FROM kiln.package WHERE name IS NOT NULL OR reason IS NOT NULL`); n != 0 {
		t.Fatal("packages of a cancelled job were touched")
	}
}

func TestBucketGrants(t *testing.T) {
	t.Parallel()
	b := setup(t)
	group := "team_" + b.db.Name
	mustExec(t, b.db.Pool, fmt.Sprintf(`CREATE ROLE %s NOLOGIN; GRANT %s TO %s`, group, group, b.alice))
	t.Cleanup(func() { b.db.Pool.Exec(context.Background(), "DROP ROLE IF EXISTS "+group) })
	srpm := testpkg.SRPM(t, testpkg.Spec{Name: "hello"})

	// stable: no grant yet. A grant to a role that no longer exists must
	// not break the check.
	mustExec(t, b.db.Pool, `INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('stable', 'dropped_role_'||current_database())`)
	denied := b.submit(t, submit.Request{Bucket: "stable", Files: []string{srpm}})
	b.validate(t)
	b.invalid(t, denied, b.alice+" may not submit to bucket stable (no bucket grant)", nil)
	// Through a group role alice is a member of.
	mustExec(t, b.db.Pool, `INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('stable', $1)`, group)
	viaGroup := b.submit(t, submit.Request{Bucket: "stable", Files: []string{srpm}})
	// An open bucket needs no grant.
	open := b.submit(t, submit.Request{Bucket: "scratch", Files: []string{srpm}})
	b.validate(t)
	for _, id := range []int64{viaGroup, open} {
		if j := b.job(t, id); j.Status != "queued" {
			t.Fatalf("job %d: %+v %v", id, j, j.Reason)
		}
	}

	// Members of kiln_admin may submit anywhere.
	mustExec(t, b.db.Pool, `DELETE FROM kiln.bucket_grant WHERE bucket = 'stable'`)
	mustExec(t, b.db.Pool, fmt.Sprintf(`GRANT kiln_admin TO %s`, b.alice))
	asAdmin := b.submit(t, submit.Request{Bucket: "stable", Files: []string{srpm}})
	b.validate(t)
	if j := b.job(t, asAdmin); j.Status != "queued" {
		t.Fatalf("admin's job: %+v", j)
	}
}

// invalid checks that a job ended invalid with exactly reason and the
// package reasons given (file name -> reason; others none), and that
// nothing else happened: no tasks, no build River jobs, not started.
func (b *bundle) invalid(t *testing.T, id int64, reason string, pkgReasons map[string]string) {
	t.Helper()
	j := b.job(t, id)
	if j.Status != "invalid" || j.Reason == nil || *j.Reason != reason || !j.Validated || !j.Finished || j.StartedAt {
		got := "<nil>"
		if j.Reason != nil {
			got = *j.Reason
		}
		t.Fatalf("job %d: %+v\n reason %q\n want   %q", id, j, got, reason)
	}
	rows, _ := b.db.Pool.Query(context.Background(), `SELECT file_name, reason FROM kiln.package WHERE job_id = $1 AND reason IS NOT NULL`, id)
	got := map[string]string{}
	var name, r string
	if _, err := pgx.ForEachRow(rows, []any{&name, &r}, func() error { got[name] = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if pkgReasons == nil {
		pkgReasons = map[string]string{}
	}
	if !reflect.DeepEqual(got, pkgReasons) {
		t.Fatalf("job %d: package reasons %q, want %q", id, got, pkgReasons)
	}
	if n := b.count(t, `SELECT count(*) FROM kiln.task WHERE job_id = $1`, id); n != 0 {
		t.Fatalf("job %d: %d tasks", id, n)
	}
	if n := b.count(t, `SELECT count(*) FROM river.river_job WHERE kind = 'build' AND (args->>'job_id')::bigint = $1`, id); n != 0 {
		t.Fatalf("job %d: %d build River jobs", id, n)
	}
	if n := b.count(t, `SELECT count(*) FROM river.river_job WHERE kind = 'validate' AND (args->>'job_id')::bigint = $1 AND state <> 'completed'`, id); n != 0 {
		t.Fatalf("job %d: validate River job not completed", id)
	}
	if n := b.count(t, `SELECT count(*) FROM kiln.event WHERE job_id = $1 AND kind = 'job.status' AND new_status = 'invalid' AND actor = $2`, id, b.splitter); n != 1 {
		t.Fatalf("job %d: not made invalid by the splitter's role", id)
	}
}

// rawSubmit stores files and a job as the submitter with plain SQL, as a
// client that skips kiln's own checks would. files maps a package's file
// name to its bytes and companions; declared sizes may be overridden.
type rawPackage struct {
	name, format string
	data         []byte
	size         int64 // declared; 0 means len(data)
	files        map[string][]byte
}

func (b *bundle) rawSubmit(t *testing.T, bucket string, pkgs ...rawPackage) int64 {
	t.Helper()
	ctx := context.Background()
	tx, err := b.asAlice.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	var id int64
	if err := tx.QueryRow(ctx, `INSERT INTO kiln.job (bucket, submission_key) VALUES ($1, $2) RETURNING id`, bucket, submit.NewKey()).Scan(&id); err != nil {
		t.Fatal(err)
	}
	for seq, p := range pkgs {
		info, err := blob.Put(ctx, tx, bytes.NewReader(p.data), false)
		if err != nil {
			t.Fatal(err)
		}
		size := p.size
		if size == 0 {
			size = info.Size
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size) VALUES ($1, $2, $3, $4, $5, $6)`,
			id, seq, p.name, p.format, info.Sum[:], size); err != nil {
			t.Fatal(err)
		}
		for name, data := range p.files {
			info, err := blob.Put(ctx, tx, bytes.NewReader(data), false)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := tx.Exec(ctx, `INSERT INTO kiln.package_file (job_id, seq, file_name, blob_sha256, size) VALUES ($1, $2, $3, $4, $5)`,
				id, seq, name, info.Sum[:], info.Size); err != nil {
				t.Fatal(err)
			}
		}
	}
	rc, _ := river.NewClient(riverpgxv5.New(b.asAlice), &river.Config{Schema: "river"})
	if _, err := rc.InsertTx(ctx, tx, riverjob.ValidateArgs{JobID: id}, nil); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestInvalidJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	hello := testpkg.SRPM(t, testpkg.Spec{Name: "hello"})
	helloData, _ := os.ReadFile(hello)
	hello2 := testpkg.SRPM(t, testpkg.Spec{Name: "hello", Version: "2.0"})
	sigEnd := signatureEnd(helloData)

	// A binary RPM passed off as a source one.
	binTop := t.TempDir()
	if out, err := runCmd("rpmbuild", "--rebuild", "--define", "_topdir "+binTop, testpkg.SRPM(t, testpkg.Spec{Name: "bin", Noarch: true})); err != nil {
		t.Fatalf("rpmbuild --rebuild: %v\n%s", err, out)
	}
	binData, _ := os.ReadFile(filepath.Join(binTop, "RPMS", "noarch", "bin-1.0-1.noarch.rpm"))

	truncated := helloData[:len(helloData)-100]
	corrupt := bytes.Clone(helloData)
	corrupt[len(corrupt)-50] ^= 0xff
	recordedMD5 := md5.Sum(helloData[sigEnd:])
	computedMD5 := md5.Sum(corrupt[sigEnd:])

	dsc := testpkg.DSC(t, testpkg.Deb{Name: "greet", Version: "1.0"})
	dscData, _ := os.ReadFile(dsc)
	tarball := filepath.Join(filepath.Dir(dsc), "greet_1.0.tar.xz")
	tarData, _ := os.ReadFile(tarball)
	tarSum := blob.Sum(sha256sum(tarData))

	// A .dsc whose tarball was changed after it was made: same size, other bytes.
	badTarDir := t.TempDir()
	badTar := bytes.Clone(tarData)
	badTar[len(badTar)/2] ^= 0xff
	os.WriteFile(filepath.Join(badTarDir, "greet_1.0.dsc"), dscData, 0o644)
	os.WriteFile(filepath.Join(badTarDir, "greet_1.0.tar.xz"), badTar, 0o644)
	// ... and one that grew.
	longTarDir := t.TempDir()
	os.WriteFile(filepath.Join(longTarDir, "greet_1.0.dsc"), dscData, 0o644)
	os.WriteFile(filepath.Join(longTarDir, "greet_1.0.tar.xz"), append(bytes.Clone(tarData), 0), 0o644)

	unsafeDSC := []byte(fmt.Sprintf("Format: 3.0 (native)\nSource: evil\nVersion: 1.0\nChecksums-Sha256:\n %s %d ../evil.tar.xz\nFiles:\n %x %d ../evil.tar.xz\n",
		tarSum, len(tarData), md5.Sum(tarData), len(tarData)))

	type expect struct {
		id     int64
		reason string
		pkgs   map[string]string
	}
	var cases []expect
	add := func(id int64, reason string, pkgs map[string]string) {
		cases = append(cases, expect{id, reason, pkgs})
	}
	one := func(file, reason string) (string, map[string]string) {
		return file + ": " + reason, map[string]string{file: reason}
	}

	r, p := one("junk.src.rpm", "not an RPM package: no RPM lead magic")
	add(b.submit(t, submit.Request{Files: []string{write("junk.src.rpm", bytes.Repeat([]byte("not an rpm "), 20))}}), r, p)

	r, p = one("bin-1.0-1.src.rpm", "not a source RPM: bin-1.0-1 is a binary RPM")
	add(b.submit(t, submit.Request{Files: []string{write("bin-1.0-1.src.rpm", binData)}}), r, p)

	r, p = one("cut.src.rpm", fmt.Sprintf("truncated: header and payload are %d bytes, the signature says %d", len(truncated)-sigEnd, len(helloData)-sigEnd))
	add(b.submit(t, submit.Request{Files: []string{write("cut.src.rpm", truncated)}}), r, p)

	r, p = one("flip.src.rpm", fmt.Sprintf("corrupt: MD5 digest of header and payload mismatch (recorded %x, computed %x)", recordedMD5, computedMD5))
	add(b.submit(t, submit.Request{Files: []string{write("flip.src.rpm", corrupt)}}), r, p)

	r, p = one("greet_1.0.dsc", fmt.Sprintf("checksum mismatch: greet_1.0.tar.xz has SHA-256 %x, the .dsc says %s", sha256sum(badTar), tarSum))
	add(b.submit(t, submit.Request{Files: []string{filepath.Join(badTarDir, "greet_1.0.dsc")}}), r, p)

	r, p = one("greet_1.0.dsc", fmt.Sprintf("greet_1.0.tar.xz is %d bytes, the .dsc says %d", len(tarData)+1, len(tarData)))
	add(b.submit(t, submit.Request{Files: []string{filepath.Join(longTarDir, "greet_1.0.dsc")}}), r, p)

	r, p = one("greet_1.0.dsc", "greet_1.0.tar.xz, listed in the .dsc, was not submitted")
	add(b.rawSubmit(t, "devel", rawPackage{name: "greet_1.0.dsc", format: "dsc", data: dscData}), r, p)

	r, p = one("greet_1.0.dsc", "other.tar.xz was submitted with the .dsc, which does not list it")
	add(b.rawSubmit(t, "devel", rawPackage{name: "greet_1.0.dsc", format: "dsc", data: dscData,
		files: map[string][]byte{"greet_1.0.tar.xz": tarData, "other.tar.xz": []byte("x")}}), r, p)

	r, p = one("evil.dsc", `unsafe name in the .dsc's file list: file name "../evil.tar.xz" contains a path separator`)
	add(b.rawSubmit(t, "devel", rawPackage{name: "evil.dsc", format: "dsc", data: unsafeDSC,
		files: map[string][]byte{"evil.tar.xz": tarData}}), r, p)

	r, p = one("hello-1.0-1.src.rpm", fmt.Sprintf("corrupt upload: hello-1.0-1.src.rpm was declared as %d bytes, %d are stored", len(helloData)+1, len(helloData)))
	add(b.rawSubmit(t, "devel", rawPackage{name: "hello-1.0-1.src.rpm", format: "srpm", data: helloData, size: int64(len(helloData)) + 1}), r, p)

	r, p = one("greet_1.0.dsc", "not a valid .dsc: no fields")
	add(b.rawSubmit(t, "devel", rawPackage{name: "greet_1.0.dsc", format: "dsc", data: []byte("\n\n")}), r, p)

	// The same package twice: the same file under two names, and two
	// versions of one package.
	copyOf := write("copy.src.rpm", helloData)
	add(b.submit(t, submit.Request{Files: []string{hello, copyOf}}),
		"copy.src.rpm: the same file as hello-1.0-1.src.rpm", map[string]string{"copy.src.rpm": "the same file as hello-1.0-1.src.rpm"})
	add(b.submit(t, submit.Request{Files: []string{hello, hello2}}),
		"hello-2.0-1.src.rpm: package hello is already in the job as hello-1.0-1.src.rpm",
		map[string]string{"hello-2.0-1.src.rpm": "package hello is already in the job as hello-1.0-1.src.rpm"})

	// Job-level problems.
	add(b.submit(t, submit.Request{Files: []string{hello}, Platforms: []string{"el7-x86_64"}}), "unknown platform el7-x86_64", nil)
	add(b.submit(t, submit.Request{Files: []string{hello}, Platforms: []string{"EL8-x86_64"}}), "platform el8-x86_64 is inactive", nil)
	add(b.submit(t, submit.Request{Files: []string{hello}, Platforms: []string{"el9-x86_64,!el9-x86_64"}}), "no platforms left after removing el9-x86_64", nil)
	add(b.submit(t, submit.Request{Files: []string{hello}, Platforms: []string{"bookworm-amd64"}}), "platform bookworm-amd64 builds deb packages, not SRPMs", nil)
	add(b.submit(t, submit.Request{Files: []string{testpkg.SRPM(t, testpkg.Spec{Name: "ppc", ExclusiveArch: []string{"ppc64le"}})}}),
		"the packages' architectures rule out every selected platform (el9-aarch64: ppc-1.0-1.src.rpm: ExclusiveArch ppc64le excludes aarch64; el9-x86_64: ppc-1.0-1.src.rpm: ExclusiveArch ppc64le excludes x86_64)", nil)
	add(b.submit(t, submit.Request{Bucket: "nope", Files: []string{hello}}), "unknown bucket nope", nil)
	add(b.submit(t, submit.Request{Bucket: "stable", Files: []string{hello}}), b.alice+" may not submit to bucket stable (no bucket grant)", nil)
	add(b.rawSubmit(t, "devel"), "the job has no packages", nil)
	add(b.submit(t, submit.Request{Files: []string{hello, dsc}}), "the job mixes SRPMs and Debian source packages; submit them as separate jobs", nil)
	// Several problems at once are all reported.
	r, p = one("junk.src.rpm", "not an RPM package: no RPM lead magic")
	add(b.submit(t, submit.Request{Bucket: "nope", Files: []string{filepath.Join(dir, "junk.src.rpm")}, Platforms: []string{"el9-x86_64"}}),
		"unknown bucket nope; "+r, p)

	// A corrupt upload: the stored chunks do not hash to the blob's name.
	// (A submitter could have inserted the chunks of a blob first.)
	tampered := b.submit(t, submit.Request{Files: []string{testpkg.SRPM(t, testpkg.Spec{Name: "tamper"})}})
	var sum []byte
	if err := b.db.Pool.QueryRow(ctx, `SELECT blob_sha256 FROM kiln.package WHERE job_id = $1`, tampered).Scan(&sum); err != nil {
		t.Fatal(err)
	}
	mustExec(t, b.db.Pool, `UPDATE kiln.blob_chunk SET data = 'evil' WHERE sha256 = $1`, sum)
	r, p = one("tamper-1.0-1.src.rpm", fmt.Sprintf("corrupt upload: the stored bytes of tamper-1.0-1.src.rpm do not match its SHA-256 %x", sum))
	add(tampered, r, p)

	b.validate(t)
	for _, c := range cases {
		b.invalid(t, c.id, c.reason, c.pkgs)
	}
}

func TestSizeLimit(t *testing.T) {
	t.Parallel()
	b := setup(t)
	b.maxSize = 1000
	hello := testpkg.SRPM(t, testpkg.Spec{Name: "hello"})
	st, _ := os.Stat(hello)
	id := b.submit(t, submit.Request{Files: []string{hello}})
	b.validate(t)
	reason := fmt.Sprintf("hello-1.0-1.src.rpm is %d bytes, over the limit of 1000 bytes", st.Size())
	b.invalid(t, id, "hello-1.0-1.src.rpm: "+reason, map[string]string{"hello-1.0-1.src.rpm": reason})
	if n := b.count(t, `SELECT count(*) FROM kiln.blob WHERE verified_at IS NOT NULL`); n != 0 {
		t.Fatalf("a file over the limit was read (%d blobs verified)", n)
	}
}

// signatureEnd returns where an RPM's padded signature header ends (where
// the header+payload digests start).
func signatureEnd(b []byte) int {
	end := 96 + 16 + 16*int(binary.BigEndian.Uint32(b[96+8:])) + int(binary.BigEndian.Uint32(b[96+12:]))
	return end + (8-end%8)%8
}

func runCmd(name string, args ...string) ([]byte, error) {
	return exec.Command(name, args...).CombinedOutput()
}

func sha256sum(b []byte) [32]byte { return sha256.Sum256(b) }

func dump(v any) string { return fmt.Sprintf("%+v", deref(v)) }

// deref renders the pointers in task rows readably.
func deref(v any) any {
	rows, ok := v.([]taskRow)
	if !ok {
		return v
	}
	var out []string
	for _, r := range rows {
		s := r.Platform + " " + r.Status
		if r.Reason != nil {
			s += " reason=" + *r.Reason
		}
		if r.RiverQueue != nil {
			s += fmt.Sprintf(" queue=%s priority=%d task=%d", *r.RiverQueue, *r.RiverPriority, *r.RiverTaskID)
		}
		out = append(out, s)
	}
	return out
}
