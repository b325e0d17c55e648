package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/internal/testsupport/testpkg"
)

// platform is the one platform of these tests, built with rpmbuild.
const platform = "el9-x86_64"

// farm is a test database with a platform, a bucket and a submitter; the
// daemons run as processes against it, each with its own login role.
type farm struct {
	db     *pgtest.DB
	person string
	roles  int
	// logins holds the login flags of roles that do not log in by trust
	// (Kerberos: see login).
	logins map[string][]string
}

func newFarm(t testing.TB) *farm {
	t.Helper()
	db := pgtest.New(t)
	f := &farm{db: db, logins: map[string][]string{}}
	f.person = farmtest.Person(t, db, "alice", "kiln_submitter")
	farmtest.Platform(t, db.Pool, platform, "x86_64")
	farmtest.Bucket(t, db.Pool, "devel")
	return f
}

func (f *farm) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := f.db.Pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", strings.Join(strings.Fields(sql), " "), err)
	}
}

func (f *farm) scan(t testing.TB, sql string, args []any, dest ...any) {
	t.Helper()
	if err := f.db.Pool.QueryRow(context.Background(), sql, args...).Scan(dest...); err != nil {
		t.Fatalf("%s: %v", strings.Join(strings.Fields(sql), " "), err)
	}
}

// login returns the flags a kiln program takes to log in as role: --db with
// the role's URL (trust), or what f.logins holds for it (Kerberos).
func (f *farm) login(role string) []string {
	if l, ok := f.logins[role]; ok {
		return l
	}
	return []string{"--db", f.db.URLAs(role)}
}

// role creates a login role in group (cluster-wide, so unique per test).
func (f *farm) role(t testing.TB, group string) string {
	t.Helper()
	f.roles++
	prefix := strings.TrimPrefix(group, "kiln_")
	return farmtest.Person(t, f.db, fmt.Sprintf("%s%d", prefix, f.roles), group)
}

// submit submits an SRPM as the person, splits the job into its task and
// enqueues the task's build River job, as kiln submit and the splitter do.
func (f *farm) submit(t testing.TB, srpm string) (job, task int64) {
	t.Helper()
	data, err := os.ReadFile(srpm)
	if err != nil {
		t.Fatal(err)
	}
	p := f.db.Pool
	job = farmtest.Submit(t, p, f.person, "devel", []string{platform}, farmtest.File{Name: filepath.Base(srpm), Data: data})
	task = farmtest.Split(t, p, job, platform)[0]
	farmtest.Enqueue(t, p, task)
	return job, task
}

// startBuilder runs kiln-builder as role with quick heartbeats (well under
// the janitor's 3 s horizon in these tests).
func (f *farm) startBuilder(t testing.TB, name, role string, extra ...string) *proc {
	t.Helper()
	work := filepath.Join(t.TempDir(), "work")
	// The build user (builds never run as root) must reach the work directory.
	if err := os.MkdirAll(work, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{filepath.Dir(work), filepath.Dir(filepath.Dir(work))} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return f.startBuilderIn(t, name, role, work, extra...)
}

// startBuilderIn is startBuilder with a given work directory (a restarted
// builder keeps its own).
func (f *farm) startBuilderIn(t testing.TB, name, role, work string, extra ...string) *proc {
	t.Helper()
	args := append(f.login(role), "--name", name, "--platform", platform, "--workdir", work,
		"--heartbeat", "500ms", "--grace", "1s")
	args = append(args, extra...)
	return startProc(t, name, binary(t, "kiln-builder"), args...)
}

// startJanitor runs kiln-janitor as role with fast flags: a task is lost
// after 3 s without a heartbeat, rounds come every second, and a build
// runs at most its platform's timeout plus 1 s.
func (f *farm) startJanitor(t testing.TB, role string, extra ...string) *proc {
	t.Helper()
	args := append(f.login(role), "--horizon", "3s", "--interval", "1s", "--timeout-grace", "1s")
	return startProc(t, role, binary(t, "kiln-janitor"), append(args, extra...)...)
}

// startReporter runs kiln-reporter as role, with a mail server that is not
// there (its deliveries wait; docs/reports.md).
func (f *farm) startReporter(t testing.TB, role string, extra ...string) *proc {
	t.Helper()
	args := append(f.login(role), "--smtp", "127.0.0.1:1", "--from", "kiln@kiln.test")
	return startProc(t, role, binary(t, "kiln-reporter"), append(args, extra...)...)
}

// startPublisher runs kiln-publisher as role, with a GnuPG home of its own
// (short, for gpg-agent's socket path) and a quick poll.
func (f *farm) startPublisher(t testing.TB, role string, extra ...string) *proc {
	t.Helper()
	home, err := os.MkdirTemp("", "kg") // mode 0700, as the publisher requires
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		exec.Command("gpgconf", "--homedir", home, "--kill", "all").Run() //nolint:errcheck
		os.RemoveAll(home)
	})
	args := append(f.login(role), "--gnupghome", home, "--workdir", filepath.Join(t.TempDir(), "work"), "--poll", "1s")
	return startProc(t, role, binary(t, "kiln-publisher"), append(args, extra...)...)
}

