package roles_test

import (
	"context"
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"
)

// TestAttackLogWatch attacks kiln.watch_logs, through which followers make
// a task's log batches send NOTIFY kiln_log (schema/0037_log_watch.sql), as
// a person who may read the farm: the watches themselves are out of reach,
// the function answers alike for a private, a missing and a final task, it
// is bounded, and only a watched task's batches notify, with ids only.
func TestAttackLogWatch(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	bob, dave := f.login("bob_", "kiln_submitter"), f.login("dave_", "kiln_submitter")
	reader, web := f.login("reader_", "kiln_reader"), f.login("web_", "kiln_web")
	splitter, janitor := f.login("splitter_", "kiln_splitter"), f.login("janitor_", "kiln_janitor")
	builder := f.login("builder_", "kiln_builder")
	f.register(builder, "b1")
	private := f.task(splitter, f.submit(bob, "secret"))
	public := f.task(splitter, f.submit(bob, "public"))
	done := f.task(splitter, f.submit(bob, "public"))
	if !f.finish(builder, "b1", done, f.take(builder, "b1", done), "succeeded") {
		t.Fatal("finishing a task failed")
	}

	// The watches are reached only through the function and the trigger.
	for _, role := range []string{bob, dave, reader, web, splitter, janitor, builder} {
		f.refused(role, "permission denied", "SELECT count(*) FROM kiln.log_watch")
		f.refused(role, "permission denied", "INSERT INTO kiln.log_watch VALUES ($1, now() + interval '1 year')", public)
		f.refused(role, "permission denied", "DELETE FROM kiln.log_watch")
	}
	f.refused(builder, "permission denied", "SELECT kiln.watch_logs(ARRAY[$1::bigint])", public)

	// The same answer (none, no error) for someone else's private task, a
	// task that does not exist and a final one; only the private one, not
	// final, is watched, and for a minute at most.
	const missing = 999999999
	for _, id := range []int64{private, missing, done} {
		f.exec(dave, "SELECT kiln.watch_logs(ARRAY[$1::bigint])", id)
	}
	f.exec(dave, "SELECT kiln.watch_logs(NULL)")
	if n := f.int("postgres", "SELECT count(*) FROM kiln.log_watch WHERE task_id = ANY ($1)", []int64{missing, done}); n != 0 {
		t.Errorf("%d watches of a missing or final task", n)
	}
	if n := f.int("postgres", "SELECT count(*) FROM kiln.log_watch WHERE task_id = $1 AND until <= now() + interval '1 minute'", private); n != 1 {
		t.Errorf("the private task has %d watches of a minute at most, want 1", n)
	}
	// Bounded per call.
	f.refusedCode(dave, "54000", "SELECT kiln.watch_logs(array(SELECT generate_series(1, 10001)::bigint))")

	// Only the watched task's batch notifies, with ids only.
	listener := f.login("listener_", "kiln_reader")
	f.exec(listener, "LISTEN kiln_log")
	attempt := f.take(builder, "b1", private)
	other := f.take(builder, "b1", public)
	f.exec(builder, "SELECT kiln.task_log('b1', $1, $2, 0, 'embargoed', false)", private, attempt)
	f.exec(builder, "SELECT kiln.task_log('b1', $1, $2, 0, 'not followed', false)", public, other)
	heard := f.notifications(listener)
	if len(heard) != 1 || heard[0]["task"] != float64(private) {
		t.Fatalf("kiln_log notifications %v, want one, for the watched task %d", heard, private)
	}
	if keys := slices.Sorted(maps.Keys(heard[0])); !slices.Equal(keys, []string{"attempt", "seq", "task"}) {
		t.Errorf("kiln_log payload %v carries more than ids", heard[0])
	}

	// An expired watch notifies no more, and the next watch removes it.
	f.exec("postgres", "UPDATE kiln.log_watch SET until = now() - interval '1 second' WHERE task_id = $1", private)
	f.exec(builder, "SELECT kiln.task_log('b1', $1, $2, 1, 'more', false)", private, attempt)
	if heard := f.notifications(listener); len(heard) != 0 {
		t.Errorf("an expired watch still notified: %v", heard)
	}
	f.exec(dave, "SELECT kiln.watch_logs('{}')")
	if n := f.int("postgres", "SELECT count(*) FROM kiln.log_watch WHERE until < now()"); n != 0 {
		t.Errorf("%d expired watches left after a watch", n)
	}
}

// notifications returns the payloads of the notifications queued for
// role's connection.
func (f *farm) notifications(role string) []map[string]any {
	f.t.Helper()
	f.exec(role, "SELECT 1") // queued notifications arrive with the answer
	var out []map[string]any
	for {
		wctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		n, err := f.conn(role).WaitForNotification(wctx)
		cancel()
		if err != nil {
			return out
		}
		var p map[string]any
		if err := json.Unmarshal([]byte(n.Payload), &p); err != nil {
			f.t.Fatalf("%s payload %q: %v", n.Channel, n.Payload, err)
		}
		out = append(out, p)
	}
}
