package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// kiln runs the kiln command as a person would, with env added to the
// test's environment, and returns its output (stdout and stderr) and exit
// status.
func kiln(t testing.TB, env []string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(binary(t, "kiln"), args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		t.Fatalf("kiln %s: %v", strings.Join(args, " "), err)
	}
	return string(out), 0
}

// submittedJob reads the job id from kiln submit's output.
func submittedJob(t testing.TB, out string) int64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^job (\d+) submitted`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("kiln submit printed no job id:\n%s", out)
	}
	id, _ := strconv.ParseInt(m[1], 10, 64)
	return id
}

// taskOf waits for the splitter to split job and returns its one task.
func (f *farm) taskOf(t testing.TB, job int64) int64 {
	t.Helper()
	var id int64
	waitFor(t, "the splitter to split the job", func() bool {
		return f.count(t, `SELECT count(*) FROM kiln.task WHERE job_id = $1`, job) == 1
	})
	f.scan(t, `SELECT id FROM kiln.task WHERE job_id = $1`, []any{job}, &id)
	return id
}

// gate is a file a build waits for before it goes on, so that a test sees
// what it must see while the build is certainly still running, with no
// reliance on timing. A build sees nothing of the host but its own work
// directory, so the gate is a file named name that open puts into the
// work directory of every build of the test's builders (below the test's
// t.TempDir, matched by glob); the build waits for it in $HOME, its work
// directory.
type gate struct{ name, glob string }

func newGate(t testing.TB) gate {
	t.Helper()
	// t.TempDir makes os.TempDir()/<test name><random>/<nnn>/.
	return gate{name: "kiln-gate-" + strconv.Itoa(os.Getpid()),
		glob: filepath.Join(os.TempDir(), t.Name()+"*", "*", "work", "task-*", "build")}
}

func (g gate) open(t testing.TB) {
	t.Helper()
	dirs, _ := filepath.Glob(g.glob)
	if len(dirs) == 0 {
		t.Fatalf("no build's work directory matches %s", g.glob)
	}
	for _, d := range dirs {
		if err := os.WriteFile(filepath.Join(d, g.name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// gatedSRPM makes an SRPM whose build prints "line 1" and "line 2", waits
// for the gate, then prints "line 3" to "line 5" a little apart.
func gatedSRPM(t testing.TB, name string, g gate) string {
	t.Helper()
	return testpkg.SRPM(t, testpkg.Spec{Name: name, Build: `set +x