// startSplitter runs kiln-splitter as role.
func (f *farm) startSplitter(t testing.TB, role string, extra ...string) *proc {
	t.Helper()
	return startProc(t, role, binary(t, "kiln-splitter"), append(f.login(role), extra...)...)
}

// startWeb runs kiln-web as role on a free port of 127.0.0.1 and returns it
// with its address (http://127.0.0.1:PORT).
func (f *farm) startWeb(t testing.TB, role string, extra ...string) (*proc, string) {
	t.Helper()
	args := append(f.login(role), "--listen", "127.0.0.1:0")
	p := startProc(t, role, binary(t, "kiln-web"), append(args, extra...)...)
	p.waitLog(t, "kiln-web listening")
	m := regexp.MustCompile(`url=(http://127\.0\.0\.1:\d+)`).FindStringSubmatch(p.output())
	if m == nil {
		t.Fatalf("kiln-web logged no address:\n%s", p.output())
	}
	return p, m[1]
}

// attemptRow is one line of a task's history.
type attemptRow struct {
	Attempt int
	Builder string
	Status  string
}

func (f *farm) attempts(t testing.TB, task int64) []attemptRow {
	t.Helper()
	rows, err := f.db.Pool.Query(context.Background(), `SELECT attempt, builder, status FROM kiln.attempt
		WHERE task_id = $1 ORDER BY attempt`, task)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[attemptRow])
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// task is what the tests check of a task row.
type task struct {
	Status    string
	Attempt   int
	Builder   *string
	LostCount int
	Reason    *string
}

func (f *farm) task(t testing.TB, id int64) task {
	t.Helper()
	var r task
	f.scan(t, `SELECT status, attempt, builder, lost_count, reason FROM kiln.task WHERE id = $1`, []any{id},
		&r.Status, &r.Attempt, &r.Builder, &r.LostCount, &r.Reason)
	return r
}

// count runs a count(*) query.
func (f *farm) count(t testing.TB, sql string, args ...any) int {
	t.Helper()
	var n int
	f.scan(t, sql, args, &n)
	return n
}

// waitTask waits until the task has one of the statuses and returns it.
func (f *farm) waitTask(t testing.TB, id int64, statuses ...string) task {
	t.Helper()
	var r task
	waitFor(t, fmt.Sprintf("task %d to become %v", id, statuses), func() bool {
		r = f.task(t, id)
		for _, s := range statuses {
			if r.Status == s {
				return true
			}
		}
		return false
	})
	return r
}

