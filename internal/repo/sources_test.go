package repo_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/janitor"
	"github.com/kiln-build/kiln/internal/submit"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

const sourcesPath = "/repos/devel/bookworm-amd64/dists/devel/main/source/Sources"

// srcJob submits the Debian source package dsc (and the files it names,
// found next to it) as the person with kiln's real submit client, and lets
// builder b1 finish its task on bookworm-amd64 with arts.
func (f *farm) srcJob(t testing.TB, bucket, dsc string, arts ...farmtest.Artifact) int64 {
	t.Helper()
	c, err := submit.New(pool(t, f.db.URLAs(f.person)))
	must(t, err)
	res, err := c.Submit(context.Background(), submit.Request{Bucket: bucket, Platforms: []string{"bookworm-amd64"}, Files: []string{dsc}})
	must(t, err)
	tasks := farmtest.Split(t, f.db.Pool, res.JobID, "bookworm-amd64")
	a := farmtest.Take(t, f.db.Pool, tasks[0], "b1")
	farmtest.Finish(t, f.db.Pool, tasks[0], a, "succeeded", "", arts...)
	return res.JobID
}

// debFromDSC builds the binary package of the debhelper source package dsc
// on the host (dpkg-source -x, dpkg-buildpackage -b), as a builder would.
func debFromDSC(t testing.TB, dsc, name, version string) []byte {
	t.Helper()
	top := t.TempDir()
	src := filepath.Join(top, "src")
	for _, args := range [][]string{{"dpkg-source", "-x", dsc, src}, {"dpkg-buildpackage", "-b", "-uc", "-us"}} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = top
		if args[0] == "dpkg-buildpackage" {
			cmd.Dir = src
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", args[0], err, out)
		}
	}
	data, err := os.ReadFile(filepath.Join(top, name+"_"+version+"_all.deb"))
	must(t, err)
	return data
}

// nativeDSC writes a native source package by hand: a .dsc with extra
// fields, naming files (name -> content) that are written next to it.
func nativeDSC(t testing.TB, name, version, extra string, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	var md5s, sums strings.Builder
	for fn, data := range files {
		must(t, os.WriteFile(filepath.Join(dir, fn), data, 0o644))
		fmt.Fprintf(&md5s, " %x %d %s\n", md5.Sum(data), len(data), fn)
		fmt.Fprintf(&sums, " %x %d %s\n", sha256.Sum256(data), len(data), fn)
	}
	dsc := fmt.Sprintf("Format: 3.0 (native)\nSource: %s\nBinary: %s\nArchitecture: any\nVersion: %s\nMaintainer: kiln tests <kiln@example.org>\n%sChecksums-Sha256:\n%sFiles:\n%s",
		name, name, version, extra, sums.String(), md5s.String())
	path := filepath.Join(dir, name+"_"+version+".dsc")
	must(t, os.WriteFile(path, []byte(dsc), 0o644))
	return path
}

// aptSources writes a's sources list: kiln's repository for binaries and
// sources, signed-by the bucket's key.
func (a *apt) aptSources(t testing.TB, url, suite string) {
	t.Helper()
	key := filepath.Join(a.dir, "key.asc")
	must(t, os.WriteFile(filepath.Join(a.dir, "sources.list"), []byte(fmt.Sprintf(
		"deb [signed-by=%s] %s %s main\ndeb-src [signed-by=%s] %s %s main\n", key, url, suite, key, url, suite)), 0o644))
}

