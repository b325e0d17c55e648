package builder

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/backend"
	"github.com/kiln-build/kiln/internal/repo"
	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
	"github.com/kiln-build/kiln/internal/web"
)

// repoSite is kiln-publisher's code and kiln-web for a farm: the publisher
// (its own role, a keyring in a fresh GnuPG home) and kiln-web (its own
// role) serving /repos/ on a local address.
func repoSite(t *testing.T, f *farm) (*repo.Publisher, *httptest.Server) {
	t.Helper()
	connect := func(role string) *pgxpool.Pool {
		p, err := pgxpool.New(context.Background(), f.db.URLAs(farmtest.Person(t, f.db, role, "kiln_"+role)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		return p
	}
	gnupg, err := os.MkdirTemp("", "kg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", gnupg, "--kill", "all").Run() //nolint:errcheck // best effort
		os.RemoveAll(gnupg)
	})
	pub := &repo.Publisher{DB: connect("publisher"), Keys: repo.Keyring{Home: gnupg}, WorkDir: t.TempDir()}
	srv, err := web.New(web.Config{DB: connect("web")})
	if err != nil {
		t.Fatal(err)
	}
	site := httptest.NewServer(srv.Handler())
	t.Cleanup(site.Close)
	return pub, site
}

// dnfMock writes a stand-in for mock, which Debian does not package (and
// whose build roots would need a Fedora or EL mirror): it does mock's two
// steps with the real tools. Its dependency step is real dnf, `dnf builddep`
// of the SRPM into an installroot of the build's own, reading exactly the
// repository sections kiln wrote into the build's mock configuration
// (-r .../kiln-mock.cfg: baseurl, repo_gpgcheck with the bucket's key file,
// the token as the password); its build is real rpmbuild against that
// root's rpm database, so the BuildRequires check passes only with what
// dnf installed. It prints mock's "Start:" steps, writes root.log (dnf's
// output and the root's packages) and build.log into --resultdir, and,
// playing a build that found the token in its configuration, records the
// token in tokens (outside the build, for the test) and says what the
// token reads: its own bucket's repomd.xml and bucket secret's.
func dnfMock(t *testing.T) (prog, tokens string) {
	t.Helper()
	dir := t.TempDir()
	prog, tokens = filepath.Join(dir, "mock"), filepath.Join(dir, "tokens")
	script := `#!/bin/bash
set -u
[ "${1:-}" = --version ] && { echo "kiln-test-mock 1 (dnf builddep and rpmbuild)"; exit 0; }
while [ $# -gt 0 ]; do
  case "$1" in -r) shift; cfg=$1;; --rebuild) shift; srpm=$1;; --resultdir) shift; out=$1;; esac
  shift
done
echo "Start: chroot init"
work=$(dirname "$out")/standin
root=$work/root
mkdir -p "$out" "$root/repos" "$work/top"
case "$cfg" in
*/kiln-mock.cfg)
  sed -n '/^kiln_repos = """$/,/^"""$/p' "$cfg" | sed '1d;$d' > "$root/repos/kiln.repo"
  pw=$(sed -n 's/^password=//p' "$root/repos/kiln.repo" | head -1)
  if [ -n "$pw" ]; then
    echo "$pw" >> ` + tokens + `
    base=$(sed -n 's/^baseurl=//p' "$root/repos/kiln.repo" | head -1)
    other=$(echo "$base" | sed 's#/repos/[^/]*/snapshots/[0-9]*/#/repos/secret/#')
    echo "the token reads its own bucket: HTTP $(curl -s -o /dev/null -w '%{http_code}' -u "kiln-build:$pw" "$base/repodata/repomd.xml")"
    echo "the token reads bucket secret: HTTP $(curl -s -o /dev/null -w '%{http_code}' -u "kiln-build:$pw" "$other/repodata/repomd.xml")"
  fi ;;
esac
echo "Start: build setup for $(basename "$srpm")"
# Debian's dnf-plugins-core enables its "local" plugin, which would add the
# host's /var/lib/dnf/plugins/local as a repository and copy packages there.
dnf --installroot "$root" --releasever 9 --setopt=reposdir="$root/repos" --setopt=cachedir="$work/cache" \
  --disableplugin=local --assumeyes builddep "$srpm" 2>&1 | tee -a "$out/root.log"
[ "${PIPESTATUS[0]}" = 0 ] || exit 30
db=$root$(rpm --eval '%_dbpath')
rpm --dbpath "$db" -qa >> "$out/root.log"
echo "Start: rpmbuild $(basename "$srpm")"
rpmbuild --rebuild --define "_topdir $work/top" --dbpath "$db" "$srpm" 2>&1 | tee "$out/build.log"
[ "${PIPESTATUS[0]}" = 0 ] || exit 30
cp "$work"/top/RPMS/*/*.rpm "$out/"
`
	if err := os.WriteFile(prog, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return prog, tokens
}

// Tracker issue 15's cross-job chain for RPM, through the real builder,
// publisher and kiln-web: job A builds kiln-base 1.2 on a mock platform and
// is published into devel (private) as rpm-md; job B, submitted afterwards
// alone, has BuildRequires: kiln-base >= 1.2 and builds, dnf installing
// kiln-base from devel's snapshot (signed metadata checked against devel's
// key, read with the attempt's token). B's build info names the snapshot
// and the sha256 of its repomd.xml as served. The token reads devel and
// not the private bucket secret, and is nowhere in the log, the build info
// or the artifacts. Job C's BuildRequires no bucket has: the task ends
// unsatisfiable, naming it. mock itself is dnfMock's stand-in.
func TestMockCrossJobChain(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	const plat = "el9-x86_64"
	f.platform(t, plat, "x86_64", "rpm", "mock", time.Hour, `{"root": "rocky+epel-9-x86_64"}`)
	f.exec(t, `INSERT INTO kiln.bucket (name, open, private) VALUES ('devel', true, true), ('secret', true, true)`)
	pub, site := repoSite(t, f)
	prog, tokens := dnfMock(t)

	// Bucket secret gets a repository of its own, which B must not read.
	jobS, s := f.submit(t, plat, "retry", testpkg.SRPM(t, testpkg.Spec{Name: "kiln-classified"}))
	f.exec(t, `UPDATE kiln.job SET bucket = 'secret' WHERE id = $1`, jobS)
	_, a := f.submit(t, plat, "retry", testpkg.SRPM(t, testpkg.Spec{Name: "kiln-base", Version: "1.2"}))
	_, pool := f.builderPool(t, 1)
	cfg := testConfig(t, plat)
	cfg.RepoURL = site.URL
	cfg.Backend.Mock = prog
	start(t, pool, cfg)
	for _, id := range []int64{s, a} {
		if st := f.waitLong(t, id); st != "succeeded" {
			t.Fatalf("task %d: %s\n%s", id, st, f.logOf(t, id, 1))
		}
	}
	res, err := pub.PublishPending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 {
		t.Fatalf("publishing jobs S and A: %+v, want snapshot 1 of secret and of devel", res)
	}

	began := time.Now()
	_, b := f.submit(t, plat, "retry", testpkg.SRPM(t, testpkg.Spec{Name: "kiln-user", BuildRequires: []string{"kiln-base >= 1.2"}}))
	if st := f.waitLong(t, b); st != "succeeded" {
		t.Fatalf("job B: task %s\n%s", st, f.logOf(t, b, 1))
	}
	t.Logf("job B, BuildRequires from devel's repository: built in %v", time.Since(began).Round(time.Millisecond))
	url := site.URL + "/repos/devel/snapshots/1/" + plat
	log := f.logOf(t, b, 1)
	for _, want := range []string{
		"kiln: build dependencies also from bucket devel, snapshot 1 (" + url,
		"kiln: bucket devel is private: dnf reads it with a token of this attempt's own",
		"the token reads its own bucket: HTTP 200",
		"Installed:\n  kiln-base-1.2-1.x86_64",
	} {
		if !strings.Contains(log, want) {
			t.Fatalf("job B's log lacks %q:\n%s", want, log)
		}
	}
	// From devel's repository, the only one dnf had.
	if !regexp.MustCompile(`(?m)^ kiln-base +x86_64 +1\.2-1 +kiln-devel `).MatchString(log) {
		t.Fatalf("job B's dnf did not install kiln-base from kiln-devel:\n%s", log)
	}
	// The token reads nothing of bucket secret, which is there to read.
	if !strings.Contains(log, "the token reads bucket secret: HTTP ") || strings.Contains(log, "the token reads bucket secret: HTTP 200") {
		t.Fatalf("job B's token read bucket secret's repository:\n%s", log)
	}
	admin := adminToken(t, f)
	if code, _ := getAs(t, site.URL+"/repos/secret/"+plat+"/repodata/repomd.xml", admin); code != http.StatusOK {
		t.Fatalf("bucket secret's repomd.xml: HTTP %d to an admin", code)
	}
	arts := f.artifacts(t, b, 1)
	if _, ok := arts["kiln-user-1.0-1.x86_64.rpm"]; !ok {
		t.Fatalf("job B's artifacts %v lack its RPM", keys(arts))
	}
	if root, ok := arts["root.log"]; !ok || !bytes.Contains(root.content, []byte("kiln-base-1.2-1.x86_64")) {
		t.Fatalf("job B's root.log does not list kiln-base in the build root:\n%s", root.content)
	}

	// The build info names the repomd.xml kiln-web serves (read as an
	// admin: the attempt's token died with it).
	code, served := getAs(t, url+"/repodata/repomd.xml", admin)
	if code != http.StatusOK {
		t.Fatalf("GET repomd.xml: HTTP %d", code)
	}
	sum := sha256.Sum256(served)
	info := f.buildInfo(t, b, 1)
	if len(info.Repositories) != 1 {
		t.Fatalf("job B's build info names repositories %+v, want devel's snapshot 1", info.Repositories)
	}
	want := repositoryRef{Bucket: "devel", Snapshot: 1, URL: url, Key: info.Repositories[0].Key,
		Index: "repodata/repomd.xml", IndexSHA256: hex.EncodeToString(sum[:])}
	if info.Repositories[0] != want || len(want.Key) != 40 {
		t.Fatalf("job B's build info names repositories %+v, want [%+v]", info.Repositories, want)
	}

	// The token B's build had is nowhere kiln keeps.
	recorded, err := os.ReadFile(tokens)
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(string(recorded))
	if len(token) != 64 {
		t.Fatalf("the stand-in recorded %q, want one token", recorded)
	}
	var rawInfo []byte
	if err := f.db.Pool.QueryRow(context.Background(), "SELECT build_info FROM kiln.attempt WHERE task_id = $1", b).Scan(&rawInfo); err != nil {
		t.Fatal(err)
	}
	places := map[string][]byte{"the log": []byte(log), "the build info": rawInfo}
	for name, a := range arts {
		places["artifact "+name] = a.content
	}
	for where, content := range places {
		if bytes.Contains(content, []byte(token)) {
			t.Fatalf("the repository token is in %s", where)
		}
	}

	// A BuildRequires no repository has: unsatisfiable, named.
	_, c := f.submit(t, plat, "retry", testpkg.SRPM(t, testpkg.Spec{Name: "kiln-wants", BuildRequires: []string{"kiln-no-such-package >= 2"}}))
	if st := f.waitLong(t, c); st != "failed" {
		t.Fatalf("job C: task %s\n%s", st, f.logOf(t, c, 1))
	}
	var stage, reason string
	if err := f.db.Pool.QueryRow(context.Background(), `SELECT failure_stage, reason FROM kiln.task WHERE id = $1`, c).Scan(&stage, &reason); err != nil {
		t.Fatal(err)
	}
	if stage != task.StageUnsatisfiable || !strings.Contains(reason, "unsatisfiable build dependencies: kiln-wants-1.0-1.src.rpm (kiln-no-such-package >= 2") {
		t.Fatalf("job C ended at stage %q: %q\n%s", stage, reason, f.logOf(t, c, 1))
	}
	if info := f.buildInfo(t, c, 1); !info.Unsatisfiable || info.Stage != backend.StageBuildDeps || len(info.Repositories) != 1 {
		t.Fatalf("job C's build info %+v", info)
	}
}

// getAs reads url with a person's repository token.
func getAs(t *testing.T, url, token string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("admin", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, data
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
