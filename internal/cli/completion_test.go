package cli

import (
	"cmp"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/admin"
	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// complete runs kiln as the bash completion script does (the words so far,
// then --generate-bash-completion) and returns the words it offers. urfave
// reads the words being completed from os.Args, so the test sets it, and
// cannot run in parallel with tests that read it.
func complete(t *testing.T, dbURL string, words ...string) []string {
	t.Helper()
	args := append([]string{"kiln", "--db", dbURL}, words...)
	args = append(args, "--generate-bash-completion")
	saved := os.Args
	os.Args = args
	defer func() { os.Args = saved }()
	out, err := run(t, dbURL, append(words, "--generate-bash-completion")...)
	if err != nil {
		t.Fatalf("completing %q: %v\n%s", words, err, out)
	}
	return strings.Fields(out)
}

// TestCompletion: job commands offer the visible jobs' ids, newest first,
// platform commands the platform names; a word starting with "-" still
// gets the command's flags, and a command whose one argument is there
// gets nothing more. A farm that cannot be reached gets no words and no
// error.
func TestCompletion(t *testing.T) {
	db := pgtest.New(t)
	f := farmtest.Seed(t, db)
	url := db.URLAs(f.Admin)
	var jobs []string
	for _, id := range f.Jobs {
		jobs = append(jobs, itoa(id))
	}
	for _, words := range [][]string{{"show"}, {"watch"}, {"cancel"}, {"cancel", itoa(f.Jobs["queued"])}, {"download"}, {"resubmit"}} {
		got := complete(t, url, words...)
		if len(got) != len(jobs) {
			t.Errorf("kiln %s <TAB>: %q, want the %d job ids", strings.Join(words, " "), got, len(jobs))
			continue
		}
		for _, j := range jobs {
			if !slices.Contains(got, j) {
				t.Errorf("kiln %s <TAB>: %q lacks job %s", strings.Join(words, " "), got, j)
			}
		}
		if !slices.IsSortedFunc(got, func(a, b string) int { return cmp.Compare(atoi(t, b), atoi(t, a)) }) {
			t.Errorf("kiln %s <TAB>: %q not newest first", strings.Join(words, " "), got)
		}
	}
	platforms := []string{farmtest.Bookworm, farmtest.EL8, farmtest.EL9}
	for _, words := range [][]string{{"admin", "platform", "enable"}, {"admin", "platform", "disable"}} {
		got := complete(t, url, words...)
		for _, p := range platforms {
			if !slices.Contains(got, p) {
				t.Errorf("kiln %s <TAB>: %q lacks platform %s", strings.Join(words, " "), got, p)
			}
		}
	}
	if got := complete(t, url, "admin", "platform", "add"); slices.Contains(got, farmtest.EL9) {
		t.Errorf("kiln admin platform add <TAB> offers existing platforms for a new name: %q", got)
	}
	if got := complete(t, url, "show", "1"); len(got) != 0 {
		t.Errorf("kiln show 1 <TAB>: %q, want nothing (show takes one job)", got)
	}
	if got := complete(t, url, "show", "--j"); !slices.Contains(got, "--json") {
		t.Errorf("kiln show --j <TAB>: %q lacks --json", got)
	}
	if got := complete(t, "postgres://nobody@127.0.0.1:1/nothing?connect_timeout=1", "show"); len(got) != 0 {
		t.Errorf("completion without a farm: %q, want nothing", got)
	}
}

// completeWord is complete as kiln's completion scripts run it, with the
// word being completed in KILN_COMPLETE_WORD (not among words: the scripts
// pass a word being completed only when it starts with "-").
func completeWord(t *testing.T, dbURL, word string, words ...string) []string {
	t.Helper()
	t.Setenv("KILN_COMPLETE_WORD", word)
	return complete(t, dbURL, words...)
}

// TestFlagValueCompletion: a flag's value is completed with what the farm
// has (platforms, buckets: read from a real database as the person) or the
// flag's fixed choices, wherever the flag stands, for global flags too;
// submit --bucket offers only the buckets the person may submit to; a list
// flag's next item keeps what was typed before its comma; a word that is
// a flag's name still gets flags, and a positional argument after a bool
// flag gets values, not flags. An unreachable farm gets nothing.
func TestFlagValueCompletion(t *testing.T) {
	db := pgtest.New(t)
	f := farmtest.Seed(t, db)
	ctx := t.Context()
	for _, sql := range []string{
		`INSERT INTO kiln.bucket (name, open) VALUES ('stable', false), ('embargo', false)`,
		`INSERT INTO kiln.bucket_grant (bucket, grantee) VALUES ('stable', '` + f.Alice + `')`,
	} {
		if _, err := db.Pool.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	alice, ada := db.URLAs(f.Alice), db.URLAs(f.Admin)
	platforms := []string{farmtest.Bookworm, farmtest.EL8, farmtest.EL9}
	statuses := []string{}
	for _, s := range task.JobStatuses() {
		statuses = append(statuses, string(s))
	}
	sorted := func(words []string) []string { return slices.Sorted(slices.Values(words)) }
	for _, c := range []struct {
		url, word string
		words     []string
		want      []string
	}{
		{alice, "", []string{"submit", "--platform"}, append(platforms, "all")},
		{alice, "", []string{"submit", "x.src.rpm", "-p"}, append(platforms, "all")},
		{alice, "el9", []string{"submit", "--bucket", "devel", "--platform"}, append(platforms, "all")},
		{alice, farmtest.EL9 + ",", []string{"submit", "--platform"}, []string{
			farmtest.EL9 + "," + farmtest.Bookworm, farmtest.EL9 + "," + farmtest.EL8, farmtest.EL9 + "," + farmtest.EL9, farmtest.EL9 + ",all"}},
		{alice, "!", []string{"submit", "--platform"}, []string{"!" + farmtest.Bookworm, "!" + farmtest.EL8, "!" + farmtest.EL9, "!all"}},
		{alice, "", []string{"jobs", "--platform"}, platforms},
		{alice, "", []string{"download", "--platform"}, platforms},
		{alice, "", []string{"queue", "--platform"}, platforms},
		{alice, "", []string{"submit", "--bucket"}, []string{"devel", "stable"}},
		{ada, "", []string{"submit", "--bucket"}, []string{"devel", "embargo", "stable"}},
		{alice, "", []string{"jobs", "--bucket"}, []string{"devel", "embargo", "stable"}},
		{alice, "", []string{"promote", "--to"}, []string{"devel", "embargo", "stable"}},
		{ada, "", []string{"admin", "bucket", "set", "--build-against"}, []string{"devel", "embargo", "stable"}},
		{alice, "", []string{"jobs", "--status"}, statuses},
		{alice, "", []string{"--color"}, []string{"always", "auto", "never"}},
		{alice, "", []string{"jobs", "--color"}, []string{"always", "auto", "never"}},
		{ada, "", []string{"admin", "platform", "add", "--backend"}, sorted(slices.Collect(maps.Keys(admin.Backends)))},
		{ada, "", []string{"admin", "platform", "add", "--format"}, []string{"deb", "rpm"}},
		{ada, "", []string{"admin", "bucket", "set", "--publish-policy"}, []string{"none", "per_task", "whole_job"}},
		{alice, "", []string{"submit", "--priority"}, []string{"1", "2", "3", "4"}},
		// A flag's name being completed: flags, not values.
		{alice, "--platform", []string{"submit", "--platform"}, nil},
		{alice, "--pl", []string{"submit", "--pl"}, []string{"--platform"}},
		// A flag without known values offers none.
		{alice, "", []string{"submit", "--key"}, nil},
	} {
		got := completeWord(t, c.url, c.word, c.words...)
		if !slices.Equal(sorted(got), sorted(c.want)) {
			t.Errorf("kiln %s <TAB> (word %q): %q, want %q", strings.Join(c.words, " "), c.word, got, c.want)
		}
	}
	// After a bool flag, a job command still offers jobs.
	if got := completeWord(t, alice, "", "show", "--json"); len(got) == 0 || slices.Contains(got, "--json") {
		t.Errorf("kiln show --json <TAB>: %q, want job ids", got)
	}
	if got := completeWord(t, "postgres://nobody@127.0.0.1:1/nothing?connect_timeout=1", "", "submit", "--platform"); len(got) != 0 {
		t.Errorf("completion without a farm: %q, want nothing", got)
	}
}

func itoa(id int64) string { return strconv.FormatInt(id, 10) }

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("not a job id: %q", s)
	}
	return n
}