// In a clean Debian tree whose only sources are kiln's repository (deb and
// deb-src, signed-by the bucket's key): apt-get update, then apt-get source
// --download-only of the debhelper package kiln built downloads the very
// .dsc and tarball that were submitted.
func TestAptGetSourceFromPublishedRepository(t *testing.T) {
	t.Parallel()
	f := setup(t)
	dsc := testpkg.DSC(t, testpkg.Deb{Name: "kiln-src", Version: "1.0"})
	f.srcJob(t, "devel", dsc, farmtest.Artifact{Kind: "package", Name: "kiln-src_1.0_all.deb", Data: debFromDSC(t, dsc, "kiln-src", "1.0")})
	if res := f.publish(t); len(res) != 1 || res[0].Snapshot != 1 {
		t.Fatalf("publication: %+v", res)
	}
	var outcome string
	must(t, f.db.Pool.QueryRow(context.Background(), `SELECT outcome FROM kiln.publication_request`).Scan(&outcome))
	if !strings.Contains(outcome, "1 source packages") {
		t.Fatalf("outcome %q", outcome)
	}
	checkRelease(t, f, "")
	_, rel := f.get(t, "/repos/devel/bookworm-amd64/dists/devel/Release")
	for _, p := range []string{" main/source/Sources\n", " main/source/Sources.gz\n", " main/source/Sources.xz\n"} {
		if !bytes.Contains(rel, []byte(p)) {
			t.Fatalf("Release does not list%s", p)
		}
	}

	_, key := f.get(t, "/repos/devel/key.asc")
	root := debianTree(t)
	must(t, os.MkdirAll(filepath.Join(root, "etc/apt/keyrings"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "etc/apt/keyrings/kiln-devel.asc"), key, 0o644))
	for _, old := range []string{"etc/apt/sources.list", "etc/apt/sources.list.d/debian.sources"} {
		os.Remove(filepath.Join(root, old))
	}
	url := f.web.URL + "/repos/devel/bookworm-amd64"
	must(t, os.WriteFile(filepath.Join(root, "etc/apt/sources.list.d/kiln.list"), []byte(
		"deb [signed-by=/etc/apt/keyrings/kiln-devel.asc] "+url+" devel main\n"+
			"deb-src [signed-by=/etc/apt/keyrings/kiln-devel.asc] "+url+" devel main\n"), 0o644))
	chroot := func(args ...string) (string, error) {
		cmd := exec.Command("chroot", append([]string{root}, args...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C"}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := chroot("apt-get", "-q", "update"); err != nil || strings.Contains(out, "W:") || strings.Contains(out, "E:") {
		t.Fatalf("apt-get update: %v\n%s", err, out)
	}
	must(t, os.MkdirAll(filepath.Join(root, "tmp/src"), 0o777))
	if out, err := chroot("sh", "-c", "cd /tmp/src && apt-get -q source --download-only kiln-src"); err != nil || strings.Contains(out, "E:") {
		t.Fatalf("apt-get source: %v\n%s", err, out)
	}
	for _, name := range []string{"kiln-src_1.0.dsc", "kiln-src_1.0.tar.xz"} {
		want, err := os.ReadFile(filepath.Join(filepath.Dir(dsc), name))
		must(t, err)
		got, err := os.ReadFile(filepath.Join(root, "tmp/src", name))
		if err != nil {
			t.Fatalf("apt-get source did not download %s: %v", name, err)
		}
		if sha256hex(got) != sha256hex(want) {
			t.Fatalf("%s: downloaded sha256 %s, submitted %s", name, sha256hex(got), sha256hex(want))
		}
	}
}

// A man in the middle who changes the Sources index (any of its forms,
// by-hash included) makes apt-get update complain and apt-get source fail;
// the same set-up without the change works.
func TestTamperedSourcesIsRefused(t *testing.T) {
	t.Parallel()
	f := setup(t)
	dsc := testpkg.DSC(t, testpkg.Deb{Name: "kiln-src", Version: "1.0"})
	f.srcJob(t, "devel", dsc, farmtest.Artifact{Kind: "package", Name: "kiln-src_1.0_amd64.deb", Data: deb(t, "kiln-src", "1.0", "amd64")})
	f.publish(t)
	_, key := f.get(t, "/repos/devel/key.asc")
	for _, tamper := range []bool{false, true} {
		t.Run(fmt.Sprintf("tampered=%v", tamper), func(t *testing.T) {
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
				if tamper && strings.Contains(r.URL.Path, "/main/source/") && resp.StatusCode == 200 {
					data = append(data, "\nPackage: evil\n"...)
				}
				w.WriteHeader(resp.StatusCode)
				w.Write(data) //nolint:errcheck
			})
			url := httptestServer(t, proxy) + "/repos/devel/bookworm-amd64"
			a := newApt(t, url, "devel", key)
			a.aptSources(t, url, "devel")
			out, err := a.run("update")
			clean := err == nil && !strings.Contains(out, "E:") && !strings.Contains(out, "W:")
			if clean == tamper {
				t.Fatalf("apt-get update (tampered %v): %v\n%s", tamper, err, out)
			}
			out, err = a.run("source", "--download-only", "kiln-src")
			if (err == nil) == tamper {
				t.Fatalf("apt-get source (tampered %v): %v\n%s", tamper, err, out)
			}
		})
	}
}

