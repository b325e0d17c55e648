package repo_test

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

const changesPath = "/repos/devel/bookworm-amd64/pool/main/k/kiln-src/kiln-src_1.0_amd64.changes"

// gpgv checks a clear-signed file against an armored public key with gpgv
// (as dscverify and dput do), and returns its output.
func gpgv(t testing.TB, key, signed []byte) (string, error) {
	t.Helper()
	dir := t.TempDir()
	must(t, os.WriteFile(filepath.Join(dir, "key.asc"), key, 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "file"), signed, 0o644))
	if out, err := exec.Command("gpg", "--batch", "--homedir", dir, "--output", filepath.Join(dir, "key.gpg"), "--dearmor", filepath.Join(dir, "key.asc")).CombinedOutput(); err != nil {
		t.Fatalf("gpg --dearmor: %v\n%s", err, out)
	}
	out, err := exec.Command("gpgv", "--homedir", dir, "--keyring", filepath.Join(dir, "key.gpg"), filepath.Join(dir, "file")).CombinedOutput()
	return string(out), err
}

// changesFiles are the files a .changes lists: name -> "sha256 size" from
// Checksums-Sha256 and name -> "md5 size" from Files.
func changesFiles(t testing.TB, changes []byte) (sha, md map[string]string) {
	t.Helper()
	sha, md = map[string]string{}, map[string]string{}
	var in string
	for _, line := range strings.Split(string(changes), "\n") {
		switch {
		case line == "Checksums-Sha256:" || line == "Files:":
			in = line
			continue
		case !strings.HasPrefix(line, " "):
			in = ""
			continue
		}
		f := strings.Fields(line)
		switch {
		case in == "Checksums-Sha256:" && len(f) == 3:
			sha[f[2]] = f[0] + " " + f[1]
		case in == "Files:" && len(f) == 5:
			md[f[4]] = f[0] + " " + f[1]
		}
	}
	return sha, md
}

