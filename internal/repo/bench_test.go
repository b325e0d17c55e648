package repo_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/repo"
	"github.com/kiln-build/kiln/internal/testsupport/benchstat"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// seed gives bucket devel a served snapshot of n binary packages on
// bookworm-amd64, made in SQL (stanzas as the publisher stores them), so
// that the benchmarks measure publishing into a big repository without
// building n packages first.
func seed(b testing.TB, f *farm, n int) {
	b.Helper()
	_, err := f.db.Pool.Exec(context.Background(), fmt.Sprintf(`
		INSERT INTO kiln.blob (sha256, size, chunk_size, verified_at)
			SELECT sha256(convert_to('seed' || i, 'UTF8')), 1000, 262144, now() FROM generate_series(1, %[1]d) i;
		INSERT INTO kiln.binary_package (sha256, format, name, version, arch, source, stanza)
			SELECT sha256(convert_to('seed' || i, 'UTF8')), 'deb', 'seed' || i, '1.0', 'amd64', 'seed' || i,
			       format(E'Package: seed%%s\nVersion: 1.0\nArchitecture: amd64\nMaintainer: kiln bench <kiln@example.org>\nInstalled-Size: 10\nSection: misc\nPriority: optional\nDescription: seeded package %%s\n A package the benchmark seeded, with a description\n of a few lines like most packages have.\n', i, i)
			FROM generate_series(1, %[1]d) i;
		WITH s AS (INSERT INTO kiln.snapshot (bucket, seq) VALUES ('devel', 1) RETURNING id),
		     f AS (INSERT INTO kiln.repository_file (bucket, from_seq, platform, path, blob_sha256, size, package)
			SELECT 'devel', 1, 'bookworm-amd64', format('pool/main/s/seed%%s/seed%%s_1.0_amd64.deb', i, i),
			       sha256(convert_to('seed' || i, 'UTF8')), 1000, sha256(convert_to('seed' || i, 'UTF8'))
			FROM s, generate_series(1, %[1]d) i)
		INSERT INTO kiln.bucket_publication (bucket, current_snapshot) SELECT 'devel', id FROM s`, n))
	must(b, err)
}

// BenchmarkRegenerate: one package published into a repository of n
// packages, timed from the start of the publication to its commit.
func BenchmarkRegenerate(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("packages=%d", n), func(b *testing.B) {
			f := setup(b)
			seed(b, f, n)
			pkgs := make([][]byte, 5)
			for i := range pkgs {
				pkgs[i] = deb(b, fmt.Sprintf("added%d", i), "1.0", "amd64")
			}
			var took []time.Duration
			for range b.N {
				for i := range pkgs {
					f.job(b, "devel", map[string][]farmtest.Artifact{"bookworm-amd64": {{Kind: "package", Name: "a.deb", Data: pkgs[i]}}}, nil)
					began := time.Now()
					if _, err := f.publisher.Publish(context.Background(), "devel"); err != nil {
						b.Fatal(err)
					}
					took = append(took, time.Since(began))
				}
			}
			benchstat.Report(b, "", took, 50)
			b.ReportMetric(benchstat.Ms(slices.Max(took)), "max-ms")
		})
	}
}

