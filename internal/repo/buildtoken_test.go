package repo_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// Builds against private buckets, as the attacker: the token a builder
// gets for a build attempt (kiln.build_repository_token) reads that one
// bucket's repository through kiln-web while the attempt builds, and
// nothing else; nobody but the attempt's own builder gets one, and a
// person's token or login is not what a build is given.
func TestBuildRepositoryToken(t *testing.T) {
	t.Parallel()
	f := setup(t)
	ctx := context.Background()
	for _, b := range []string{"secret", "other"} {
		farmtest.Bucket(t, f.db.Pool, b)
		_, err := f.db.Pool.Exec(ctx, `UPDATE kiln.bucket SET private = true WHERE name = $1`, b)
		must(t, err)
		f.job(t, b, debArtifact(t, "classified-"+b, "1.0"), nil)
	}
	f.job(t, "devel", debArtifact(t, "hello-kiln", "1.0"), nil)
	f.publish(t)
	_, err := f.db.Pool.Exec(ctx, `UPDATE kiln.bucket SET build_against = '{devel}' WHERE name = 'secret'`)
	must(t, err)

	// Builder b2, with a role of its own, building a job of bucket secret;
	// builder b3 of another role.
	builders := map[string]*pgxpool.Pool{}
	for _, name := range []string{"b2", "b3"} {
		role := farmtest.Person(t, f.db, "role"+name, "kiln_builder")
		farmtest.Builder(t, f.db.Pool, name, 1, true, "bookworm-amd64")
		_, err := f.db.Pool.Exec(ctx, `UPDATE kiln.builder SET role = $1 WHERE name = $2`, role, name)
		must(t, err)
		builders[name] = pool(t, f.db.URLAs(role))
	}
	job := farmtest.Submit(t, f.db.Pool, f.person, "secret", []string{"bookworm-amd64"}, farmtest.File{Name: "user_1.0.dsc", Data: []byte("Format: 3.0 (native)\n")})
	tk := farmtest.Split(t, f.db.Pool, job, "bookworm-amd64")[0]
	attempt := farmtest.Take(t, builders["b2"], tk, "b2")

	token := func(p *pgxpool.Pool, builder string, task int64, attempt int, bucket string) (*string, error) {
		var tok *string
		err := p.QueryRow(ctx, `SELECT kiln.build_repository_token($1, $2, $3, $4)`, builder, task, attempt, bucket).Scan(&tok)
		return tok, err
	}
	get := func(path, tok string) int {
		req, err := http.NewRequest("GET", f.web.URL+path, nil)
		must(t, err)
		if tok != "" {
			req.SetBasicAuth("kiln-build", tok)
		}
		resp, err := http.DefaultClient.Do(req)
		must(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	const secretIndex = "/repos/secret/bookworm-amd64/dists/secret/InRelease"

	tok, err := token(builders["b2"], "b2", tk, attempt, "secret")
	if err != nil || tok == nil || len(*tok) != 64 {
		t.Fatalf("the attempt's builder got token %v, %v", tok, err)
	}
	if code := get(secretIndex, ""); code == http.StatusOK {
		t.Fatal("the private bucket is served without a token")
	}
	if code := get(secretIndex, *tok); code != http.StatusOK {
		t.Fatalf("the build's token does not read its bucket: %d", code)
	}
	if code := get("/repos/secret/snapshots/1/bookworm-amd64/dists/secret/InRelease", *tok); code != http.StatusOK {
		t.Fatalf("the build's token does not read its bucket's snapshot: %d", code)
	}

	t.Run("the token reads nothing else", func(t *testing.T) {
		if code := get("/repos/other/bookworm-amd64/dists/other/InRelease", *tok); code == http.StatusOK {
			t.Fatal("another private bucket accepted the build's token")
		}
		for _, path := range []string{"/jobs/" + itoa(job), "/api/jobs/" + itoa(job), "/repos/secret/bookworm-amd64/dists/secret/../../../other/bookworm-amd64/dists/other/InRelease"} {
			if code := get(path, *tok); code == http.StatusOK {
				t.Errorf("GET %s with the build's token: %d", path, code)
			}
		}
	})

	t.Run("only the attempt's own builder gets one, only for its buckets", func(t *testing.T) {
		for _, c := range []struct {
			what    string
			pool    *pgxpool.Pool
			builder string
			attempt int
			bucket  string
		}{
			{"another builder's role naming b2", builders["b3"], "b2", attempt, "secret"},
			{"another builder", builders["b3"], "b3", attempt, "secret"},
			{"an old attempt", builders["b2"], "b2", attempt + 1, "secret"},
			{"a bucket the build does not build against", builders["b2"], "b2", attempt, "other"},
			{"a person", pool(t, f.db.URLAs(f.person)), "b2", attempt, "secret"},
		} {
			if tok, err := token(c.pool, c.builder, tk, c.attempt, c.bucket); err == nil {
				t.Errorf("%s got a token (%v)", c.what, tok != nil)
			}
		}
		// A public bucket the build builds against needs none.
		if tok, err := token(builders["b2"], "b2", tk, attempt, "devel"); err != nil || tok != nil {
			t.Errorf("a public bucket: token %v, %v; want none", tok != nil, err)
		}
		// Builders cannot read the tokens' table.
		var n int
		if err := builders["b2"].QueryRow(ctx, `SELECT count(*) FROM kiln.build_repo_token`).Scan(&n); err == nil {
			t.Errorf("a builder reads kiln.build_repo_token (%d rows)", n)
		}
	})

	// When the attempt ends, its token stops working.
	farmtest.Finish(t, builders["b2"], tk, attempt, "succeeded", "")
	if code := get(secretIndex, *tok); code == http.StatusOK {
		t.Fatal("the build's token still reads its bucket after the attempt ended")
	}
	if _, err := token(builders["b2"], "b2", tk, attempt, "secret"); err == nil {
		t.Fatal("a builder got a token for an attempt that ended")
	}
}