// With the bucket's sign_packages on, the publisher serves, next to the
// source package and the .debs in the pool, a .changes of the upload
// clear-signed with the bucket's key: gpgv verifies it against key.asc, a
// changed byte fails it, and every file it lists is served with the listed
// SHA-256, MD5 and size. A build's own hostile .changes artifacts are
// neither served nor signed. Promotion into a bucket without the option
// copies the source package but no .changes; into one with it, the target
// signs its own.
func TestSignedChanges(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	_, err := f.db.Pool.Exec(ctx, `UPDATE kiln.bucket SET sign_packages = true WHERE name = 'devel'`)
	must(t, err)
	dsc := testpkg.DSC(t, testpkg.Deb{Name: "kiln-src", Version: "1.0"})
	// What a hostile build offers: a .changes of its own choosing naming a
	// file it would like signed, as an artifact of either kind.
	hostile := []byte("Format: 1.8\nSource: kiln-src\nVersion: 1.0\nDistribution: devel\nChecksums-Sha256:\n " +
		strings.Repeat("0", 64) + " 4 evil.deb\nFiles:\n " + strings.Repeat("0", 32) + " 4 misc optional evil.deb\n")
	job := f.srcJob(t, "devel", dsc,
		farmtest.Artifact{Kind: "package", Name: "kiln-src_1.0_amd64.deb", Data: deb(t, "kiln-src", "1.0", "amd64")},
		farmtest.Artifact{Kind: "other", Name: "kiln-src_1.0_amd64.changes", Data: hostile},
		farmtest.Artifact{Kind: "package", Name: "kiln-src_1.0_source.changes", Data: hostile})
	f.publish(t)

	code, changes := f.get(t, changesPath)
	if code != 200 {
		t.Fatalf(".changes: %d", code)
	}
	_, key := f.get(t, "/repos/devel/key.asc")
	if out, err := gpgv(t, key, changes); err != nil {
		t.Fatalf("gpgv refused the served .changes: %v\n%s", err, out)
	}
	evil := bytes.Replace(changes, []byte("Distribution: devel"), []byte("Distribution: devil"), 1)
	if _, err := gpgv(t, key, evil); err == nil {
		t.Fatal("gpgv accepted a changed .changes")
	}

	sha, md := changesFiles(t, changes)
	want := []string{"kiln-src_1.0.dsc", "kiln-src_1.0.tar.xz", "kiln-src_1.0_amd64.deb"}
	if len(sha) != len(want) || len(md) != len(want) {
		t.Fatalf(".changes lists %v / %v, want %v:\n%s", sha, md, want, changes)
	}
	for _, name := range want {
		code, data := f.get(t, "/repos/devel/bookworm-amd64/pool/main/k/kiln-src/"+name)
		if code != 200 {
			t.Fatalf("%s: %d", name, code)
		}
		size := strconv.Itoa(len(data))
		m := md5.Sum(data)
		if sha[name] != sha256hex(data)+" "+size || md[name] != hex.EncodeToString(m[:])+" "+size {
			t.Errorf("%s: .changes says %s / %s, served %s %x %s", name, sha[name], md[name], sha256hex(data), m, size)
		}
	}
	// The submitted .dsc is what the .changes names, byte for byte.
	orig, err := os.ReadFile(dsc)
	must(t, err)
	if sha["kiln-src_1.0.dsc"] != sha256hex(orig)+" "+strconv.Itoa(len(orig)) {
		t.Fatal("the .changes does not name the submitted .dsc")
	}
	var n int
	must(t, f.db.Pool.QueryRow(ctx, `SELECT count(*) FROM kiln.repository_file WHERE blob_sha256 = sha256($1) OR path LIKE '%source.changes'`, hostile).Scan(&n))
	if n != 0 || bytes.Contains(changes, []byte("evil.deb")) {
		t.Fatalf("the build's own .changes was published (%d files) or signed", n)
	}

	// Promotion.
	farmtest.Bucket(t, f.db.Pool, "testing")
	farmtest.Bucket(t, f.db.Pool, "stable")
	_, err = f.db.Pool.Exec(ctx, `UPDATE kiln.bucket SET sign_packages = true WHERE name = 'stable'`)
	must(t, err)
	for _, b := range []string{"testing", "stable"} {
		_, err = f.db.Pool.Exec(ctx, `SELECT kiln.promote($1, $2)`, job, b)
		must(t, err)
	}
	f.publish(t)
	tPath := strings.Replace(changesPath, "/devel/", "/testing/", 1)
	if code, _ := f.get(t, strings.Replace(tPath, "_amd64.changes", ".dsc", 1)); code != 200 {
		t.Fatalf("promoted .dsc: %d", code)
	}
	if code, _ := f.get(t, tPath); code == 200 {
		t.Fatal("a .changes signed for devel was copied into testing, which does not sign packages")
	}
	code, sChanges := f.get(t, strings.Replace(changesPath, "/devel/", "/stable/", 1))
	if code != 200 || !bytes.Contains(sChanges, []byte("Distribution: stable\n")) {
		t.Fatalf("stable's .changes: %d\n%s", code, sChanges)
	}
	_, sKey := f.get(t, "/repos/stable/key.asc")
	if out, err := gpgv(t, sKey, sChanges); err != nil {
		t.Fatalf("stable's .changes does not verify with stable's key: %v\n%s", err, out)
	}
	if _, err := gpgv(t, key, sChanges); err == nil {
		t.Fatal("stable's .changes verifies with devel's key")
	}
	if s2, _ := changesFiles(t, sChanges); len(s2) != 3 || s2["kiln-src_1.0_amd64.deb"] != sha["kiln-src_1.0_amd64.deb"] {
		t.Fatalf("stable's .changes lists %v", s2)
	}
}