// BenchmarkVisibleToApt: a running publisher (repo.Serve, woken by NOTIFY)
// and kiln-web; a task of a job finishes; measured until kiln-web serves a
// Packages index naming the package (polling for the package file, which
// the same commit serves), in a bucket of 10,000 packages. At the end
// apt-get update against it sees the last package, and each round's
// Packages names its package.
func BenchmarkVisibleToApt(b *testing.B) {
	f := setup(b)
	seed(b, f, 10000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		repo.Serve(ctx, f.publisher, repo.ServeConfig{Coalesce: 20 * time.Millisecond}) //nolint:errcheck
		close(done)
	}()
	defer func() { cancel(); <-done }()
	const rounds = 20
	var lat []time.Duration
	var last string
	for range b.N {
		for range rounds {
			name := fmt.Sprintf("visible%d", len(lat))
			arts := map[string][]farmtest.Artifact{"bookworm-amd64": {{Kind: "package", Name: "a.deb", Data: deb(b, name, "1.0", "amd64")}}}
			f.job(b, "devel", arts, nil) // the task's success commits here
			began := time.Now()
			// The package file, its Packages entry and the signed Release
			// are served from the same commit: poll the small one.
			for {
				if code, _ := f.get(b, "/repos/devel/bookworm-amd64/pool/main/"+name[:1]+"/"+name+"/"+name+"_1.0_amd64.deb"); code == 200 {
					break
				}
				time.Sleep(5 * time.Millisecond)
			}
			lat = append(lat, time.Since(began))
			if _, body := f.get(b, packagesPath); !bytes.Contains(body, []byte("Package: "+name+"\n")) {
				b.Fatalf("%s is served but not in Packages", name)
			}
			last = name
		}
	}
	_, key := f.get(b, "/repos/devel/key.asc")
	a := newApt(b, f.web.URL+"/repos/devel/bookworm-amd64", "devel", key)
	if out, err := a.run("update"); err != nil {
		b.Fatalf("apt-get update: %v\n%s", err, out)
	}
	if out, err := a.run("install", "--download-only", last); err != nil {
		b.Fatalf("apt-get does not see %s: %v\n%s", last, err, out)
	}
	benchstat.Report(b, "", lat, 50, 99)
}

// BenchmarkServe: a 50 MB package downloaded from kiln-web's /repos
// (streamed from PostgreSQL) and from http.FileServer serving the same
// bytes from disk, both over local TCP.
func BenchmarkServe(b *testing.B) {
	f := setup(b)
	root := b.TempDir()
	must(b, os.MkdirAll(filepath.Join(root, "DEBIAN"), 0o755))
	must(b, os.MkdirAll(filepath.Join(root, "usr/share/big"), 0o755))
	must(b, os.WriteFile(filepath.Join(root, "DEBIAN/control"), []byte("Package: big\nVersion: 1.0\nArchitecture: amd64\nMaintainer: kiln bench <kiln@example.org>\nDescription: big\n 50 MB.\n"), 0o644))
	data := make([]byte, 50<<20)
	rand.Read(data) //nolint:errcheck
	must(b, os.WriteFile(filepath.Join(root, "usr/share/big/data"), data, 0o644))
	debFile := filepath.Join(b.TempDir(), "big.deb")
	if out, err := exec.Command("dpkg-deb", "-Znone", "--root-owner-group", "--build", root, debFile).CombinedOutput(); err != nil {
		b.Fatalf("dpkg-deb: %v\n%s", err, out)
	}
	pkg, err := os.ReadFile(debFile)
	must(b, err)
	f.job(b, "devel", map[string][]farmtest.Artifact{"bookworm-amd64": {{Kind: "package", Name: "big.deb", Data: pkg}}}, nil)
	f.publish(b)
	disk := httptest.NewServer(http.FileServer(http.Dir(filepath.Dir(debFile))))
	defer disk.Close()

	fetch := func(url string) time.Duration {
		began := time.Now()
		resp, err := http.Get(url)
		must(b, err)
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		must(b, err)
		if n != int64(len(pkg)) {
			b.Fatalf("%s: %d bytes, want %d", url, n, len(pkg))
		}
		return time.Since(began)
	}
	var fromDB, fromDisk time.Duration
	const rounds = 5
	for range b.N {
		for range rounds {
			fromDB += fetch(f.web.URL + "/repos/devel/bookworm-amd64/pool/main/b/big/big_1.0_amd64.deb")
			fromDisk += fetch(disk.URL + "/big.deb")
		}
	}
	mb := float64(len(pkg)) / 1e6 * float64(rounds*b.N)
	b.ReportMetric(mb/fromDB.Seconds(), "kiln-MB/s")
	b.ReportMetric(mb/fromDisk.Seconds(), "fileserver-MB/s")
	b.ReportMetric(fromDisk.Seconds()/fromDB.Seconds(), "ratio")
}
