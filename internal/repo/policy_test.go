package repo_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

func debArtifact(t testing.TB, name, version string) map[string][]farmtest.Artifact {
	return map[string][]farmtest.Artifact{"bookworm-amd64": {{Kind: "package", Name: name + "_" + version + "_amd64.deb", Data: deb(t, name, version, "amd64")}}}
}

const packagesPath = "/repos/devel/bookworm-amd64/dists/devel/main/binary-amd64/Packages"

func TestTamperedMetadataIsRefused(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.job(t, "devel", debArtifact(t, "hello-kiln", "1.0"), nil)
	f.publish(t)
	_, key := f.get(t, "/repos/devel/key.asc")
	for _, tc := range []struct{ name, match string }{{"InRelease", "/InRelease"}, {"Release", "/Release"}, {"Packages", "/binary-amd64/"}} {
		t.Run(tc.name, func(t *testing.T) {
			// A man in the middle changes one byte of the file on the way.
			proxy := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				resp, err := http.Get(f.web.URL + r.URL.Path)
				if err != nil {
					http.Error(w, err.Error(), http.StatusBadGateway)
					return
				}
				defer resp.Body.Close()
				var b bytes.Buffer
				b.ReadFrom(resp.Body) //nolint:errcheck
				data := b.Bytes()
				if tc.name == "Release" && strings.HasSuffix(r.URL.Path, "/InRelease") {
					// Without InRelease apt reads Release and Release.gpg.
					http.NotFound(w, r)
					return
				}
				if strings.Contains(r.URL.Path, tc.match) && !strings.HasSuffix(r.URL.Path, ".gpg") && resp.StatusCode == 200 {
					if strings.Contains(tc.match, "Release") {
						data = bytes.Replace(data, []byte("Label: kiln"), []byte("Label: evil"), 1)
					} else {
						data = append(data, "\nX"...)
					}
				}
				w.WriteHeader(resp.StatusCode)
				w.Write(data) //nolint:errcheck
			})
			srv := httptestServer(t, proxy)
			a := newApt(t, srv+"/repos/devel/bookworm-amd64", "devel", key)
			out, err := a.run("update")
			if err == nil && !strings.Contains(out, "E:") && !strings.Contains(out, "W:") {
				t.Fatalf("apt-get update accepted a tampered %s:\n%s", tc.name, out)
			}
			if _, err := a.run("install", "hello-kiln"); err == nil {
				t.Fatalf("apt-get install worked with a tampered %s", tc.name)
			}
		})
	}
}

