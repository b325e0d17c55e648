package repo_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/repo"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/internal/web"
)

// farm is a test database with a deb and an rpm platform, bucket devel, a
// person, a publisher (its own login role and keyring) and kiln-web.
type farm struct {
	db        *pgtest.DB
	person    string
	publisher *repo.Publisher
	web       *httptest.Server
	webPool   *pgxpool.Pool
}

func setup(t testing.TB) *farm {
	t.Helper()
	db := pgtest.New(t)
	farmtest.Platform(t, db.Pool, "bookworm-amd64", "amd64")
	farmtest.Platform(t, db.Pool, "el9-x86_64", "x86_64")
	farmtest.Bucket(t, db.Pool, "devel")
	farmtest.Builder(t, db.Pool, "b1", 4, true, "bookworm-amd64", "el9-x86_64")
	f := &farm{db: db, person: farmtest.Person(t, db, "alice", "kiln_submitter")}
	pub := farmtest.Person(t, db, "pub", "kiln_publisher")
	f.publisher = &repo.Publisher{DB: pool(t, db.URLAs(pub)), Keys: repo.Keyring{Home: gnupgHome(t)}, WorkDir: t.TempDir()}
	webRole := farmtest.Person(t, db, "web", "kiln_web")
	f.webPool = pool(t, db.URLAs(webRole))
	srv, err := web.New(web.Config{DB: f.webPool})
	if err != nil {
		t.Fatal(err)
	}
	f.web = httptest.NewServer(srv.Handler())
	t.Cleanup(f.web.Close)
	return f
}

func pool(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	p, err := pgxpool.New(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	return p
}

// gnupgHome is a short private directory: gpg-agent's socket path must fit
// in a sockaddr_un.
func gnupgHome(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "kg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", dir, "--kill", "all").Run() //nolint:errcheck
		os.RemoveAll(dir)
	})
	return dir
}

// deb builds a real binary package with dpkg-deb: /usr/bin/NAME prints
// "NAME VERSION".
func deb(t testing.TB, name, version, arch string) []byte {
	t.Helper()
	root := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755))
	must(t, os.MkdirAll(filepath.Join(root, "usr/bin"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "DEBIAN/control"), []byte(fmt.Sprintf(
		"Package: %s\nVersion: %s\nArchitecture: %s\nMaintainer: kiln tests <kiln@example.org>\nDescription: kiln test package\n A package made by kiln's tests.\n",
		name, version, arch)), 0o644))
	must(t, os.WriteFile(filepath.Join(root, "usr/bin", name), []byte("#!/bin/sh\necho "+name+" "+version+"\n"), 0o755))
	out := filepath.Join(t.TempDir(), "p.deb")
	if b, err := exec.Command("dpkg-deb", "--root-owner-group", "--build", root, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v: %s", err, b)
	}
	data, err := os.ReadFile(out)
	must(t, err)
	return data
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// job submits a job as the person and lets builder b1 finish a task on
// each platform with status and the artifacts given for it.
func (f *farm) job(t testing.TB, bucket string, results map[string][]farmtest.Artifact, status map[string]string) int64 {
	t.Helper()
	var platforms []string
	for p := range results {
		platforms = append(platforms, p)
	}
	id := farmtest.Submit(t, f.db.Pool, f.person, bucket, platforms, farmtest.File{Name: "hello_1.0.dsc", Data: []byte("Format: 3.0 (native)\n")})
	tasks := farmtest.Split(t, f.db.Pool, id, platforms...)
	for i, tk := range tasks {
		a := farmtest.Take(t, f.db.Pool, tk, "b1")
		st, reason := "succeeded", ""
		if s := status[platforms[i]]; s != "" {
			st, reason = s, "it broke"
		}
		farmtest.Finish(t, f.db.Pool, tk, a, st, reason, results[platforms[i]]...)
	}
	return id
}

