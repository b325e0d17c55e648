package cli

import (
	"cmp"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

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

func itoa(id int64) string { return strconv.FormatInt(id, 10) }

func atoi(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("not a job id: %q", s)
	}
	return n
}
