package repo_test

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/backend"
	"github.com/kiln-build/kiln/internal/environment/envtest"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// hostDeb builds the debhelper source package d on the host
// (dpkg-buildpackage -b) and returns its binary package's bytes.
func hostDeb(t *testing.T, d testpkg.Deb) []byte {
	t.Helper()
	dsc := testpkg.DSC(t, d)
	src := filepath.Join(t.TempDir(), "src")
	for _, args := range [][]string{{"dpkg-source", "-x", dsc, src}, {"dpkg-buildpackage", "-b", "-uc", "-us"}} {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = filepath.Dir(src)
		if args[0] == "dpkg-buildpackage" {
			cmd.Dir = src
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", args[0], err, out)
		}
	}
	data, err := os.ReadFile(filepath.Join(filepath.Dir(src), d.Name+"_"+d.Version+"_all.deb"))
	must(t, err)
	return data
}

// The cross-job chain of tracker issue 15: job A published the debhelper
// library libkilnchain 1.2 into a bucket; job B, submitted afterwards alone
// in devel, Build-Depends on libkilnchain (>= 1.2) and builds with real
// sbuild in unshare mode in the shared environment, its apt reading the
// bucket's snapshot from kiln-web, signed-by the bucket's key (the
// repositories and keys as kiln.build_repositories gives them to a builder).
// Once with the library in devel itself, once in stable, which devel builds
// against (build_against).
func TestSbuildBuildsAgainstTheBuckets(t *testing.T) {
	if _, err := exec.LookPath("sbuild"); err != nil {
		t.Fatal("sbuild is not installed (run .ci/setup-debian as root)")
	}
	chroot, spec := envtest.Shared(t)
	lib := hostDeb(t, testpkg.Deb{Name: "libkilnchain", Version: "1.2"})
	for _, where := range []string{"devel", "stable"} {
		t.Run("library in "+where, func(t *testing.T) {
			f := setup(t)
			if where == "stable" {
				farmtest.Bucket(t, f.db.Pool, "stable")
				_, err := f.db.Pool.Exec(context.Background(), `UPDATE kiln.bucket SET build_against = '{stable}' WHERE name = 'devel'`)
				must(t, err)
			}
			f.job(t, where, map[string][]farmtest.Artifact{"bookworm-amd64": {{Kind: "package", Name: "libkilnchain_1.2_all.deb", Data: lib}}}, nil)
			f.publish(t)

			// Job B, alone, in devel; what a builder of it is told.
			jobB := farmtest.Submit(t, f.db.Pool, f.person, "devel", []string{"bookworm-amd64"}, farmtest.File{Name: "b.dsc", Data: []byte("Format: 3.0 (native)\n")})
			builder := pool(t, f.db.URLAs(farmtest.Person(t, f.db, "bld", "kiln_builder")))
			rows, err := builder.Query(context.Background(), `SELECT bucket, seq, fingerprint, public_key FROM kiln.build_repositories($1, 'bookworm-amd64')`, jobB)
			must(t, err)
			var repos []backend.Repository
			for rows.Next() {
				var bucket, fpr, key string
				var seq int64
				must(t, rows.Scan(&bucket, &seq, &fpr, &key))
				repos = append(repos, backend.Repository{URL: f.web.URL + "/repos/" + bucket + "/snapshots/" + itoa(seq) + "/bookworm-amd64",
					Suite: bucket, Fingerprint: fpr, Key: key})
			}
			must(t, rows.Err())
			if len(repos) != 1 || repos[0].Suite != where {
				t.Fatalf("build repositories of a devel job: %+v, want %s's only", repos, where)
			}

			b, err := backend.New(backend.Platform{Backend: "sbuild", Arch: spec.Arch, Settings: map[string]any{
				"dist": spec.Dist, "chroot": chroot, "chroot_mode": "unshare"}}, backend.Options{})
			must(t, err)
			r, u := envtest.Runner(t)
			dsc := testpkg.DSC(t, testpkg.Deb{Name: "kiln-chain-user", Version: "1.0", BuildDepends: "libkilnchain (>= 1.2)",
				Build: "grep -qx 'built libkilnchain' /usr/share/libkilnchain/hello.txt"})
			work := filepath.Join(r.Home, "work")
			must(t, os.Mkdir(work, 0o755))
			for _, name := range []string{filepath.Base(dsc), "kiln-chain-user_1.0.tar.xz"} {
				data, err := os.ReadFile(filepath.Join(filepath.Dir(dsc), name))
				must(t, err)
				must(t, os.WriteFile(filepath.Join(work, name), data, 0o644))
			}
			envtest.GiveTree(t, u, work)
			var log bytes.Buffer
			outs, err := b.Build(context.Background(), r, backend.Request{Source: filepath.Join(work, filepath.Base(dsc)), Dir: work,
				Repositories: repos, Log: &log})
			if err != nil {
				t.Fatalf("build: %v\n%s", err, log.String())
			}
			if !strings.Contains(log.String(), "libkilnchain") || len(outs) == 0 {
				t.Fatalf("built %v without installing libkilnchain:\n%s", outs, log.String())
			}
		})
	}
}
