package submit_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/submit"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// setup gives a test database with a platform and a bucket, and a pool
// connected as a login role that is a member of kiln_submitter.
func setup(t *testing.T) (*pgtest.DB, string, *pgxpool.Pool) {
	t.Helper()
	db := pgtest.New(t)
	alice := "alice_" + db.Name
	ctx := context.Background()
	if _, err := db.Pool.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN IN ROLE kiln_submitter;
		INSERT INTO kiln.platform (name, arch, package_format, backend) VALUES ('el9-x86_64', 'x86_64', 'rpm', 'rpmbuild'),
			('bookworm-amd64', 'amd64', 'deb', 'dpkg');
		INSERT INTO kiln.bucket (name, open) VALUES ('devel', true)`, alice)); err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(ctx, db.URLAs(alice))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pool.Close()
		db.Pool.Exec(context.Background(), "DROP ROLE "+alice)
	})
	return db, alice, pool
}

func count(t *testing.T, db *pgtest.DB, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// everything counts the rows a submit writes.
func everything(t *testing.T, db *pgtest.DB) string {
	return fmt.Sprintf("jobs=%d packages=%d files=%d blobs=%d chunks=%d river=%d",
		count(t, db, "SELECT count(*) FROM kiln.job"), count(t, db, "SELECT count(*) FROM kiln.package"),
		count(t, db, "SELECT count(*) FROM kiln.package_file"), count(t, db, "SELECT count(*) FROM kiln.blob"),
		count(t, db, "SELECT count(*) FROM kiln.blob_chunk"), count(t, db, "SELECT count(*) FROM river.river_job"))
}

func TestSubmitStoresJobPackagesAndValidateJob(t *testing.T) {
	t.Parallel()
	db, alice, pool := setup(t)
	ctx := context.Background()
	c, err := submit.New(pool)
	if err != nil {
		t.Fatal(err)
	}
	hello := testpkg.DSC(t, testpkg.Deb{Name: "hello", Version: "1.0"})
	dsc := testpkg.DSC(t, testpkg.Deb{Name: "greet", Version: "1.0"})
	res, err := c.Submit(ctx, submit.Request{Bucket: "devel", Platforms: []string{"BOOKWORM-amd64, !el9-x86_64", "bookworm-amd64"},
		Priority: 1, Note: "a note", Files: []string{hello, dsc}})
	if err != nil {
		t.Fatal(err)
	}
	var (
		submitter, bucket, note, status, key string
		platforms                            []string
		priority                             int
	)
	if err := db.Pool.QueryRow(ctx, `SELECT submitter, bucket, platforms, priority, note, status, submission_key FROM kiln.job WHERE id = $1`, res.JobID).
		Scan(&submitter, &bucket, &platforms, &priority, &note, &status, &key); err != nil {
		t.Fatal(err)
	}
	if submitter != alice || bucket != "devel" || !reflect.DeepEqual(platforms, []string{"bookworm-amd64", "!el9-x86_64"}) ||
		priority != 1 || note != "a note" || status != "submitted" || key != res.Key || res.Existing {
		t.Fatalf("job: %s %s %v %d %q %s %s; result %+v", submitter, bucket, platforms, priority, note, status, key, res)
	}
	rows, _ := db.Pool.Query(ctx, `SELECT p.seq || ' ' || p.file_name || ' ' || p.format || ' ' || (p.size = b.size) || ' ' || coalesce(string_agg(f.file_name, ','), '')
		FROM kiln.package p JOIN kiln.blob b ON b.sha256 = p.blob_sha256 LEFT JOIN kiln.package_file f USING (job_id, seq)
		WHERE p.job_id = $1 GROUP BY p.seq, p.file_name, p.format, p.size, b.size ORDER BY p.seq`, res.JobID)
	var got []string
	for rows.Next() {
		var s string
		rows.Scan(&s)
		got = append(got, s)
	}
	want := []string{"0 hello_1.0.dsc dsc true hello_1.0.tar.xz", "1 greet_1.0.dsc dsc true greet_1.0.tar.xz"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("packages %q, want %q", got, want)
	}
	if n := count(t, db, `SELECT count(*) FROM river.river_job WHERE kind = 'validate' AND queue = 'incoming' AND (args->>'job_id')::bigint = $1`, res.JobID); n != 1 {
		t.Fatalf("%d validate River jobs", n)
	}
	// The bytes arrived intact, and were not marked verified by the submitter.
	if n := count(t, db, `SELECT count(*) FROM kiln.blob WHERE verified_at IS NULL AND created_by = $1`, alice); n != 4 {
		t.Fatalf("%d unverified blobs of alice", n)
	}
}

func TestRetriedSubmitReturnsSameJob(t *testing.T) {
	t.Parallel()
	db, _, pool := setup(t)
	ctx := context.Background()
	c, _ := submit.New(pool)
	req := submit.Request{Bucket: "devel", Key: "release-2024.1:try", Files: []string{testpkg.SRPM(t, testpkg.Spec{Name: "hello"})}}
	first, err := c.Submit(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	before := everything(t, db)
	again, err := c.Submit(ctx, req)
	if err != nil || again.JobID != first.JobID || !again.Existing {
		t.Fatalf("retry: %+v, %v; first %+v", again, err, first)
	}
	if after := everything(t, db); after != before {
		t.Fatalf("a retried submit wrote rows: %s -> %s", before, after)
	}

	// Two submits with one key at the same moment make one job.
	req.Key = "concurrent"
	var wg sync.WaitGroup
	results := make([]submit.Result, 4)
	errs := make([]error, 4)
	for i := range results {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = c.Submit(ctx, req)
		}()
	}
	wg.Wait()
	created := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("concurrent submit %d: %v", i, errs[i])
		}
		if r.JobID != results[0].JobID {
			t.Fatalf("concurrent submits made jobs %d and %d", r.JobID, results[0].JobID)
		}
		if !r.Existing {
			created++
		}
	}
	if created != 1 || count(t, db, `SELECT count(*) FROM kiln.job WHERE submission_key = 'concurrent'`) != 1 ||
		count(t, db, `SELECT count(*) FROM river.river_job WHERE (args->>'job_id')::bigint = $1`, results[0].JobID) != 1 {
		t.Fatalf("concurrent submits: %d created; %s", created, everything(t, db))
	}
}

func TestCancelledSubmitLeavesNothing(t *testing.T) {
	t.Parallel()
	db, _, pool := setup(t)
	c, _ := submit.New(pool)
	small := testpkg.SRPM(t, testpkg.Spec{Name: "hello"})
	data := make([]byte, 8<<20)
	rand.New(rand.NewSource(1)).Read(data)
	big := testpkg.SRPM(t, testpkg.Spec{Name: "big", Source: data})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seen []string
	_, err := c.Submit(ctx, submit.Request{Bucket: "devel", Files: []string{small, big}, Progress: func(p submit.Progress) {
		if p.File == filepath.Base(big) && p.Phase == "uploading" && p.Done > 3<<20 {
			seen = append(seen, p.Phase)
			cancel() // the first file is stored and the second half uploaded
		}
	}})
	if !errors.Is(err, context.Canceled) || len(seen) == 0 {
		t.Fatalf("Submit = %v (cancelled at %v), want context.Canceled mid-upload", err, seen)
	}
	if got := everything(t, db); got != "jobs=0 packages=0 files=0 blobs=0 chunks=0 river=0" {
		t.Fatalf("a cancelled submit left %s", got)
	}
}

func TestFindRefusesBadFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	dscBody := func(file string) string {
		return "Format: 3.0 (native)\nSource: hello\nVersion: 1.0\nChecksums-Sha256:\n " + strings.Repeat("a", 64) + " 1 " + file +
			"\nFiles:\n " + strings.Repeat("b", 32) + " 1 " + file + "\n"
	}
	srpm := write("a.src.rpm", "x")
	other := filepath.Join(t.TempDir(), "a.src.rpm")
	os.WriteFile(other, []byte("y"), 0o644)
	cases := []struct {
		files []string
		err   string
	}{
		{nil, "no files to submit"},
		{[]string{write("-rf.src.rpm", "")}, dir + `/-rf.src.rpm: file name "-rf.src.rpm" starts with '-'`},
		{[]string{write("a\x01.src.rpm", "")}, dir + "/a\x01.src.rpm: file name \"a\\x01.src.rpm\" contains a control character"},
		{[]string{write("notes.txt", "")}, dir + "/notes.txt: not a source RPM (.src.rpm) or a Debian source package (.dsc)"},
		{[]string{filepath.Join(dir, "missing.src.rpm")}, "stat " + dir + "/missing.src.rpm: no such file or directory"},
		{[]string{dir + "/"}, dir + "/ is not a regular file"},
		{[]string{srpm, other}, srpm + " and " + other + " have the same name; a job's files need different names"},
		{[]string{write("up.dsc", dscBody("../etc/passwd"))}, dir + `/up.dsc lists an unsafe file: file name "../etc/passwd" contains a path separator`},
		{[]string{write("gone.dsc", dscBody("gone.tar.xz"))}, dir + "/gone.dsc lists gone.tar.xz, which is not next to it: stat " + dir + "/gone.tar.xz: no such file or directory"},
		{[]string{write("bad.dsc", "Source: x\n")}, dir + "/bad.dsc: not a valid .dsc: field Format is missing"},
	}
	for _, c := range cases {
		_, err := submit.Find(c.files)
		if err == nil || err.Error() != c.err {
			t.Errorf("Find(%q) = %v, want %q", c.files, err, c.err)
		}
	}
}

func TestSubmitRefusesBadRequests(t *testing.T) {
	t.Parallel()
	db, _, pool := setup(t)
	client, _ := submit.New(pool)
	srpm := testpkg.SRPM(t, testpkg.Spec{Name: "hello"})
	cases := []struct {
		req submit.Request
		err string
	}{
		{submit.Request{Bucket: "Devel!", Files: []string{srpm}}, `bucket name "Devel!" is not valid: use lower-case letters and digits separated by single - or _`},
		{submit.Request{Bucket: "devel", Key: "has space", Files: []string{srpm}}, `submission key "has space": use 1 to 100 letters, digits, '_', '.', ':' or '-'`},
		{submit.Request{Bucket: "devel", Priority: 5, Files: []string{srpm}}, "priority 5: use 1 (most urgent) to 4"},
		{submit.Request{Bucket: "devel", Platforms: []string{"el9/x86"}, Files: []string{srpm}}, `platform name "el9/x86" is not valid: use lower-case letters and digits separated by single - or _`},
	}
	for _, c := range cases {
		if _, err := client.Submit(context.Background(), c.req); err == nil || err.Error() != c.err {
			t.Errorf("Submit(%+v) = %v, want %q", c.req, err, c.err)
		}
	}
	if got := everything(t, db); got != "jobs=0 packages=0 files=0 blobs=0 chunks=0 river=0" {
		t.Fatalf("refused submits left %s", got)
	}
}

func TestParsePlatforms(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in   []string
		want []string
		err  string
	}{
		{nil, []string{"all"}, ""},
		{[]string{" , "}, []string{"all"}, ""},
		{[]string{"all,!EL8-x86_64", "el9-x86_64"}, []string{"all", "!el8-x86_64", "el9-x86_64"}, ""},
		{[]string{"El9", "el9", " EL9 "}, []string{"el9"}, ""},
		{[]string{"!all"}, nil, "!all would remove every platform"},
		{[]string{"!"}, nil, "platform name is empty"},
		{[]string{"el 9"}, nil, `platform name "el 9" is not valid: use lower-case letters and digits separated by single - or _`},
	}
	for _, c := range cases {
		got, err := submit.ParsePlatforms(c.in)
		if c.err != "" {
			if err == nil || err.Error() != c.err {
				t.Errorf("ParsePlatforms(%q) = %v, %v; want error %q", c.in, got, err, c.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("ParsePlatforms(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}
