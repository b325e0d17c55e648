package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// run executes the kiln CLI with args against db and returns its output.
func run(t *testing.T, dbURL string, args ...string) (string, error) {
	t.Helper()
	app := App()
	var out bytes.Buffer
	app.Writer = &out
	app.ErrWriter = &out
	app.ExitErrHandler = func(*cli.Context, error) {}
	err := app.RunContext(context.Background(), append([]string{"kiln", "--db", dbURL}, args...))
	return out.String(), err
}

func TestAdminPlatformsBucketsBuilders(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t)

	mustRun := func(want string, args ...string) string {
		t.Helper()
		out, err := run(t, db.URL, args...)
		if err != nil {
			t.Fatalf("kiln %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		if !strings.Contains(out, want) {
			t.Fatalf("kiln %s: output %q lacks %q", strings.Join(args, " "), out, want)
		}
		return out
	}
	mustFail := func(want string, args ...string) {
		t.Helper()
		out, err := run(t, db.URL, args...)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("kiln %s: got %v (%s), want error containing %q", strings.Join(args, " "), err, out, want)
		}
	}

	mustRun("up to date", "admin", "migrate")
	mustRun("added platform el9-x86_64", "admin", "platform", "add", "--arch", "x86_64", "--backend", "rpmbuild", "el9-x86_64")
	mustRun("added platform bookworm-amd64 (amd64, deb", "admin", "platform", "add", "--arch", "amd64", "--backend", "dpkg", "--timeout", "3h", "bookworm-amd64")
	mustFail("already exists", "admin", "platform", "add", "--arch", "x86_64", "--backend", "rpmbuild", "el9-x86_64")
	mustFail("not valid", "admin", "platform", "add", "--arch", "x86_64", "--backend", "rpmbuild", "EL9 x86")
	mustFail("unknown backend", "admin", "platform", "add", "--arch", "x86_64", "--backend", "docker", "el10")
	mustFail("builds rpm packages, not deb", "admin", "platform", "add", "--arch", "x86_64", "--backend", "mock", "--format", "deb", "el10")
	mustFail("JSON object", "admin", "platform", "add", "--arch", "x86_64", "--backend", "mock", "--settings", "[1]", "el10")

	mustRun("platform el9-x86_64 disabled", "admin", "platform", "disable", "el9-x86_64")
	mustFail("does not exist", "admin", "platform", "enable", "el42")
	mustRun("updated", "admin", "platform", "set", "--timeout", "30m", "--description", "fast", "el9-x86_64")
	mustFail("builds deb packages, not rpm", "admin", "platform", "set", "--backend", "dpkg", "el9-x86_64")
	retries := func() (n int, backoff float64) {
		t.Helper()
		if err := db.Pool.QueryRow(context.Background(), `SELECT max_infra_retries, extract(epoch FROM infra_retry_backoff)::float8
			FROM kiln.platform WHERE name = 'el9-x86_64'`).Scan(&n, &backoff); err != nil {
			t.Fatal(err)
		}
		return n, backoff
	}
	mustRun("updated", "admin", "platform", "set", "--max-infra-retries", "5", "--infra-retry-backoff", "2m", "el9-x86_64")
	if n, b := retries(); n != 5 || b != 120 {
		t.Errorf("after --max-infra-retries 5 --infra-retry-backoff 2m: %d retries, %gs backoff", n, b)
	}
	mustRun("updated", "admin", "platform", "set", "--max-infra-retries", "0", "el9-x86_64")
	if n, b := retries(); n != 0 || b != 120 {
		t.Errorf("after --max-infra-retries 0 alone: %d retries, %gs backoff (want 0 and the backoff kept)", n, b)
	}
	mustFail("between 0 (no retries) and 100, not 101", "admin", "platform", "set", "--max-infra-retries", "101", "el9-x86_64")
	mustFail("between 0 (no retries) and 100, not -1", "admin", "platform", "set", "--max-infra-retries", "-1", "el9-x86_64")
	mustFail("between 0s and 24h", "admin", "platform", "set", "--infra-retry-backoff", "25h", "el9-x86_64")
	mustFail("does not exist", "admin", "platform", "set", "--max-infra-retries", "2", "el42")

	out := mustRun("el9-x86_64", "admin", "platform", "list", "--json")
	var ps []map[string]any
	if err := json.Unmarshal([]byte(out), &ps); err != nil {
		t.Fatalf("platform list --json: %v\n%s", err, out)
	}
	if len(ps) != 2 || ps[1]["name"] != "el9-x86_64" || ps[1]["active"] != false || ps[1]["timeout_seconds"] != 1800.0 || ps[1]["description"] != "fast" {
		t.Fatalf("platform list --json: %v", ps)
	}
	if ps[0]["timeout_seconds"] != 10800.0 {
		t.Fatalf("bookworm timeout: %v", ps[0]["timeout_seconds"])
	}

	mustRun("added bucket devel", "admin", "bucket", "add", "--open", "devel")
	mustFail("already exists", "admin", "bucket", "add", "devel")
	mustFail("not valid", "admin", "bucket", "add", "Dev/el")
	mustFail("does not exist", "admin", "bucket", "grant", "devel", "nobody_like_this")
	mustRun("postgres may now submit to bucket devel", "admin", "bucket", "grant", "devel", "postgres")
	mustRun("devel   no       yes   default    postgres", "admin", "bucket", "list")
	mustRun("no longer", "admin", "bucket", "revoke", "devel", "postgres")
	mustFail("has no grant", "admin", "bucket", "revoke", "devel", "postgres")
	mustRun("added bucket stable", "admin", "bucket", "add", "--publish-policy", "per_task", "--sign-packages", "--keep-snapshots", "5", "stable")
	mustFail("does not exist", "admin", "bucket", "add", "--build-against", "nosuch", "testing")
	mustRun("added bucket testing", "admin", "bucket", "add", "--build-against", "stable", "testing")
	mustRun("bucket devel updated", "admin", "bucket", "set", "--build-against", "testing, stable", "devel")
	mustFail("cannot build against itself", "admin", "bucket", "set", "--build-against", "devel", "devel")
	mustFail("named twice", "admin", "bucket", "set", "--build-against", "stable,stable", "devel")
	mustFail(`bucket "nosuch" does not exist`, "admin", "bucket", "set", "--keep-snapshots", "3", "nosuch")
	mustFail("not one of whole_job", "admin", "bucket", "set", "--publish-policy", "sometimes", "devel")
	mustFail("between 1 and 100000", "admin", "bucket", "set", "--keep-snapshots", "0", "devel")
	mustFail("nothing to change", "admin", "bucket", "set", "devel")
	mustRun("stable   no       no    default              per_task   yes   5     -", "admin", "bucket", "list")
	out = mustRun(`"build_against"`, "admin", "bucket", "list", "--json")
	var bs []map[string]any
	if err := json.Unmarshal([]byte(out), &bs); err != nil {
		t.Fatalf("bucket list --json: %v\n%s", err, out)
	}
	if len(bs) != 3 || fmt.Sprint(bs[0]["build_against"]) != "[testing stable]" || bs[1]["sign_packages"] != true ||
		bs[1]["keep_snapshots"] != 5.0 || bs[1]["publish_policy"] != "per_task" || fmt.Sprint(bs[2]["build_against"]) != "[stable]" {
		t.Fatalf("bucket list --json: %v", bs)
	}
	mustRun("bucket devel updated", "admin", "bucket", "set", "--build-against", "", "--sign-packages=false", "devel")
	mustRun("devel    no       yes   default              whole_job  no    30    -", "admin", "bucket", "list")

	mustFail("does not exist", "admin", "builder", "disable", "b1")
	if _, err := db.Pool.Exec(context.Background(), `INSERT INTO kiln.builder (name, host, slots) VALUES ('b1', 'h1', 4);
		INSERT INTO kiln.builder_platform VALUES ('b1', 'el9-x86_64')`); err != nil {
		t.Fatal(err)
	}
	mustRun("builder b1 disabled", "admin", "builder", "disable", "b1")
	mustRun("b1       h1    offline  no", "admin", "builder", "list")
	mustFail("expected one builder name", "admin", "builder", "enable")
}