// waitBuilding waits until the task's attempt n is building on builder
// and its log shows line.
func (f *farm) waitBuilding(t testing.TB, id int64, attempt int, builder, line string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("task %d attempt %d building on %s with %q in its log", id, attempt, builder, line), func() bool {
		var n int
		_ = f.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM kiln.task t JOIN kiln.log_chunk l
			ON l.task_id = t.id AND l.attempt = t.attempt
			WHERE t.id = $1 AND t.attempt = $2 AND t.builder = $3 AND t.status = 'building' AND l.data LIKE '%' || $4 || '%'`,
			id, attempt, builder, line).Scan(&n)
		return n > 0
	})
}

// waitFor polls until cond holds. The deadline is generous: it is not a
// timing check, only a guard against hanging forever.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// hangingFirstAttempt makes an SRPM whose build hangs on attempt 1 (a
// sleep of marker seconds, a number no other process uses, so its
// processes can be found in /proc) and builds at once on later attempts.
// The build tells its attempt from $KILN_REPO, which the builder sets to
// WORKDIR/task-<task>-<attempt>/repo.
func hangingFirstAttempt(t testing.TB, name, marker string) string {
	t.Helper()
	return testpkg.SRPM(t, testpkg.Spec{Name: name, Build: `case "$KILN_REPO" in */task-*-1/repo) echo SLEEPING-NOW; sleep ` +
		marker + `;; esac; echo built ` + name + ` > ` + name + `.txt`})
}

// quick makes an SRPM that builds at once.
func quick(t testing.TB, name string) string {
	t.Helper()
	return testpkg.SRPM(t, testpkg.Spec{Name: name})
}

// proc is a daemon running as a child process; its output is kept.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error // set when done is closed

	mu  sync.Mutex
	out bytes.Buffer
}

// Write collects the process's stdout and stderr.
func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// startProc starts a daemon; it is killed when the test ends, and its
// output is logged when the test failed.
func startProc(t testing.TB, name, bin string, args ...string) *proc {
	t.Helper()
	return startProcEnv(t, name, nil, bin, args...)
}

// startProcEnv is startProc with env added to the test's environment.
func startProcEnv(t testing.TB, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	return startCmd(t, name, cmd)
}

// startCmd is startProc for a command made by the caller.
func startCmd(t testing.TB, name string, cmd *exec.Cmd) *proc {
	t.Helper()
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if !p.exited() {
			_ = p.cmd.Process.Signal(syscall.SIGCONT)
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("--- output of %s (%s):\n%s", name, filepath.Base(cmd.Path), p.output())
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// waitLog waits until the process's output holds text.
func (p *proc) waitLog(t testing.TB, text string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to log %q", p.name, text), func() bool {
		if p.exited() {
			t.Fatalf("%s exited (%v) while waiting for %q", p.name, p.err, text)
		}
		return strings.Contains(p.output(), text)
	})
}

// waitLogCount waits until the process's output holds text n times.
func (p *proc) waitLogCount(t testing.TB, text string, n int) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s to log %q %d times", p.name, text, n), func() bool {
		if p.exited() {
			t.Fatalf("%s exited (%v) while waiting for %q", p.name, p.err, text)
		}
		return strings.Count(p.output(), text) >= n
	})
}

func (p *proc) signal(t testing.TB, sig syscall.Signal) {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: %v: %v", p.name, sig, err)
	}
}

// exitCode waits for the process to end by itself and returns its exit
// status.
func (p *proc) exitCode(t testing.TB) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(3 * time.Minute):
		t.Fatalf("%s did not exit; output:\n%s", p.name, p.output())
	}
	var exit *exec.ExitError
	if errors.As(p.err, &exit) {
		return exit.ExitCode()
	}
	if p.err != nil {
		t.Fatalf("%s: %v", p.name, p.err)
	}
	return 0
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill(t testing.TB) {
	t.Helper()
	p.signal(t, syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	p.signal(t, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("%s did not stop on SIGTERM", p.name)
	}
	if p.err != nil {
		t.Fatalf("%s exited with %v after SIGTERM", p.name, p.err)
	}
}
