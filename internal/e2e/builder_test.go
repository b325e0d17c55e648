package e2e

import (
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/proctest"
)

// kilnAdmin runs the kiln command as an admin role.
func (f *farm) kilnAdmin(t testing.TB, role string, args ...string) {
	t.Helper()
	out, err := exec.Command(binary(t, "kiln"), append([]string{"--db", f.db.URLAs(role)}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("kiln %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// A builder disabled with kiln admin builder disable finishes what it runs,
// takes no new task (not even fetching its River job) while another builder
// does, and takes tasks again once enabled.
func TestDisabledBuilderTakesNoNewTasks(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	admin := f.role(t, "kiln_admin")
	// Two slots: a free slot would take a new task at once if the switch
	// were not honoured.
	a := f.startBuilder(t, "da", f.role(t, "kiln_builder"), "--slots", "2")
	_, running := f.submit(t, hangingFirstAttempt(t, "kiln-running", "4"))
	f.waitBuilding(t, running, 1, "da", "SLEEPING-NOW")

	f.kilnAdmin(t, admin, "admin", "builder", "disable", "da")
	a.waitLog(t, "builder disabled")
	_, waiting := f.submit(t, quick(t, "kiln-waiting"))

	// The running build finishes on the disabled builder.
	if got := f.waitTask(t, running, "succeeded", "failed", "timed_out"); got.Status != "succeeded" {
		t.Fatalf("running task %+v", got)
	}
	if got := f.task(t, waiting); got.Status != "pending" {
		t.Fatalf("the task submitted after disabling is %+v; want pending", got)
	}
	// Another builder builds it.
	b := f.startBuilder(t, "db", f.role(t, "kiln_builder"))
	if got := f.waitTask(t, waiting, "succeeded", "failed", "timed_out"); got.Status != "succeeded" {
		t.Fatalf("waiting task %+v", got)
	}
	if h := f.attempts(t, waiting); !reflect.DeepEqual(h, []attemptRow{{1, "db", "succeeded"}}) {
		t.Fatalf("attempts %+v; want one by db", h)
	}
	// River never handed it to the disabled builder's client either.
	if n := f.count(t, `SELECT count(*) FROM kiln.task t JOIN river.river_job r ON r.id = t.river_job_id
		WHERE t.id = $1 AND EXISTS (SELECT 1 FROM unnest(r.attempted_by) c WHERE c LIKE 'kiln-builder.da.%')`, waiting); n != 0 {
		t.Fatal("the disabled builder fetched the River job")
	}

	f.kilnAdmin(t, admin, "admin", "builder", "enable", "da")
	a.waitLog(t, "builder enabled")
	b.stop(t)
	_, next := f.submit(t, quick(t, "kiln-next"))
	if got := f.waitTask(t, next, "succeeded", "failed", "timed_out"); got.Status != "succeeded" {
		t.Fatalf("task after enabling %+v", got)
	}
	if h := f.attempts(t, next); !reflect.DeepEqual(h, []attemptRow{{1, "da", "succeeded"}}) {
		t.Fatalf("attempts %+v; want one by da", h)
	}
}

// A builder restarted after a crash gives back at once the tasks its
// previous run left building (no janitor runs here): attempt lost, task
// built again, or ended as lost past the database's max_lost. A second daemon started
// with the name of a live one leaves that one's tasks alone.
func TestRestartedBuilderGivesBackItsTasks(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	role := f.role(t, "kiln_builder")
	a := f.startBuilder(t, "ra", role, "--slots", "2")
	work := a.cmd.Args[indexOf(a.cmd.Args, "--workdir")+1]
	marker := proctest.SleepMarker()
	_, again := f.submit(t, hangingFirstAttempt(t, "kiln-again", marker))
	_, doomed := f.submit(t, hangingFirstAttempt(t, "kiln-doomed", marker))
	f.waitBuilding(t, again, 1, "ra", "SLEEPING-NOW")
	f.waitBuilding(t, doomed, 1, "ra", "SLEEPING-NOW")
	// doomed was lost once before; with max_lost 1 this loss ends it.
	f.exec(t, `UPDATE kiln.task SET lost_count = 1 WHERE id = $1`, doomed)
	f.exec(t, `SELECT kiln.set_max_lost(1)`)

	// A second daemon with the same name: it cannot get the name's lock
	// and so gives back nothing of the live one's.
	dup := f.startBuilderIn(t, "ra", role, filepath.Join(t.TempDir(), "dup"))
	dup.waitLog(t, "another session holds this builder name's lock")
	dup.waitLog(t, "builder ready")
	for _, id := range []int64{again, doomed} {
		if got := f.task(t, id); got.Status != "building" || got.Attempt != 1 {
			t.Fatalf("task %d %+v after a duplicate started; want still building attempt 1", id, got)
		}
	}
	dup.kill(t)

	a.kill(t)
	proctest.NoLeftovers(t, "sleep "+marker)
	f.startBuilderIn(t, "ra", role, work)

	if got := f.waitTask(t, again, "succeeded", "failed", "timed_out", "lost"); got.Status != "succeeded" || got.LostCount != 1 {
		t.Fatalf("task %+v; want succeeded after one loss", got)
	}
	if h := f.attempts(t, again); !reflect.DeepEqual(h, []attemptRow{{1, "ra", "lost"}, {2, "ra", "succeeded"}}) {
		t.Fatalf("attempts %+v", h)
	}
	got := f.waitTask(t, doomed, "lost", "succeeded", "pending")
	if got.Status != "lost" || got.LostCount != 2 || got.Reason == nil || !strings.Contains(*got.Reason, "restarted") {
		t.Fatalf("doomed task %+v; want lost twice, ended", got)
	}
	if h := f.attempts(t, doomed); !reflect.DeepEqual(h, []attemptRow{{1, "ra", "lost"}}) {
		t.Fatalf("doomed attempts %+v", h)
	}
	if n := f.count(t, `SELECT count(*) FROM kiln.task t JOIN river.river_job r ON r.id = t.river_job_id
		WHERE t.id = $1 AND r.state = 'cancelled'`, doomed); n != 1 {
		t.Fatal("the doomed task's River job was not cancelled")
	}
	if n := f.count(t, `SELECT count(*) FROM kiln.event WHERE kind = 'builder.recover' AND actor = $1
		AND task_id = ANY($2) AND attempt = 1`, role, []int64{again, doomed}); n != 2 {
		t.Fatalf("%d builder.recover events by %s, want 2", n, role)
	}
	if n := f.count(t, `SELECT count(*) FROM kiln.event WHERE kind LIKE 'janitor.%'`); n != 0 {
		t.Fatalf("%d janitor events, but no janitor runs", n)
	}
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

// A builder that starts disabled takes nothing: River never even hands it
// the waiting task's River job. Enabled, it builds it.
func TestBuilderStartedDisabled(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	admin := f.role(t, "kiln_admin")
	role := f.role(t, "kiln_builder")
	first := f.startBuilder(t, "sd", role)
	first.waitLog(t, "builder ready")
	first.stop(t)
	f.kilnAdmin(t, admin, "admin", "builder", "disable", "sd")
	_, task := f.submit(t, quick(t, "kiln-held"))

	a := f.startBuilder(t, "sd", role)
	a.waitLog(t, "builder disabled")
	// Let it heart-beat a few times: time enough to take the task if it
	// wrongly would.
	var beats []string
	waitFor(t, "three heartbeats", func() bool {
		var at string
		f.scan(t, `SELECT heartbeat_at::text FROM kiln.builder WHERE name = 'sd'`, nil, &at)
		if len(beats) == 0 || beats[len(beats)-1] != at {
			beats = append(beats, at)
		}
		return len(beats) > 3
	})
	if got := f.task(t, task); got.Status != "pending" {
		t.Fatalf("task %+v while its only builder is disabled; want pending", got)
	}
	if n := f.count(t, `SELECT count(*) FROM kiln.task t JOIN river.river_job r ON r.id = t.river_job_id
		WHERE t.id = $1 AND r.state = 'available' AND r.attempted_by IS NULL`, task); n != 1 {
		t.Fatal("the River job was fetched by a disabled builder")
	}

	f.kilnAdmin(t, admin, "admin", "builder", "enable", "sd")
	if got := f.waitTask(t, task, "succeeded", "failed", "timed_out"); got.Status != "succeeded" {
		t.Fatalf("task %+v after enabling", got)
	}
}