func TestWholeJobPolicyPublishesNothingOnFailure(t *testing.T) {
	t.Parallel()
	f := setup(t)
	arts := debArtifact(t, "half", "1.0")
	arts["el9-x86_64"] = nil
	f.job(t, "devel", arts, map[string]string{"el9-x86_64": "failed"})
	f.publish(t)
	var n int
	var outcome string
	must(t, f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM kiln.snapshot`).Scan(&n))
	must(t, f.db.Pool.QueryRow(context.Background(), `SELECT outcome FROM kiln.publication_request`).Scan(&outcome))
	if n != 0 || !strings.Contains(outcome, "whole_job") {
		t.Fatalf("a job with a failed task was published: %d snapshots, outcome %q", n, outcome)
	}
	// Under per_task the succeeded task's packages go in.
	_, err := f.db.Pool.Exec(context.Background(), `UPDATE kiln.bucket SET publish_policy = 'per_task' WHERE name = 'devel'`)
	must(t, err)
	f.job(t, "devel", arts, map[string]string{"el9-x86_64": "failed"})
	if res := f.publish(t); len(res) != 1 || res[0].Packages != 1 {
		t.Fatalf("per_task: %+v", res)
	}
}

func TestNewerVersionReplacesAndRollbackRestoresPackages(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.job(t, "devel", debArtifact(t, "hello-kiln", "1.0"), nil)
	f.publish(t)
	_, first := f.get(t, packagesPath)
	f.job(t, "devel", debArtifact(t, "hello-kiln", "1.1"), nil)
	f.publish(t)
	_, second := f.get(t, packagesPath)
	if !bytes.Contains(second, []byte("Version: 1.1")) || bytes.Contains(second, []byte("Version: 1.0")) {
		t.Fatalf("1.1 did not replace 1.0:\n%s", second)
	}
	// An older version does not replace a newer one.
	f.job(t, "devel", debArtifact(t, "hello-kiln", "0.9"), nil)
	f.publish(t)
	if _, now := f.get(t, packagesPath); !bytes.Equal(now, second) {
		t.Fatalf("0.9 changed the index:\n%s", now)
	}
	if code, old := f.get(t, "/repos/devel/snapshots/1/bookworm-amd64/dists/devel/main/binary-amd64/Packages"); code != 200 || !bytes.Equal(old, first) {
		t.Fatalf("snapshot 1 is not addressable as it was: %d", code)
	}
	alice := pool(t, f.db.URLAs(f.person))
	if _, err := alice.Exec(context.Background(), `SELECT kiln.rollback_bucket('devel', 1)`); err == nil {
		t.Fatal("a person without a grant on the bucket rolled it back")
	}
	_, err := f.db.Pool.Exec(context.Background(), `INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('devel', $1)`, f.person)
	must(t, err)
	_, err = alice.Exec(context.Background(), `SELECT kiln.rollback_bucket('devel', 1)`)
	must(t, err)
	f.publish(t)
	if _, now := f.get(t, packagesPath); !bytes.Equal(now, first) {
		t.Fatalf("rollback did not restore Packages exactly:\n%s\nwant\n%s", now, first)
	}
}

func TestPromotionCopiesIdenticalFiles(t *testing.T) {
	t.Parallel()
	f := setup(t)
	farmtest.Bucket(t, f.db.Pool, "testing")
	job := f.job(t, "devel", debArtifact(t, "hello-kiln", "1.0"), nil)
	f.publish(t)
	alice := pool(t, f.db.URLAs(f.person))
	if _, err := alice.Exec(context.Background(), `SELECT kiln.promote($1, 'testing')`, job); err == nil {
		t.Fatal("promoted without a grant on testing")
	}
	_, err := f.db.Pool.Exec(context.Background(), `INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('testing', $1)`, f.person)
	must(t, err)
	_, err = alice.Exec(context.Background(), `SELECT kiln.promote($1, 'testing')`, job)
	must(t, err)
	f.publish(t)
	path := "/bookworm-amd64/pool/main/h/hello-kiln/hello-kiln_1.0_amd64.deb"
	c1, a := f.get(t, "/repos/devel"+path)
	c2, b := f.get(t, "/repos/testing"+path)
	if c1 != 200 || c2 != 200 || !bytes.Equal(a, b) {
		t.Fatalf("promoted file differs: %d %d", c1, c2)
	}
	var same bool
	must(t, f.db.Pool.QueryRow(context.Background(), `SELECT (SELECT sha256 FROM kiln.repository_package WHERE bucket = 'devel') =
		(SELECT sha256 FROM kiln.repository_package WHERE bucket = 'testing')`).Scan(&same))
	if !same {
		t.Fatal("repository_package shows different files")
	}
}

// Concurrent publications of one bucket are serialised, and every served
// Release lists the hashes of the files served with it.
func TestConcurrentPublishesStayConsistent(t *testing.T) {
	t.Parallel()
	f := setup(t)
	for i := range 6 {
		f.job(t, "devel", debArtifact(t, "p"+string(rune('a'+i)), "1.0"), nil)
	}
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.publisher.Publish(context.Background(), "devel") //nolint:errcheck
		}()
	}
	wg.Wait()
	f.publish(t)
	checkRelease(t, f, "")
	var n int
	must(t, f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM kiln.repository_package WHERE bucket = 'devel'`).Scan(&n))
	if n != 6 {
		t.Fatalf("%d packages served, want 6", n)
	}
}

// checkRelease checks that every file the served Release lists has the
// listed SHA-256 and size.
func checkRelease(t testing.TB, f *farm, prefix string) {
	t.Helper()
	base := "/repos/devel/" + prefix + "bookworm-amd64/dists/devel/"
	code, rel := f.get(t, base+"Release")
	if code != 200 {
		t.Fatalf("Release: %d", code)
	}
	in := false
	for _, line := range strings.Split(string(rel), "\n") {
		if line == "SHA256:" {
			in = true
			continue
		}
		fields := strings.Fields(line)
		if !in || len(fields) != 3 {
			continue
		}
		_, data := f.get(t, base+fields[2])
		if got := sha256hex(data); got != fields[0] {
			t.Errorf("%s: served sha256 %s, Release says %s", fields[2], got, fields[0])
		}
	}
}