echo "line 1: configuring ` + name + `"
echo "line 2: compiling ` + name + `.c"
while [ ! -e "$HOME/` + g.name + `" ]; do sleep 0.1; done
for i in 3 4 5; do echo "line $i: linking step $i"; sleep 0.2; done
echo built ` + name + ` > ` + name + `.txt`})
}

// hasLine reports whether out holds a whole line starting with prefix.
func hasLine(out, prefix string) bool {
	return regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(prefix)).MatchString(out)
}

// kiln watch and kiln log -f follow a job built by real kiln-splitter and
// kiln-builder daemons: log -f prints the build's lines while it runs and
// exits when the task ends; watch prints the transitions as they happen
// and exits 0 for a job that succeeded, 1 for one that failed.
//
// The builder has one slot. The first job's build waits at a gate after
// two lines, so the test sees them while the task is certainly building;
// the second job (a package whose build fails) waits behind it, so its
// watch sees it pending, building and failing live.
func TestWatchAndFollowLiveBuild(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	f.startSplitter(t, f.role(t, "kiln_splitter"))
	f.startBuilder(t, "fb", f.role(t, "kiln_builder"))
	g := newGate(t)
	as := f.login(f.person)

	out, code := kiln(t, nil, append(as, "submit", "--bucket", "devel", "--platform", platform, gatedSRPM(t, "kiln-slow", g))...)
	if code != 0 {
		t.Fatalf("kiln submit: exit %d\n%s", code, out)
	}
	good := submittedJob(t, out)
	task := f.taskOf(t, good)

	kilnBin := binary(t, "kiln")
	follow := startProc(t, "kiln log -f", kilnBin, append(as, "log", "-f", "t"+strconv.FormatInt(task, 10))...)
	watch := startProc(t, "kiln watch good", kilnBin, append(as, "watch", strconv.FormatInt(good, 10))...)

	// The lines come while the build runs: the build cannot end before the
	// gate opens.
	waitFor(t, "kiln log -f to print line 2", func() bool { return hasLine(follow.output(), "line 2: compiling") })
	// The second job is submitted only now, while the only slot is busy:
	// submitted together, the splitter's workers could split it first and
	// the builder take it first.
	out, code = kiln(t, nil, append(as, "submit", "--bucket", "devel", "--platform", platform,
		testpkg.SRPM(t, testpkg.Spec{Name: "kiln-broken", Build: `echo "cc: error: broken.c: no such file"; exit 1`}))...)
	if code != 0 {
		t.Fatalf("kiln submit: exit %d\n%s", code, out)
	}
	bad := submittedJob(t, out)
	badTask := f.taskOf(t, bad)
	watchBad := startProc(t, "kiln watch bad", kilnBin, append(as, "watch", strconv.FormatInt(bad, 10))...)
	if got := f.task(t, task); got.Status != "building" {
		t.Fatalf("task %+v when kiln log -f printed line 2; want building", got)
	}
	if !hasLine(follow.output(), "--- attempt 1 on fb ---") || !hasLine(follow.output(), "line 1: configuring") {
		t.Fatalf("kiln log -f so far:\n%s", follow.output())
	}
	if follow.exited() {
		t.Fatalf("kiln log -f exited while the task builds:\n%s", follow.output())
	}
	waitFor(t, "kiln watch to show the task building", func() bool { return strings.Contains(watch.output(), " building on fb (attempt 1)") })
	waitFor(t, "kiln watch to show the second job waiting", func() bool { return strings.Contains(watchBad.output(), " pending") })
	if watch.exited() || watchBad.exited() {
		t.Fatalf("kiln watch exited before its job ended:\n%s\n%s", watch.output(), watchBad.output())
	}
	g.open(t)

	if code := follow.exitCode(t); code != 0 {
		t.Fatalf("kiln log -f: exit %d\n%s", code, follow.output())
	}
	if got := f.task(t, task); got.Status != "succeeded" {
		t.Fatalf("task %+v when kiln log -f ended; want succeeded", got)
	}
	log := follow.output()
	last := -1
	for _, l := range []string{"line 1:", "line 2:", "line 3:", "line 4:", "line 5:"} {
		i := strings.Index(log, "\n"+l)
		if i <= last {
			t.Fatalf("kiln log -f: %q missing or out of order:\n%s", l, log)
		}
		last = i
	}

	if code := watch.exitCode(t); code != 0 {
		t.Fatalf("kiln watch of a job that succeeded: exit %d\n%s", code, watch.output())
	}
	// The job's line and its task's come in either order.
	inOrder(t, "kiln watch", watch.output(), " building on fb (attempt 1)", "t"+strconv.FormatInt(task, 10)+" "+platform+" succeeded after ")
	inOrder(t, "kiln watch", watch.output(), " building on fb (attempt 1)", "job "+strconv.FormatInt(good, 10)+" succeeded")

	if code := watchBad.exitCode(t); code != 1 {
		t.Fatalf("kiln watch of a job that failed: exit %d, want 1\n%s", code, watchBad.output())
	}
	ref := "t" + strconv.FormatInt(badTask, 10) + " " + platform
	inOrder(t, "kiln watch", watchBad.output(), ref+" pending", ref+" building on fb (attempt 1)", ref+" failed")
	inOrder(t, "kiln watch", watchBad.output(), ref+" building on fb (attempt 1)", "job "+strconv.FormatInt(bad, 10)+" failed")
}

// inOrder fails unless out holds each of parts, in order.
func inOrder(t testing.TB, what, out string, parts ...string) {
	t.Helper()
	rest := out
	for _, p := range parts {
		i := strings.Index(rest, p)
		if i < 0 {
			t.Fatalf("%s output lacks %q (in order %q):\n%s", what, p, parts, out)
		}
		rest = rest[i+len(p):]
	}
}