func (f *farm) publish(t testing.TB) []repo.Result {
	t.Helper()
	res, err := f.publisher.PublishPending(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func (f *farm) get(t testing.TB, path string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(f.web.URL + path)
	must(t, err)
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body) //nolint:errcheck
	return resp.StatusCode, b.Bytes()
}

// apt is apt-get with a state of its own: only kiln's repository as source,
// trusting only the bucket's key (signed-by), signature checks on.
type apt struct {
	dir, target string
}

func newApt(t testing.TB, sourceURL, suite string, key []byte) *apt {
	t.Helper()
	a := &apt{dir: t.TempDir()}
	a.target = filepath.Join(a.dir, "target")
	for _, d := range []string{"state/lists/partial", "cache/archives/partial", "empty", "target/var/lib/dpkg/updates", "target/var/lib/dpkg/info", "target/usr/bin"} {
		must(t, os.MkdirAll(filepath.Join(a.dir, d), 0o755))
	}
	must(t, os.WriteFile(filepath.Join(a.dir, "target/var/lib/dpkg/status"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(a.dir, "key.asc"), key, 0o644))
	must(t, os.WriteFile(filepath.Join(a.dir, "sources.list"),
		[]byte(fmt.Sprintf("deb [signed-by=%s] %s %s main\n", filepath.Join(a.dir, "key.asc"), sourceURL, suite)), 0o644))
	return a
}

func (a *apt) run(args ...string) (string, error) {
	base := []string{
		"-o", "Dir::State=" + filepath.Join(a.dir, "state"),
		"-o", "Dir::State::status=" + filepath.Join(a.target, "var/lib/dpkg/status"),
		"-o", "Dir::Cache=" + filepath.Join(a.dir, "cache"),
		"-o", "Dir::Etc::SourceList=" + filepath.Join(a.dir, "sources.list"),
		"-o", "Dir::Etc::SourceParts=" + filepath.Join(a.dir, "empty"),
		"-o", "Dir::Etc::Parts=" + filepath.Join(a.dir, "empty"),
		"-o", "Dir::Etc::Preferences=/dev/null",
		"-o", "Dir::Etc::PreferencesParts=" + filepath.Join(a.dir, "empty"),
		"-o", "Dir::Etc::TrustedParts=" + filepath.Join(a.dir, "empty"),
		"-o", "APT::Architecture=amd64",
		"-o", "Acquire::Languages=none",
		"-o", "Debug::NoLocking=1",
		"-o", "DPkg::Options::=--root=" + a.target,
		"-o", "DPkg::Options::=--force-not-root",
		"-o", "DPkg::Options::=--log=/dev/null",
		"-o", "DPkg::Chroot-Directory=/",
		"-o", "APT::Sandbox::User=root",
		"-q", "-y",
	}
	cmd := exec.Command("apt-get", append(base, args...)...)
	cmd.Dir = a.dir // apt-get source downloads into the working directory
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// debianTree returns a clean Debian system to run apt in: the tarball
// KILN_TEST_DEBIAN_TREE names (an mmdebstrap tarball, such as a build
// environment), or one mmdebstrap makes (--variant=apt, bookworm) once per
// test run, unpacked into a fresh directory for the test.
func debianTree(t testing.TB) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("installing into a Debian tree needs root (chroot); make test runs as root")
	}
	tarball := os.Getenv("KILN_TEST_DEBIAN_TREE")
	if tarball == "" {
		treeOnce.Do(func() {
			dir, err := os.MkdirTemp("", "kiln-tree")
			if err != nil {
				treeErr = err
				return
			}
			treeTar = filepath.Join(dir, "bookworm.tar")
			out, err := exec.Command("mmdebstrap", "--variant=apt", "--quiet", "bookworm", treeTar).CombinedOutput()
			if err != nil {
				treeErr = fmt.Errorf("mmdebstrap: %v\n%s", err, out)
			}
		})
		if treeErr != nil {
			t.Fatal(treeErr)
		}
		tarball = treeTar
	}
	root := t.TempDir()
	if out, err := exec.Command("tar", "-C", root, "-xf", tarball).CombinedOutput(); err != nil {
		t.Fatalf("unpacking %s: %v\n%s", tarball, err, out)
	}
	return root
}

var (
	treeOnce sync.Once
	treeTar  string
	treeErr  error
)

// In a clean Debian tree whose only source is kiln's repository, trusted
// through signed-by the bucket's key: apt-get update, apt-get install, and
// the program runs.
func TestAptInstallsPublishedPackage(t *testing.T) {
	t.Parallel()
	f := setup(t)
	f.job(t, "devel", map[string][]farmtest.Artifact{
		"bookworm-amd64": {{Kind: "package", Name: "hello-kiln_1.0_amd64.deb", Data: deb(t, "hello-kiln", "1.0", "amd64")}},
	}, nil)
	res := f.publish(t)
	if len(res) != 1 || res[0].Snapshot != 1 || res[0].Packages != 1 {
		t.Fatalf("publication: %+v", res)
	}
	code, key := f.get(t, "/repos/devel/key.asc")
	if code != 200 {
		t.Fatalf("key.asc: %d", code)
	}
	root := debianTree(t)
	must(t, os.MkdirAll(filepath.Join(root, "etc/apt/keyrings"), 0o755))
	must(t, os.WriteFile(filepath.Join(root, "etc/apt/keyrings/kiln-devel.asc"), key, 0o644))
	for _, old := range []string{"etc/apt/sources.list", "etc/apt/sources.list.d/debian.sources"} {
		os.Remove(filepath.Join(root, old))
	}
	must(t, os.WriteFile(filepath.Join(root, "etc/apt/sources.list.d/kiln.list"),
		[]byte("deb [signed-by=/etc/apt/keyrings/kiln-devel.asc] "+f.web.URL+"/repos/devel/bookworm-amd64 devel main\n"), 0o644))
	chroot := func(args ...string) (string, error) {
		cmd := exec.Command("chroot", append([]string{root}, args...)...)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C"}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := chroot("apt-get", "-q", "update"); err != nil || strings.Contains(out, "W:") || strings.Contains(out, "E:") {
		t.Fatalf("apt-get update: %v\n%s", err, out)
	}
	if out, err := chroot("apt-get", "-q", "-y", "install", "hello-kiln"); err != nil {
		t.Fatalf("apt-get install: %v\n%s", err, out)
	}
	out, err := chroot("hello-kiln")
	if err != nil || out != "hello-kiln 1.0\n" {
		t.Fatalf("installed program: %v %q", err, out)
	}
}

func httptestServer(t testing.TB, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestMain(m *testing.M) {
	code := m.Run()
	if treeTar != "" {
		os.RemoveAll(filepath.Dir(treeTar))
	}
	os.Exit(code)
}