// Source packages follow the publication design of binary ones: a newer
// version replaces an older one, an older one is kept out, past snapshots
// keep their Sources, a rollback restores Sources exactly, a promotion
// copies the same files, and retention forgets the source packages only
// pruned snapshots had.
func TestSourcesReplaceRollBackPromoteAndPrune(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	_, err := f.db.Pool.Exec(ctx, `UPDATE kiln.bucket SET keep_snapshots = 3 WHERE name = 'devel'`)
	must(t, err)
	farmtest.Bucket(t, f.db.Pool, "testing")
	_, err = f.db.Pool.Exec(ctx, `INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('devel', $1), ('testing', $1)`, f.person)
	must(t, err)
	alice := pool(t, f.db.URLAs(f.person))
	jobs := map[string]int64{}
	publish := func(v string) {
		t.Helper()
		dsc := nativeDSC(t, "kiln-src", v, "", map[string][]byte{"kiln-src_" + v + ".tar.xz": []byte("tarball " + v)})
		jobs[v] = f.srcJob(t, "devel", dsc, farmtest.Artifact{Kind: "package", Name: "a.deb", Data: deb(t, "kiln-src", v, "amd64")})
		f.publish(t)
	}
	dscPath := func(v string) string {
		return "/repos/devel/bookworm-amd64/pool/main/k/kiln-src/kiln-src_" + v + ".dsc"
	}

	publish("1.0")
	_, first := f.get(t, sourcesPath)
	if !bytes.Contains(first, []byte("Package: kiln-src\n")) || !bytes.Contains(first, []byte("\nDirectory: pool/main/k/kiln-src\n")) ||
		!bytes.Contains(first, []byte(" kiln-src_1.0.dsc\n")) || !bytes.Contains(first, []byte(" kiln-src_1.0.tar.xz\n")) {
		t.Fatalf("Sources:\n%s", first)
	}
	publish("1.1")
	_, second := f.get(t, sourcesPath)
	if !bytes.Contains(second, []byte("Version: 1.1\n")) || bytes.Contains(second, []byte("Version: 1.0\n")) {
		t.Fatalf("1.1 did not replace 1.0:\n%s", second)
	}
	if code, _ := f.get(t, dscPath("1.0")); code == 200 {
		t.Fatal("the replaced .dsc is still served")
	}
	publish("0.9")
	if _, now := f.get(t, sourcesPath); !bytes.Equal(now, second) {
		t.Fatalf("0.9 changed Sources:\n%s", now)
	}
	if code, old := f.get(t, "/repos/devel/snapshots/1/bookworm-amd64/dists/devel/main/source/Sources"); code != 200 || !bytes.Equal(old, first) {
		t.Fatalf("snapshot 1's Sources: %d", code)
	}
	_, err = alice.Exec(ctx, `SELECT kiln.rollback_bucket('devel', 1)`)
	must(t, err)
	f.publish(t)
	if _, now := f.get(t, sourcesPath); !bytes.Equal(now, first) {
		t.Fatalf("rollback did not restore Sources exactly:\n%s\nwant\n%s", now, first)
	}
	checkRelease(t, f, "")

	_, err = alice.Exec(ctx, `SELECT kiln.promote($1, 'testing')`, jobs["1.0"])
	must(t, err)
	f.publish(t)
	for _, p := range []string{"/bookworm-amd64/pool/main/k/kiln-src/kiln-src_1.0.dsc", "/bookworm-amd64/pool/main/k/kiln-src/kiln-src_1.0.tar.xz"} {
		c1, a := f.get(t, "/repos/devel"+p)
		c2, b := f.get(t, "/repos/testing"+p)
		if c1 != 200 || c2 != 200 || !bytes.Equal(a, b) {
			t.Fatalf("promoted %s: %d %d", p, c1, c2)
		}
	}
	_, tSources := f.get(t, "/repos/testing/bookworm-amd64/dists/testing/main/source/Sources")
	if !bytes.Equal(tSources, first) {
		t.Fatalf("testing's Sources is not devel's snapshot 1 Sources:\n%s", tSources)
	}
	var n int
	must(t, f.db.Pool.QueryRow(ctx, `SELECT count(*) FROM kiln.repository_source WHERE name = 'kiln-src' AND version = '1.0'`).Scan(&n))
	if n != 2 {
		t.Fatalf("repository_source shows 1.0 in %d buckets, want 2", n)
	}

	// Snapshots 4 and 5 of devel: with three kept, 1 and 2 go; 1.1 was
	// only in snapshot 2, 0.9 was never published.
	publish("1.2")
	publish("1.3")
	rows, err := f.db.Pool.Query(ctx, `SELECT version FROM kiln.source_package ORDER BY version`)
	must(t, err)
	var versions []string
	for rows.Next() {
		var v string
		must(t, rows.Scan(&v))
		versions = append(versions, v)
	}
	if strings.Join(versions, " ") != "1.0 1.2 1.3" {
		t.Fatalf("source packages kept: %v, want 1.0 (snapshot 3, testing) 1.2 1.3", versions)
	}
	if code, _ := f.get(t, "/repos/devel/snapshots/3/bookworm-amd64/pool/main/k/kiln-src/kiln-src_1.0.tar.xz"); code != 200 {
		t.Fatalf("snapshot 3's tarball: %d", code)
	}
	checkRelease(t, f, "snapshots/3/")

	// kiln repo rm takes out the source package of the name too.
	_, err = alice.Exec(ctx, `SELECT kiln.remove_package('devel', 'kiln-src', NULL)`)
	must(t, err)
	f.publish(t)
	if _, now := f.get(t, sourcesPath); len(now) != 0 {
		t.Fatalf("Sources after removal:\n%s", now)
	}
	if code, _ := f.get(t, dscPath("1.3")); code == 200 {
		t.Fatal("the removed .dsc is still served")
	}
}

