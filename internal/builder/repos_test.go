package builder

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/environment"
	"github.com/kiln-build/kiln/internal/environment/envtest"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// Tracker issue 15's cross-job chain, through the real builder: job A
// builds the debhelper library kiln-base 1.2 in devel and kiln-publisher's
// code publishes it when the job ends (the request
// kiln.job_request_publications queues); job B, submitted afterwards alone, Build-Depends on
// kiln-base (>= 1.2) and builds, sbuild's apt reading devel's snapshot from
// kiln-web signed-by devel's key (the builder's --repo-url), devel being
// private. B's build info names the snapshot and the sha256 of its
// InRelease as served.
func TestSbuildCrossJobChain(t *testing.T) {
	t.Parallel()
	path, spec := envtest.Shared(t)
	f := newFarm(t)
	f.platform(t, "bookworm-amd64", "amd64", "deb", "sbuild", time.Hour, `{"dist": "bookworm"}`)
	f.exec(t, `INSERT INTO kiln.platform_environment (platform, spec) VALUES ('bookworm-amd64', $1)`, spec)
	// The bucket whose publish policy (whole_job, the default) the job's
	// end consults: without its row a job's end asks for no publication.
	// devel is private: the builder reads it with a token of the attempt's
	// own (kiln.build_repository_token), as apt's basic-auth password.
	f.exec(t, `INSERT INTO kiln.bucket (name, open, private) VALUES ('devel', true, true)`)
	pub, site := repoSite(t, f)

	_, pool := f.builderPool(t, 1)
	cfg := testConfig(t, "bookworm-amd64")
	cfg.RepoURL = site.URL
	start(t, pool, cfg)
	waitFor(t, "the builder to register", func() bool {
		var n int
		_ = f.db.Pool.QueryRow(context.Background(), "SELECT count(*) FROM kiln.builder WHERE name = $1", cfg.Name).Scan(&n)
		return n == 1
	})
	made, err := environment.Inspect(context.Background(), path, spec)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := environment.Install(context.Background(), pool, cfg.Name, "bookworm-amd64", made); err != nil {
		t.Fatal(err)
	}

	jobA, a := f.submit(t, "bookworm-amd64", "retry", testpkg.DSC(t, testpkg.Deb{Name: "kiln-base", Version: "1.2"}))
	if st := f.waitLong(t, a); st != "succeeded" {
		t.Fatalf("job A: task %s\n%s", st, f.logOf(t, a, 1))
	}
	// The task's end ended the job (kiln.refresh_job_status), which queued
	// its publication in the same transaction.
	var status string
	var requests int
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT j.status, (SELECT count(*) FROM kiln.publication_request r
		WHERE r.job_id = j.id AND r.done_at IS NULL) FROM kiln.job j WHERE j.id = $1`, jobA).Scan(&status, &requests); err != nil {
		t.Fatal(err)
	}
	if status != "succeeded" || requests != 1 {
		t.Fatalf("job A is %s with %d pending publication requests, want succeeded and 1", status, requests)
	}
	res, err := pub.PublishPending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 1 || res[0].Snapshot != 1 || res[0].Packages != 1 {
		t.Fatalf("publishing job A: %+v, want snapshot 1 of devel with one package", res)
	}

	_, b := f.submit(t, "bookworm-amd64", "retry", testpkg.DSC(t, testpkg.Deb{Name: "kiln-user", Version: "1.0",
		BuildDepends: "kiln-base (>= 1.2)", Build: "grep -qx 'built kiln-base' /usr/share/kiln-base/hello.txt"}))
	if st := f.waitLong(t, b); st != "succeeded" {
		t.Fatalf("job B: task %s\n%s", st, f.logOf(t, b, 1))
	}
	url := site.URL + "/repos/devel/snapshots/1/bookworm-amd64"
	log := f.logOf(t, b, 1)
	if !strings.Contains(log, "kiln: build dependencies also from bucket devel, snapshot 1 ("+url) {
		t.Fatalf("job B's log does not name devel's repository:\n%s", log)
	}
	if !strings.Contains(log, "kiln: bucket devel is private: apt reads it with a token of this attempt's own") {
		t.Fatalf("job B's log does not say devel is read with a token:\n%s", log)
	}
	if strings.Contains(log, "kiln-build:") {
		t.Fatalf("job B's log shows the repository token:\n%s", log)
	}
	info := f.buildInfo(t, b, 1)
	if v := info.Packages[0].BuildDepends["kiln-base"]; v != "1.2" {
		t.Fatalf("job B's installed build dependencies lack kiln-base 1.2:\n%s", log)
	}
	// The InRelease the build info names is the one kiln-web serves.
	// The token died with the attempt: the test reads as an admin would.
	if code := getStatus(t, url+"/dists/devel/InRelease"); code == http.StatusOK {
		t.Fatal("the private bucket is served without a token")
	}
	req, err := http.NewRequest("GET", url+"/dists/devel/InRelease", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("admin", adminToken(t, f))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	served, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET InRelease: %d %v", resp.StatusCode, err)
	}
	sum := sha256.Sum256(served)
	if len(info.Repositories) != 1 {
		t.Fatalf("job B's build info names repositories %+v, want devel's snapshot 1", info.Repositories)
	}
	want := repositoryRef{Bucket: "devel", Snapshot: 1, URL: url, Key: info.Repositories[0].Key,
		Index: "dists/devel/InRelease", IndexSHA256: hex.EncodeToString(sum[:])}
	if info.Repositories[0] != want || len(want.Key) != 40 {
		t.Fatalf("job B's build info names repositories %+v, want [%+v]", info.Repositories, want)
	}
}

func getStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// adminToken is a repository token of a new admin (kiln.new_repo_token).
func adminToken(t *testing.T, f *farm) string {
	t.Helper()
	p, err := pgxpool.New(context.Background(), f.db.URLAs(farmtest.Person(t, f.db, "admin", "kiln_admin")))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var tok string
	if err := p.QueryRow(context.Background(), `SELECT kiln.new_repo_token()`).Scan(&tok); err != nil {
		t.Fatal(err)
	}
	return tok
}
