package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// TestMistakes walks the mistakes people make on the command line: each
// gets a message saying what is wrong and what to do, and the exit status
// docs/cli.md's table gives for its kind. No message repeats a database
// error with its SQLSTATE.
func TestMistakes(t *testing.T) {
	f, alice := seed(t)
	db := f.DB
	admin := db.URLAs(f.Admin)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Pool.Exec(t.Context(), sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	exec(`INSERT INTO kiln.bucket (name) VALUES ('closed')`)

	dir := t.TempDir()
	srpm := testpkg.SRPM(t, testpkg.Spec{Name: "hello"})
	other := testpkg.SRPM(t, testpkg.Spec{Name: "other"})
	dsc := testpkg.DSC(t, testpkg.Deb{Name: "hello"})
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	empty := write("empty-1-1.src.rpm", nil)
	whole, err := os.ReadFile(srpm)
	if err != nil {
		t.Fatal(err)
	}
	truncated := write("cut-1-1.src.rpm", whole[:len(whole)*2/3])
	tarball := write("hello-1.0.tar.gz", []byte("not a source package"))
	// A job under key k1 with srpm.
	must(t, alice, 0, []string{"submit", "--bucket", "devel", "--platform", farmtest.EL9, "--key", "k1", srpm})

	finished := fmt.Sprint(f.Jobs["succeeded"])
	bobs := fmt.Sprint(f.Jobs["queued"])
	submit := func(args ...string) []string {
		return append([]string{"submit", "--bucket", "devel"}, args...)
	}

	mistakes := []struct {
		name string
		as   string // a database URL; alice's unless set
		args []string
		code int
		says []string
	}{
		// Submitting: refused before the upload, at once.
		{"submit without files", "", submit(), ExitUsage, []string{"give the .src.rpm or .dsc files"}},
		{"submit a missing file", "", submit(filepath.Join(dir, "nosuch-1-1.src.rpm")), ExitUsage, []string{"nosuch-1-1.src.rpm", "no such file"}},
		{"submit a tarball", "", submit(tarball), ExitUsage, []string{"not a source RPM (.src.rpm) or a Debian source package (.dsc)"}},
		{"submit to an unknown bucket", "", []string{"submit", "--bucket", "nosuch", srpm}, ExitNotFound, []string{"bucket nosuch does not exist", "kiln admin bucket list"}},
		{"submit to a malformed bucket name", "", []string{"submit", "--bucket", "Bad Bucket", srpm}, ExitUsage, []string{"--bucket"}},
		{"submit without a grant", "", []string{"submit", "--bucket", "closed", srpm}, ExitPermission, []string{"may not submit to bucket closed", "kiln admin bucket grant closed"}},
		{"submit to an unknown platform", "", submit("--platform", "nosuch", srpm), ExitNotFound, []string{"unknown platform nosuch", "kiln platforms"}},
		{"submit to an inactive platform", "", submit("--platform", farmtest.EL8, srpm), ExitState, []string{"platform " + farmtest.EL8 + " is inactive"}},
		{"submit an SRPM to a deb platform", "", submit("--platform", farmtest.Bookworm, srpm), ExitUsage, []string{"builds deb packages, not"}},
		{"submit mixed formats", "", submit(srpm, dsc), ExitUsage, []string{"mix source RPMs and Debian source packages", "separate jobs"}},
		{"submit an empty SRPM", "", submit(empty), ExitIntegrity, []string{"empty-1-1.src.rpm is empty"}},
		{"submit a truncated SRPM", "", submit(truncated), ExitIntegrity, []string{"cut-1-1.src.rpm is not a readable source RPM"}},
		{"reuse a key for other files", "", submit("--key", "k1", other), ExitState, []string{"submission key k1 was used for job", "give a new --key"}},
		{"a malformed key", "", submit("--key", "no spaces", srpm), ExitUsage, []string{"--key", "letters, digits"}},
		{"priority out of range", "", submit("--priority", "9", srpm), ExitUsage, []string{"--priority 9: use 1 (most urgent) to 4"}},
		{"remove every platform", "", submit("--platform", "!all", srpm), ExitUsage, []string{"!all would remove every platform"}},
		{"the same file twice", "", submit(srpm, srpm), ExitUsage, []string{"have the same name"}},

		// Looking at jobs and tasks.
		{"show a job that does not exist", "", []string{"show", "99999"}, ExitNotFound, []string{"job 99999 does not exist", "kiln jobs"}},
		{"show a malformed job id", "", []string{"show", "abc"}, ExitUsage, []string{"abc"}},
		{"show without a job", "", []string{"show"}, ExitUsage, []string{"expected one"}},
		{"show two jobs", "", []string{"show", "1", "2"}, ExitUsage, []string{"got 2 arguments"}},
		{"jobs with an argument", "", []string{"jobs", "7"}, ExitUsage, []string{"kiln show 7"}},
		{"jobs of an unknown status", "", []string{"jobs", "--status", "nosuch"}, ExitUsage, []string{"nosuch"}},
		{"jobs since a bad time", "", []string{"jobs", "--since", "yesterday"}, ExitUsage, []string{"yesterday"}},
		{"watch a job that does not exist", "", []string{"watch", "99999"}, ExitNotFound, []string{"99999"}},
		{"log a task that does not exist", "", []string{"log", "t99999"}, ExitNotFound, []string{"99999"}},
		{"log without a task", "", []string{"log"}, ExitUsage, []string{"expected one"}},
		{"download a job that does not exist", "", []string{"download", "-o", dir, "99999"}, ExitNotFound, []string{"99999"}},
		{"resubmit a job that does not exist", "", []string{"resubmit", "99999"}, ExitNotFound, []string{"99999"}},
		{"cancel a finished job", "", []string{"cancel", finished}, ExitState, []string{"has already finished"}},
		{"cancel someone else's job", "", []string{"cancel", bobs}, ExitNotFound, []string{"does not exist or is not yours"}},
		{"cancel a task that does not exist", "", []string{"cancel", "t99999"}, ExitNotFound, []string{"does not exist or is not yours"}},
		{"builders with an argument", "", []string{"builders", "b1"}, ExitUsage, []string{"takes no arguments", "\"b1\""}},
		{"queue with an argument", "", []string{"queue", "el9"}, ExitUsage, []string{"takes no arguments"}},
		{"a mistyped command", "", []string{"jbos"}, ExitUsage, []string{`"jbos" is not a command of kiln; did you mean "jobs"?`}},
		{"a mistyped subcommand", "", []string{"admin", "platfrom", "list"}, ExitUsage, []string{`not a command of kiln admin; did you mean "platform"?`}},
		{"an unknown option", "", []string{"jobs", "--nosuch"}, ExitUsage, []string{"nosuch"}},
		{"completion for an unknown shell", "", []string{"completion", "fish"}, ExitUsage, []string{"bash", "zsh"}},
		{"completion for two shells", "", []string{"completion", "bash", "zsh"}, ExitUsage, []string{"one shell"}},
		{"a list of a nested command with an argument", "", []string{"repo", "ls", "devel"}, ExitUsage, []string{"kiln repo ls takes no arguments"}},

		// Administering, as a person who is not an admin.
		{"enable a platform without kiln_admin", "", []string{"admin", "platform", "enable", farmtest.EL8}, ExitPermission, []string{"permission denied", "kiln_admin"}},
		{"add a bucket without kiln_admin", "", []string{"admin", "bucket", "add", "mine"}, ExitPermission, []string{"permission denied", "kiln_admin"}},
		{"disable a builder without kiln_admin", "", []string{"admin", "builder", "disable", "b1"}, ExitPermission, []string{"permission denied"}},

		// Administering, as an admin.
		{"enable an unknown platform", admin, []string{"admin", "platform", "enable", "nosuch"}, ExitNotFound, []string{"platform \"nosuch\" does not exist", "kiln admin platform list"}},
		{"change an unknown platform", admin, []string{"admin", "platform", "set", "nosuch", "--arch", "x86_64"}, ExitNotFound, []string{"does not exist"}},
		{"add a platform of an unknown backend", admin, []string{"admin", "platform", "add", "new", "--arch", "x86_64", "--backend", "nosuch"}, ExitUsage, []string{"unknown backend \"nosuch\"", "rpmbuild"}},
		{"add a platform that exists", admin, []string{"admin", "platform", "add", farmtest.EL9, "--arch", "x86_64", "--backend", "rpmbuild"}, ExitState, []string{"already exists"}},
		{"add a bucket that exists", admin, []string{"admin", "bucket", "add", "devel"}, ExitState, []string{"bucket \"devel\" already exists"}},
		{"grant an unknown bucket", admin, []string{"admin", "bucket", "grant", "nosuch", f.Bob}, ExitNotFound, []string{"bucket \"nosuch\" does not exist", "kiln admin bucket list"}},
		{"grant to an unknown role", admin, []string{"admin", "bucket", "grant", "devel", "nosuch"}, ExitNotFound, []string{"kiln admin person add nosuch"}},
		{"revoke a grant that is not there", admin, []string{"admin", "bucket", "revoke", "devel", f.Bob}, ExitNotFound, []string{"has no grant"}},
		{"disable an unknown builder", admin, []string{"admin", "builder", "disable", "nosuch"}, ExitNotFound, []string{"builder \"nosuch\" does not exist"}},
		{"a builder host in capitals", admin, []string{"admin", "builder-host", "add", "Bad.Host"}, ExitUsage, []string{"lower case", "bad.host"}},
		{"a daemon host of an unknown process", admin, []string{"admin", "daemon-host", "add", "nosuch", "host1"}, ExitUsage, []string{"unknown process \"nosuch\"", "splitter", "publisher"}},
		{"remove a daemon host that is not there", admin, []string{"admin", "daemon-host", "rm", "janitor", "nosuch"}, ExitNotFound, []string{"no login role janitor_nosuch", "kiln admin daemon-host list"}},
		{"roles apply with an argument", admin, []string{"admin", "roles", "apply", "now"}, ExitUsage, []string{"kiln admin roles apply takes no arguments"}},
		{"migrate with an argument", admin, []string{"admin", "migrate", "now"}, ExitUsage, []string{"kiln admin migrate takes no arguments"}},
		{"a person's name in capitals", admin, []string{"admin", "person", "add", "Bob"}, ExitUsage, []string{"lower-case login name"}},
		{"a list with an argument", admin, []string{"admin", "platform", "list", "el9"}, ExitUsage, []string{"takes no arguments"}},
		{"grant with one argument", admin, []string{"admin", "bucket", "grant", "devel"}, ExitUsage, []string{"expected BUCKET and ROLE"}},

		// Connecting.
		{"a database that is not there", "host=/nonexistent dbname=kiln", []string{"jobs"}, ExitConnect, []string{"/nonexistent"}},
	}
	if len(mistakes) < 40 {
		t.Fatalf("only %d mistakes", len(mistakes))
	}
	blobs := func() (n int) {
		t.Helper()
		if err := db.Pool.QueryRow(t.Context(), "SELECT count(*) FROM kiln.blob").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	before := blobs()
	for _, m := range mistakes {
		url := alice
		if m.as != "" {
			url = m.as
		}
		out, code := kilnLine(t, url, m.args...)
		if code != m.code {
			t.Errorf("%s: kiln %s: exit %d, want %d\n%s", m.name, strings.Join(m.args, " "), code, m.code, out)
			continue
		}
		for _, s := range m.says {
			if !strings.Contains(out, s) {
				t.Errorf("%s: kiln %s: output lacks %q:\n%s", m.name, strings.Join(m.args, " "), s, out)
			}
		}
		if strings.Contains(out, "SQLSTATE") {
			t.Errorf("%s: kiln %s: a raw database error:\n%s", m.name, strings.Join(m.args, " "), out)
		}
	}
	// The mistakes exercise every code of docs/cli.md's table from 2 to
	// 7, and the table documents every code they end with.
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[int]bool{}
	for _, m := range regexp.MustCompile(`(?m)^\| (\d+) \| `).FindAllStringSubmatch(string(doc), -1) {
		n, _ := strconv.Atoi(m[1])
		documented[n] = true
	}
	used := map[int]bool{}
	for _, m := range mistakes {
		used[m.code] = true
		if !documented[m.code] {
			t.Errorf("%s: exit %d is not in docs/cli.md's table", m.name, m.code)
		}
	}
	for code := ExitUsage; code <= ExitIntegrity; code++ {
		if !documented[code] || !used[code] {
			t.Errorf("exit %d: documented %v, exercised %v", code, documented[code], used[code])
		}
	}
	// Refused submissions were refused before their upload.
	if after := blobs(); after != before {
		t.Errorf("the mistakes stored %d blobs", after-before)
	}
}

// kilnLine runs the CLI as cmd/kiln does (options anywhere, through
// Interspersed), returning what it printed and its exit status.
func kilnLine(t *testing.T, dbURL string, args ...string) (string, int) {
	t.Helper()
	var out syncBuffer
	app := App()
	app.Writer = &out
	app.ErrWriter = &out
	ordered, err := Interspersed(app, append([]string{"kiln", "--config", "/dev/null", "--db", dbURL}, args...))
	if err == nil {
		err = app.RunContext(t.Context(), ordered)
	}
	if err != nil && err.Error() != "" {
		out.Write([]byte("error: " + err.Error() + "\n"))
	}
	return out.String(), ExitCode(err)
}

// TestInterruptedSubmitExit: Ctrl-C during a submit (its context
// cancelled) exits 130, saying "context canceled" once.
func TestInterruptedSubmitExit(t *testing.T) {
	_, alice := seed(t)
	data := make([]byte, 32<<20)
	for i := range data {
		data[i] = byte(i * 7919 >> 3)
	}
	big := testpkg.SRPM(t, testpkg.Spec{Name: "big", Source: data})
	ctx, cancel := context.WithCancel(t.Context())
	var out syncBuffer
	done := make(chan int, 1)
	go func() { done <- kilnTo(ctx, &out, alice, "submit", "--bucket", "devel", big) }()
	cancel()
	code := <-done
	if code != ExitInterrupted || strings.Count(out.String(), "context canceled") > 1 {
		t.Fatalf("exit %d, want %d:\n%s", code, ExitInterrupted, out.String())
	}
}

// TestFarmWebURL: an admin sets the farm's web address once and every
// client's links use it, unless the person set their own; nobody else may
// set it, and the table refuses what is not an http(s) address even from
// an admin writing SQL.
func TestFarmWebURL(t *testing.T) {
	f, alice := seed(t)
	admin := f.DB.URLAs(f.Admin)
	id := fmt.Sprint(f.Jobs["succeeded"])
	must(t, alice, 0, []string{"show", id}, "http://localhost:8080/jobs/"+id)
	must(t, admin, 0, []string{"admin", "web-url"}, "no web address set")
	must(t, alice, ExitPermission, []string{"admin", "web-url", "https://evil.example.org"}, "permission denied")
	must(t, admin, ExitUsage, []string{"admin", "web-url", "javascript:alert(1)"}, "not an http:// or https:// address")
	must(t, admin, 0, []string{"admin", "web-url", "https://kiln.example.org/"}, "the farm's web address is https://kiln.example.org")
	must(t, admin, 0, []string{"admin", "web-url"}, "https://kiln.example.org\n")
	must(t, alice, 0, []string{"show", id}, "https://kiln.example.org/jobs/"+id)
	must(t, alice, 0, []string{"--web-url", "https://mine.example.org", "show", id}, "https://mine.example.org/jobs/"+id)

	pool, err := pgxpool.New(t.Context(), admin)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	for _, bad := range []string{"javascript:alert(1)", "https://a.example.org/\x1b]0;x\x07", "https://a b"} {
		if _, err := pool.Exec(t.Context(), `UPDATE kiln.farm_setting SET value = $1 WHERE name = 'web_url'`, bad); err == nil {
			t.Errorf("the table took web_url %q", bad)
		}
	}
	if _, err := pool.Exec(t.Context(), `INSERT INTO kiln.farm_setting (name, value) VALUES ('db', 'x')`); err == nil {
		t.Error("the table took an unknown setting")
	}
	alicePool, err := pgxpool.New(t.Context(), alice)
	if err != nil {
		t.Fatal(err)
	}
	defer alicePool.Close()
	if _, err := alicePool.Exec(t.Context(), `UPDATE kiln.farm_setting SET value = 'https://evil.example.org'`); err == nil {
		t.Error("a person changed the farm's web address")
	}
}

// A kiln newer than the database's schema says so and what to do, rather
// than PostgreSQL's "function ... does not exist" with its SQLSTATE: here
// `kiln log -f` against a database without kiln.watch_logs (migration 0037).
func TestOlderSchemaIsNamed(t *testing.T) {
	f, alice := seed(t)
	if _, err := f.DB.Pool.Exec(t.Context(), "DROP FUNCTION kiln.watch_logs(bigint[])"); err != nil {
		t.Fatal(err)
	}
	out, code := kilnLine(t, alice, "log", "-f", fmt.Sprint(f.Tasks["building/"+farmtest.EL9]))
	if code != ExitError || !strings.Contains(out, "kiln schema does not match this kiln") || !strings.Contains(out, "kiln admin migrate") ||
		strings.Contains(out, "SQLSTATE") {
		t.Fatalf("kiln log -f: exit %d\n%s", code, out)
	}
}