// Retention and the janitor together: once the jobs are deleted, the blobs
// of a source package that only pruned snapshots had are removed, and those
// of the served one stay (the manifest and kiln.source_package refer to
// them) and are served as they were.
func TestJanitorKeepsServedSourceBlobs(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	_, err := f.db.Pool.Exec(ctx, `UPDATE kiln.bucket SET keep_snapshots = 1 WHERE name = 'devel'`)
	must(t, err)
	var firstDSC []byte
	for _, v := range []string{"1.0", "1.1"} {
		dsc := nativeDSC(t, "kiln-src", v, "", map[string][]byte{"kiln-src_" + v + ".tar.xz": []byte("tarball " + v)})
		if firstDSC == nil {
			firstDSC, err = os.ReadFile(dsc)
			must(t, err)
		}
		f.srcJob(t, "devel", dsc, farmtest.Artifact{Kind: "package", Name: "a.deb", Data: deb(t, "kiln-src", v, "amd64")})
		f.publish(t)
	}
	_, dsc := f.get(t, "/repos/devel/bookworm-amd64/pool/main/k/kiln-src/kiln-src_1.1.dsc")
	_, err = f.db.Pool.Exec(ctx, `DELETE FROM kiln.job`)
	must(t, err)
	cfg := janitor.DefaultConfig()
	cfg.BlobGrace = time.Nanosecond
	j, err := janitor.New(pool(t, f.db.URLAs(farmtest.Person(t, f.db, "jan", "kiln_janitor"))), cfg, slog.New(slog.DiscardHandler))
	must(t, err)
	if _, err := j.Round(ctx, janitor.Retention); err != nil {
		t.Fatal(err)
	}
	blobs := func(content string) int {
		var n int
		must(t, f.db.Pool.QueryRow(ctx, `SELECT count(*) FROM kiln.blob WHERE sha256 = sha256(convert_to($1, 'UTF8'))`, content).Scan(&n))
		return n
	}
	if blobs("tarball 1.0") != 0 || blobs(string(firstDSC)) != 0 || blobs("tarball 1.1") != 1 || blobs(string(dsc)) != 1 {
		t.Fatalf("blobs of 1.0's tarball and .dsc: %d %d (want 0 0), of 1.1's: %d %d (want 1 1)",
			blobs("tarball 1.0"), blobs(string(firstDSC)), blobs("tarball 1.1"), blobs(string(dsc)))
	}
	for name, want := range map[string][]byte{"kiln-src_1.1.dsc": dsc, "kiln-src_1.1.tar.xz": []byte("tarball 1.1")} {
		if code, got := f.get(t, "/repos/devel/bookworm-amd64/pool/main/k/kiln-src/"+name); code != 200 || !bytes.Equal(got, want) {
			t.Fatalf("%s after the janitor: %d", name, code)
		}
	}
	checkRelease(t, f, "")
}
