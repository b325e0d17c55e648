package janitor

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/riverjob"
)

// fetchedBy plays River fetching a validate River job for client: running,
// attempt n, attempted by client.
func (b *bundle) fetchedBy(t *testing.T, riverJobID int64, client string, n int) {
	t.Helper()
	b.exec(t, `UPDATE river.river_job SET state = 'running', attempt = $3, attempted_at = now(),
		attempted_by = array_append(attempted_by, $2) WHERE id = $1`, riverJobID, client, n)
}

// holdLock takes the lock of River client id on a new connection as role,
// as a splitter does (riverjob.HoldClientLock), and returns the connection.
func (b *bundle) holdLock(t *testing.T, role, id string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(b.ctx, b.db.URLAs(role))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(b.ctx) })
	held, err := riverjob.HoldClientLock(b.ctx, conn, id)
	if err != nil || !held {
		t.Fatalf("taking the lock of %s as %s: held %v, %v", id, role, held, err)
	}
	return conn
}

func (b *bundle) riverState(t *testing.T, id int64) (state string, errs int) {
	t.Helper()
	b.scan(t, `SELECT state::text, coalesce(array_length(errors, 1), 0) FROM river.river_job WHERE id = $1`, []any{id}, &state, &errs)
	return state, errs
}

// A splitter's running validate River job stays with it while a session of
// a kiln_splitter member holds its client's lock, and is made available
// again in the first round after that session ended. A lock taken by a
// session of another role (a submitter forging a splitter's lock to keep a
// dead splitter's job from being taken over) does not count; River clients
// without the splitter prefix (older splitters) are left to the validate
// horizon; a River job on its last attempt is discarded.
func TestDeadSplitterValidationIsTakenOver(t *testing.T) {
	t.Parallel()
	b := setup(t, testConfig())
	splitter := loginRole(t, b.db, "splitter", "kiln_splitter")
	submitter := loginRole(t, b.db, "submitter", "kiln_submitter")

	alive := riverjob.NewSplitterID() + ".alive"
	dead := riverjob.NewSplitterID() + ".dead"
	forged := riverjob.NewSplitterID() + ".forged"
	last := riverjob.NewSplitterID() + ".last"
	_, aliveRJ := b.submitted(t, "1 second")
	deadJob, deadRJ := b.submitted(t, "1 second")
	_, forgedRJ := b.submitted(t, "1 second")
	_, oldRJ := b.submitted(t, "1 second")
	_, lastRJ := b.submitted(t, "1 second")
	b.fetchedBy(t, aliveRJ, alive, 1)
	b.fetchedBy(t, deadRJ, dead, 1)
	b.fetchedBy(t, forgedRJ, forged, 2)
	b.fetchedBy(t, oldRJ, "splitter-host_2026_01_01T00_00_00_000000", 1) // River's own ID
	b.fetchedBy(t, lastRJ, last, 10)                                     // MaxAttempts of validate
	b.holdLock(t, splitter, alive)
	deadConn := b.holdLock(t, splitter, dead)
	b.holdLock(t, submitter, forged)

	c := b.round(t, Upkeep)
	if c.ValidationsTakenOver != 2 {
		t.Fatalf("counts %+v, want 2 validations taken over (forged, last)", c)
	}
	for id, want := range map[int64]string{aliveRJ: "running", deadRJ: "running", forgedRJ: "available", oldRJ: "running", lastRJ: "discarded"} {
		if got, _ := b.riverState(t, id); got != want {
			t.Errorf("River job %d is %s, want %s", id, got, want)
		}
	}

	// The splitter dies: its session ends with it, and with it the lock.
	if err := deadConn.Close(b.ctx); err != nil {
		t.Fatal(err)
	}
	waitGone(t, b, dead)
	c = b.round(t, Upkeep)
	if c.ValidationsTakenOver != 1 {
		t.Fatalf("counts %+v after the splitter died, want 1 validation taken over", c)
	}
	if state, errs := b.riverState(t, deadRJ); state != "available" || errs != 1 {
		t.Fatalf("dead splitter's River job: %s with %d errors, want available with 1", state, errs)
	}
	if state, _ := b.riverState(t, aliveRJ); state != "running" {
		t.Fatalf("the live splitter's River job is %s", state)
	}
	evs := b.events(t, "janitor.takeover")
	if len(evs) != 3 {
		t.Fatalf("%d janitor.takeover events, want 3: %v", len(evs), evs)
	}
	ev := evs[2]
	detail := ev["detail"].(map[string]any)
	if ev["job_id"] != float64(deadJob) || detail["client"] != dead || detail["river_job_state"] != "available" || ev["actor"] != b.role {
		t.Fatalf("takeover event %v", ev)
	}
	// The job itself is untouched: the next splitter validates it.
	var status string
	b.scan(t, `SELECT status FROM kiln.job WHERE id = $1`, []any{deadJob}, &status)
	if status != "submitted" {
		t.Fatalf("job %d is %s", deadJob, status)
	}
}

// waitGone waits until the server has ended the session that held the lock
// of River client id (a closed connection's backend exits at once, but not
// synchronously with the client's close).
func waitGone(t *testing.T, b *bundle, id string) {
	t.Helper()
	for range 100 {
		var n int
		b.scan(t, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 1
			AND ((classid::int8 << 32) | objid::int8) = hashtextextended('kiln-river-client:' || $1, 0)`, []any{id}, &n)
		if n == 0 {
			return
		}
		b.exec(t, `SELECT pg_sleep(0.05)`)
	}
	t.Fatalf("the lock of %s is still held", id)
}