func TestPublisherKilledMidPublication(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.job(t, "devel", debArtifact(t, "hello-kiln", "1.0"), nil)
	f.publish(t)
	_, before := f.get(t, packagesPath)
	f.job(t, "devel", debArtifact(t, "second", "1.0"), nil)

	// Hold the pending request's row: the publisher writes the whole
	// snapshot, then waits for the row to record the request as done.
	ctx := context.Background()
	hold, err := f.db.Pool.Begin(ctx)
	must(t, err)
	defer hold.Rollback(ctx) //nolint:errcheck
	_, err = hold.Exec(ctx, `SELECT 1 FROM kiln.publication_request WHERE done_at IS NULL FOR UPDATE`)
	must(t, err)

	bin := filepath.Join(t.TempDir(), "kiln-publisher")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/kiln-build/kiln/cmd/kiln-publisher").CombinedOutput(); err != nil {
		t.Fatalf("building kiln-publisher: %v\n%s", err, out)
	}
	var pubRole string
	must(t, f.db.Pool.QueryRow(ctx, `SELECT rolname FROM pg_roles WHERE rolname LIKE 'pub\_%' AND rolname LIKE '%' || $1`, strings.TrimPrefix(f.db.Name, "kiln_test_")).Scan(&pubRole))
	cmd := exec.Command(bin, "--db", f.db.URLAs(pubRole), "--gnupghome", f.publisher.Keys.Home, "--workdir", t.TempDir(), "--once")
	must(t, cmd.Start())
	// Wait until it is blocked on the held row, with its snapshot written.
	for {
		var waiting bool
		must(t, f.db.Pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE usename = $1 AND wait_event_type = 'Lock')`, pubRole).Scan(&waiting))
		if waiting {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	must(t, cmd.Process.Kill())
	cmd.Wait() //nolint:errcheck
	must(t, hold.Rollback(ctx))

	if _, now := f.get(t, packagesPath); !bytes.Equal(now, before) {
		t.Fatalf("after kill -9 the served Packages changed:\n%s", now)
	}
	checkRelease(t, f, "")
	if res := f.publish(t); len(res) != 1 || res[0].Packages != 1 {
		t.Fatalf("the next run: %+v", res)
	}
	if _, now := f.get(t, packagesPath); !bytes.Contains(now, []byte("Package: second")) {
		t.Fatalf("the next run did not publish:\n%s", now)
	}
	checkRelease(t, f, "")
}

// Retention keeps the bucket's keep_snapshots newest snapshots: older ones
// are no longer addressable, and packages only they had are forgotten.
func TestRetentionPrunesOldSnapshots(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	_, err := f.db.Pool.Exec(ctx, `UPDATE kiln.bucket SET keep_snapshots = 2 WHERE name = 'devel'`)
	must(t, err)
	for _, v := range []string{"1.0", "1.1", "1.2", "1.3"} {
		f.job(t, "devel", debArtifact(t, "hello-kiln", v), nil)
		f.publish(t)
	}
	for seq, kept := range map[int]bool{1: false, 2: false, 3: true, 4: true} {
		if code, _ := f.get(t, fmt.Sprintf("/repos/devel/snapshots/%d/bookworm-amd64/dists/devel/Release", seq)); (code == 200) != kept {
			t.Errorf("snapshot %d: %d, kept %v", seq, code, kept)
		}
	}
	var versions []string
	rows, err := f.db.Pool.Query(ctx, `SELECT version FROM kiln.binary_package ORDER BY version`)
	must(t, err)
	for rows.Next() {
		var v string
		must(t, rows.Scan(&v))
		versions = append(versions, v)
	}
	if strings.Join(versions, " ") != "1.2 1.3" {
		t.Fatalf("parsed packages kept: %v, want 1.2 1.3", versions)
	}
	checkRelease(t, f, "snapshots/3/")
}
