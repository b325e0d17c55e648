package repo_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// The attacker's view of repositories: who may write them, read private
// ones, and what URLs reach.
func TestRepositoryAttacks(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	f.job(t, "devel", debArtifact(t, "hello-kiln", "1.0"), nil)
	f.publish(t)

	t.Run("people, builders and the web cannot write repository rows", func(t *testing.T) {
		builder := farmtest.Person(t, f.db, "bld", "kiln_builder")
		webRole := farmtest.Person(t, f.db, "web2", "kiln_web")
		for _, role := range []string{f.person, builder, webRole} {
			p := pool(t, f.db.URLAs(role))
			for _, sql := range []string{
				`INSERT INTO kiln.snapshot (bucket, seq) VALUES ('devel', 99)`,
				`UPDATE kiln.bucket_publication SET current_snapshot = NULL`,
				`DELETE FROM kiln.repository_file`,
				`INSERT INTO kiln.bucket_key (bucket, fingerprint, public_key) VALUES ('devel', repeat('AB', 20), '-----BEGIN PGP PUBLIC KEY BLOCK-----')`,
				`UPDATE kiln.publication_request SET done_at = now(), outcome = 'x'`,
				`INSERT INTO kiln.publication_request (bucket, kind) VALUES ('devel', 'rebuild')`,
			} {
				if tag, err := p.Exec(ctx, sql); err == nil && tag.RowsAffected() > 0 {
					t.Errorf("%s could: %s", role, sql)
				} else if err == nil && !strings.HasPrefix(sql, "UPDATE") && !strings.HasPrefix(sql, "DELETE") {
					t.Errorf("%s could: %s", role, sql)
				}
			}
		}
	})

	t.Run("a private bucket is not served anonymously, nor to another person's token", func(t *testing.T) {
		farmtest.Bucket(t, f.db.Pool, "secret")
		_, err := f.db.Pool.Exec(ctx, `UPDATE kiln.bucket SET private = true WHERE name = 'secret'`)
		must(t, err)
		owner := farmtest.Person(t, f.db, "bob", "kiln_submitter")
		_, err = f.db.Pool.Exec(ctx, `INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('secret', $1)`, owner)
		must(t, err)
		// bob's job in the private bucket, published.
		saved := f.person
		f.person = owner
		f.job(t, "secret", debArtifact(t, "classified", "1.0"), nil)
		f.person = saved
		f.publish(t)
		path := "/repos/secret/bookworm-amd64/dists/secret/InRelease"
		if code, _ := f.get(t, path); code == 200 {
			t.Fatal("a private bucket's InRelease was served anonymously")
		}
		if code, _ := f.get(t, "/repos/secret/key.asc"); code == 200 {
			t.Fatal("a private bucket's key was served anonymously")
		}
		var bobToken, aliceToken string
		must(t, pool(t, f.db.URLAs(owner)).QueryRow(ctx, `SELECT kiln.new_repo_token()`).Scan(&bobToken))
		must(t, pool(t, f.db.URLAs(f.person)).QueryRow(ctx, `SELECT kiln.new_repo_token()`).Scan(&aliceToken))
		get := func(token string) int {
			req, _ := http.NewRequest("GET", f.web.URL+path, nil)
			req.SetBasicAuth("x", token)
			resp, err := http.DefaultClient.Do(req)
			must(t, err)
			resp.Body.Close()
			return resp.StatusCode
		}
		if code := get(bobToken); code != 200 {
			t.Fatalf("bob's token: %d", code)
		}
		if code := get(aliceToken); code == 200 {
			t.Fatal("alice's token read bob's private bucket")
		}
		if code := get("guess"); code == 200 {
			t.Fatal("a made-up token read a private bucket")
		}
		// The web's role itself sees no row of it.
		var n int
		must(t, f.webPool.QueryRow(ctx, `SELECT count(*) FROM kiln.repository_file WHERE bucket = 'secret'`).Scan(&n))
		if n != 0 {
			t.Fatalf("kiln_web sees %d files of a private bucket", n)
		}
	})

	t.Run("path traversal in /repos URLs", func(t *testing.T) {
		for _, p := range []string{
			"/repos/devel/bookworm-amd64/../../../etc/passwd",
			"/repos/devel/bookworm-amd64/dists/%2e%2e/%2e%2e/key.asc",
			"/repos/devel/bookworm-amd64/dists/devel/..%2fInRelease",
			"/repos/devel/snapshots/0/bookworm-amd64/dists/devel/InRelease",
			"/repos/devel/snapshots/01/bookworm-amd64/dists/devel/InRelease",
			"/repos/devel/bookworm-amd64/dists/devel/.InRelease",
			"/repos/devel/bookworm-amd64/dists\\devel\\InRelease",
		} {
			if code, body := f.get(t, p); code == 200 {
				t.Errorf("%s served: %.80s", p, body)
			}
		}
		if code, _ := f.get(t, "/repos/devel/bookworm-amd64/dists/devel/InRelease"); code != 200 {
			t.Fatal("the real InRelease is not served")
		}
	})

	t.Run("HEAD, Range and ETag", func(t *testing.T) {
		url := f.web.URL + "/repos/devel/bookworm-amd64/pool/main/h/hello-kiln/hello-kiln_1.0_amd64.deb"
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("Range", "bytes=0-7")
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusPartialContent || resp.ContentLength != 8 || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") {
			t.Fatalf("range: %d %d %q", resp.StatusCode, resp.ContentLength, resp.Header.Get("Cache-Control"))
		}
		req, _ = http.NewRequest("GET", url, nil)
		req.Header.Set("If-None-Match", resp.Header.Get("ETag"))
		resp, err = http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotModified {
			t.Fatalf("If-None-Match: %d", resp.StatusCode)
		}
		resp, err = http.Head(f.web.URL + "/repos/devel/bookworm-amd64/dists/devel/InRelease")
		must(t, err)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Control"), "max-age=60") {
			t.Fatalf("HEAD InRelease: %d %q", resp.StatusCode, resp.Header.Get("Cache-Control"))
		}
	})
}