// The attacker's view of source packages: what a submitter can make the
// publisher serve, and who may read or write what.
func TestSourcePackageAttacks(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	outcome := func(job int64) string {
		t.Helper()
		var o string
		must(t, f.db.Pool.QueryRow(ctx, `SELECT outcome FROM kiln.publication_request WHERE job_id = $1`, job).Scan(&o))
		return o
	}

	t.Run("a .dsc naming a file shaped like a binary package is not published; the binary is", func(t *testing.T) {
		evil := []byte("not the binary package")
		dsc := nativeDSC(t, "kiln-evil", "1.0", "", map[string][]byte{"kiln-evil_1.0_amd64.deb": evil})
		real := deb(t, "kiln-evil", "1.0", "amd64")
		job := f.srcJob(t, "devel", dsc, farmtest.Artifact{Kind: "package", Name: "x.deb", Data: real})
		f.publish(t)
		if o := outcome(job); !strings.Contains(o, "published 1 packages") || !strings.Contains(o, "not a file name dpkg-source makes") {
			t.Fatalf("outcome %q", o)
		}
		_, served := f.get(t, "/repos/devel/bookworm-amd64/pool/main/k/kiln-evil/kiln-evil_1.0_amd64.deb")
		if !bytes.Equal(served, real) {
			t.Fatal("the pool serves the source's file in place of the binary package")
		}
		if code, _ := f.get(t, "/repos/devel/bookworm-amd64/pool/main/k/kiln-evil/kiln-evil_1.0.dsc"); code == 200 {
			t.Fatal("the refused .dsc is served")
		}
	})

	t.Run("a file whose bytes are not what the .dsc says is not published", func(t *testing.T) {
		dsc := nativeDSC(t, "kiln-swap", "1.0", "", map[string][]byte{"kiln-swap_1.0.tar.xz": []byte("the real tarball")})
		arts := farmtest.Artifact{Kind: "package", Name: "x.deb", Data: deb(t, "kiln-swap", "1.0", "amd64")}
		// Past the splitter: the stored file becomes other bytes of the
		// same size.
		swap := func(job int64) {
			_, err := f.db.Pool.Exec(ctx, `WITH b AS (INSERT INTO kiln.blob (sha256, size, chunk_size, verified_at)
					VALUES (sha256('a fake tarball!!'), 16, 262144, now()) ON CONFLICT DO NOTHING RETURNING sha256),
				c AS (INSERT INTO kiln.blob_chunk (sha256, seq, data) SELECT sha256, 0, 'a fake tarball!!' FROM b)
				UPDATE kiln.package_file SET blob_sha256 = sha256('a fake tarball!!') WHERE job_id = $1`, job)
			must(t, err)
		}
		// Once when the publisher first reads the source package, once
		// after it has read the same .dsc with the right files (in
		// another bucket) and knows its stanza.
		first := f.srcJob(t, "devel", dsc, arts)
		swap(first)
		f.publish(t)
		farmtest.Bucket(t, f.db.Pool, "swap1")
		farmtest.Bucket(t, f.db.Pool, "swap2")
		f.srcJob(t, "swap1", dsc, arts)
		f.publish(t)
		if code, _ := f.get(t, "/repos/swap1/bookworm-amd64/pool/main/k/kiln-swap/kiln-swap_1.0.tar.xz"); code != 200 {
			t.Fatalf("the real tarball is not served: %d", code)
		}
		second := f.srcJob(t, "swap2", dsc, arts)
		swap(second)
		f.publish(t)
		for _, c := range []struct {
			bucket string
			job    int64
		}{{"devel", first}, {"swap2", second}} {
			if o := outcome(c.job); !strings.Contains(o, "the .dsc says") {
				t.Fatalf("%s: outcome %q", c.bucket, o)
			}
			if code, _ := f.get(t, "/repos/"+c.bucket+"/bookworm-amd64/pool/main/k/kiln-swap/kiln-swap_1.0.tar.xz"); code == 200 {
				t.Fatalf("%s serves the swapped tarball", c.bucket)
			}
		}
	})

	t.Run("fields of a .dsc cannot move its files or add a stanza", func(t *testing.T) {
		dsc := nativeDSC(t, "kiln-field", "1.0", "Directory: ../../etc\nPackage: openssl\nHomepage: https://example.org\n Package: x\n",
			map[string][]byte{"kiln-field_1.0.tar.xz": []byte("tarball")})
		f.srcJob(t, "devel", dsc, farmtest.Artifact{Kind: "package", Name: "x.deb", Data: deb(t, "kiln-field", "1.0", "amd64")})
		f.publish(t)
		_, idx := f.get(t, sourcesPath)
		var stanza string
		for _, s := range strings.Split(string(idx), "\n\n") {
			if strings.HasPrefix(s, "Package: kiln-field\n") {
				stanza = s
			}
		}
		if strings.Count(stanza, "\nDirectory:") != 1 || !strings.Contains(stanza, "\nDirectory: pool/main/k/kiln-field") ||
			strings.Contains(stanza, "openssl") || strings.Count(string(idx), "\nPackage:")+1 != strings.Count(string(idx), "Directory:") {
			t.Fatalf("Sources:\n%s", idx)
		}
	})

	t.Run("only the publisher reads a job's sources through the function, and nobody else writes source packages", func(t *testing.T) {
		builder := farmtest.Person(t, f.db, "bld", "kiln_builder")
		webRole := farmtest.Person(t, f.db, "web3", "kiln_web")
		for _, role := range []string{f.person, builder, webRole} {
			p := pool(t, f.db.URLAs(role))
			if _, err := p.Exec(ctx, `SELECT * FROM kiln.publisher_job_sources(1)`); err == nil {
				t.Errorf("%s called kiln.publisher_job_sources", role)
			}
			if _, err := p.Exec(ctx, `INSERT INTO kiln.source_package (sha256, name, version, stanza) SELECT sha256, 'x', '1', '' FROM kiln.blob LIMIT 1`); err == nil {
				t.Errorf("%s inserted a source package", role)
			}
			if tag, err := p.Exec(ctx, `DELETE FROM kiln.source_package`); err == nil && tag.RowsAffected() > 0 {
				t.Errorf("%s deleted source packages", role)
			}
			if tag, err := p.Exec(ctx, `UPDATE kiln.repository_file SET source_package = NULL`); err == nil && tag.RowsAffected() > 0 {
				t.Errorf("%s changed the manifest", role)
			}
		}
	})

	t.Run("a private bucket's source packages are hidden from other people", func(t *testing.T) {
		farmtest.Bucket(t, f.db.Pool, "secret")
		_, err := f.db.Pool.Exec(ctx, `UPDATE kiln.bucket SET private = true WHERE name = 'secret'`)
		must(t, err)
		bob := farmtest.Person(t, f.db, "bob", "kiln_submitter")
		_, err = f.db.Pool.Exec(ctx, `INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('secret', $1)`, bob)
		must(t, err)
		saved := f.person
		f.person = bob
		dsc := nativeDSC(t, "kiln-classified", "1.0", "", map[string][]byte{"kiln-classified_1.0.tar.xz": []byte("secret")})
		f.srcJob(t, "secret", dsc, farmtest.Artifact{Kind: "package", Name: "x.deb", Data: deb(t, "kiln-classified", "1.0", "amd64")})
		f.person = saved
		f.publish(t)
		count := func(role, sql string) int {
			var n int
			must(t, pool(t, f.db.URLAs(role)).QueryRow(ctx, sql).Scan(&n))
			return n
		}
		for _, q := range []string{`SELECT count(*) FROM kiln.source_package WHERE name = 'kiln-classified'`,
			`SELECT count(*) FROM kiln.repository_source WHERE name = 'kiln-classified'`} {
			if count(bob, q) != 1 || count(f.person, q) != 0 {
				t.Errorf("%s: bob %d, alice %d; want 1, 0", q, count(bob, q), count(f.person, q))
			}
		}
		if code, _ := f.get(t, "/repos/secret/bookworm-amd64/dists/secret/main/source/Sources"); code == 200 {
			t.Fatal("a private bucket's Sources is served anonymously")
		}
	})
}
