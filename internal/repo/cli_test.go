package repo_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	kilncli "github.com/kiln-build/kiln/internal/cli"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

func kiln(t testing.TB, url string, args ...string) (string, error) {
	t.Helper()
	app := kilncli.App()
	var out bytes.Buffer
	app.Writer, app.ErrWriter = &out, &out
	app.ExitErrHandler = func(*cli.Context, error) {}
	ordered, err := kilncli.Interspersed(app, append([]string{"kiln", "--db", url}, args...))
	if err != nil {
		return "", err
	}
	err = app.RunContext(context.Background(), ordered)
	return out.String(), err
}

// kiln repo and kiln promote, as a person with a grant on the buckets.
func TestRepoCommands(t *testing.T) {
	t.Parallel()
	f := setup(t)
	farmtest.Bucket(t, f.db.Pool, "testing")
	job := f.job(t, "devel", debArtifact(t, "hello-kiln", "1.0"), nil)
	f.job(t, "devel", debArtifact(t, "other", "2.0"), nil)
	f.publish(t)
	url := f.db.URLAs(f.person)
	mustKiln := func(want string, args ...string) string {
		t.Helper()
		out, err := kiln(t, url, args...)
		if err != nil || !strings.Contains(out, want) {
			t.Fatalf("kiln %s: %v\n%s (want %q)", strings.Join(args, " "), err, out, want)
		}
		return out
	}
	mustKiln("devel   bookworm-amd64  2", "repo", "ls")
	mustKiln("hello-kiln", "repo", "show", "devel")
	mustKiln("*", "repo", "snapshots", "devel")
	if out, err := kiln(t, url, "promote", "1", "--to", "testing"); err == nil {
		t.Fatalf("promoted without a grant: %s", out)
	}
	if out, err := kiln(t, url, "repo", "rm", "devel", "other"); err == nil {
		t.Fatalf("removed without a grant: %s", out)
	}
	for _, b := range []string{"devel", "testing"} {
		_, err := f.db.Pool.Exec(context.Background(), `INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ($1, $2)`, b, f.person)
		must(t, err)
	}
	mustKiln("queued", "promote", itoa(job), "--to", "testing")
	mustKiln("queued", "repo", "rm", "devel", "other")
	f.publish(t)
	mustKiln("testing  bookworm-amd64  1", "repo", "ls")
	if out := mustKiln("hello-kiln", "repo", "show", "devel"); strings.Contains(out, "other") {
		t.Fatalf("kiln repo rm left the package:\n%s", out)
	}

	dir := t.TempDir()
	mustKiln("wrote", "repo", "export", "devel", dir)
	_, served := f.get(t, "/repos/devel/bookworm-amd64/dists/devel/InRelease")
	exported, err := os.ReadFile(filepath.Join(dir, "bookworm-amd64/dists/devel/InRelease"))
	must(t, err)
	if !bytes.Equal(served, exported) {
		t.Fatal("the exported InRelease differs from the served one")
	}
	if _, err := os.Stat(filepath.Join(dir, "bookworm-amd64/pool/main/h/hello-kiln/hello-kiln_1.0_amd64.deb")); err != nil {
		t.Fatal(err)
	}
	mustKiln("password", "repo", "token")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
