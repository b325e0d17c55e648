package roles_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// The tests in this file are the security findings about builders, each
// replayed by a hostile builder: a session logged in as a builder role
// (member of kiln_builder) with its own registered builder, trying to reach
// what another builder holds or what no builder holds. Since migration 0016
// builders and the janitor change tasks and attempts only through the task
// protocol's functions (kiln.task_*), which check the caller's hold.

// attackFarm is a farm with a person's job of two pending tasks and two
// builder roles, each with its own builder ("one" for b1, "two" for b2).
type attackFarm struct {
	*farm
	alice, b1, b2 string
	job, t1, t2   int64
}

func newAttackFarm(t *testing.T) *attackFarm {
	t.Helper()
	f := &attackFarm{farm: newFarm(t)}
	f.alice = f.login("alice_", "kiln_submitter")
	splitter := f.login("splitter_", "kiln_splitter")
	f.b1, f.b2 = f.login("builder_a", "kiln_builder"), f.login("builder_b", "kiln_builder")
	f.register(f.b1, "one")
	f.register(f.b2, "two")
	f.job = f.submit(f.alice, "public")
	f.t1 = f.task(splitter, f.job)
	f.t2 = f.task(splitter, f.submit(f.alice, "public"))
	return f
}

// storeBlob stores bytes as role, as a builder stores an artifact's bytes,
// and returns their sha256.
func (f *attackFarm) storeBlob(role, content string) []byte {
	f.t.Helper()
	var sum []byte
	if err := f.conn(role).QueryRow(context.Background(), `INSERT INTO kiln.blob (sha256, size, chunk_size, content_sha256, verified_at)
		VALUES (sha256($1::bytea), octet_length($1::bytea), 1, sha256($1::bytea), now()) RETURNING sha256`, content).Scan(&sum); err != nil {
		f.t.Fatalf("storing a blob as %s: %v", role, err)
	}
	return sum
}

// A batch of log writes (kiln.task_log_many) is the attacker's chance to
// slip another builder's attempt, or a finished one, in among its own: each
// batch is checked alone, so only the held attempt's line is stored and
// counted, and malformed batches (arrays out of step, a task twice, a NULL)
// are refused whole, with nothing stored.
func TestAttackLogBatchStoresOnlyHeldAttempts(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	if n := f.take(f.b1, "one", f.t1); n != 1 {
		t.Fatalf("take: attempt %d", n)
	}
	if n := f.take(f.b2, "two", f.t2); n != 1 {
		t.Fatalf("take: attempt %d", n)
	}
	// b2 holds t2; it names b1's attempt of t1 beside its own.
	for seq := range 2 {
		if n := f.int(f.b2, `SELECT count(*) FILTER (WHERE stored AND task_id = $2) * 10 + count(*) FILTER (WHERE NOT stored AND task_id = $1)
			FROM kiln.task_log_many('two', ARRAY[$1::bigint, $2], '{1,1}', ARRAY[$3::integer, $3], '{forged,own}', '{f,t}')`, f.t1, f.t2, seq); n != 11 {
			t.Fatalf("b2's batch naming b1's attempt and its own: own stored*10 + b1's refused = %d, want 11", n)
		}
	}
	if n := f.int("postgres", `SELECT (SELECT count(*) FROM kiln.log_chunk WHERE task_id = $1) * 100
		+ (SELECT count(*) FROM kiln.log_chunk WHERE task_id = $2) * 10
		+ (SELECT log_bytes FROM kiln.attempt WHERE task_id = $2 AND attempt = 1)`, f.t1, f.t2); n != 2*10+6 {
		t.Fatalf("chunks of t1*100 + chunks of t2*10 + t2's log bytes = %d, want none for t1, 2 and 6 bytes for t2", n)
	}
	if n := f.int("postgres", `SELECT count(*) FROM kiln.attempt WHERE task_id = $1 AND log_truncated`, f.t2); n != 1 {
		t.Error("the truncated flag of b2's batch was not kept")
	}
	// In b1's name: refused whole.
	f.refused(f.b2, "is not one of the builders", `SELECT * FROM kiln.task_log_many('one', ARRAY[$1::bigint], '{1}', '{5}', '{forged}', '{f}')`, f.t1)
	// Malformed batches: refused whole, even the held attempt's line.
	for _, sql := range []string{
		`SELECT * FROM kiln.task_log_many('two', ARRAY[$1::bigint], '{1,1}', '{7}', '{x}', '{f}')`,
		`SELECT * FROM kiln.task_log_many('two', ARRAY[$1::bigint, $1], '{1,1}', '{7,8}', '{x,y}', '{f,f}')`,
		`SELECT * FROM kiln.task_log_many('two', ARRAY[$1::bigint], '{1}', '{7}', ARRAY[NULL::text], '{f}')`,
		`SELECT * FROM kiln.task_log_many('two', ARRAY[$1::bigint], '{1}', ARRAY[NULL::integer], '{x}', '{f}')`,
		`SELECT * FROM kiln.task_log_many('two', ARRAY[$1::bigint], '{1}', '{7}', '{x}', NULL)`,
	} {
		f.refusedCode(f.b2, "22023", sql, f.t2)
	}
	// A batch number used before (a replay) is refused whole too.
	f.refusedCode(f.b2, "23505", `SELECT * FROM kiln.task_log_many('two', ARRAY[$1::bigint], '{1}', '{0}', '{replayed}', '{f}')`, f.t2)
	if n := f.int("postgres", `SELECT count(*) FROM kiln.log_chunk WHERE task_id = $1`, f.t2); n != 2 {
		t.Fatalf("t2 has %d log chunks after the refused batches, want 2", n)
	}
}

// Finding: a temporary view named pg_roles saying rolsuper = true shadowed
// pg_catalog.pg_roles inside the transition guard, and a builder moved a
// building task to skipped with attempt 0.
func TestAttackTempPgRolesDoesNotShadowTheGuard(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	splitter := f.login("splitter_", "kiln_splitter")
	if n := f.take(f.b1, "one", f.t1); n != 1 {
		t.Fatalf("take: attempt %d", n)
	}
	// TEMP is revoked from everyone (roles/00-groups.sql); grant it back
	// here so that this wall is tested on its own.
	f.exec("postgres", fmt.Sprintf("GRANT TEMPORARY ON DATABASE %s TO %s, %s",
		pgx.Identifier{f.db.Name}.Sanitize(), f.b1, splitter))
	for _, role := range []string{f.b1, splitter} {
		f.exec(role, `CREATE TEMP VIEW pg_roles AS SELECT current_user::name AS rolname, true AS rolsuper`)
	}
	// The builder's replay: no UPDATE on tasks at all any more.
	f.refused(f.b1, "permission denied", `UPDATE kiln.task SET status = 'skipped', attempt = 0, builder = NULL,
		finished_at = now(), reason = 'x' WHERE id = $1`, f.t1)
	// The guard itself, reached by the one role that still writes tasks:
	// the shadow does not make it think the splitter is a superuser.
	f.refused(splitter, "is not a move", `INSERT INTO kiln.task (job_id, platform, status, finished_at)
		VALUES ($1, 'p1', 'succeeded', now())`, f.submit(f.alice, "public"))
	// Nor do the protocol's functions see the shadow: the take of a
	// building task is still refused, the hold still checked.
	if n := f.take(f.b1, "one", f.t1); n != 0 {
		t.Errorf("a building task was taken again under the shadow")
	}
	if f.finish(f.b2, "two", f.t1, 1, "succeeded") {
		t.Errorf("another builder finished the attempt under the shadow")
	}
	var status string
	var attempt int
	if err := f.conn("postgres").QueryRow(context.Background(), `SELECT status, attempt FROM kiln.task WHERE id = $1`, f.t1).Scan(&status, &attempt); err != nil {
		t.Fatal(err)
	}
	if status != "building" || attempt != 1 {
		t.Fatalf("task %s attempt %d after the attack; want building attempt 1", status, attempt)
	}
}

// Finding: a builder inserted attempts, log rows and artifacts for a task
// that another builder had built.
func TestAttackWritesIntoAnotherBuildersTask(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	if n := f.take(f.b1, "one", f.t1); n != 1 {
		t.Fatalf("take: attempt %d", n)
	}
	if !f.finish(f.b1, "one", f.t1, 1, "succeeded") {
		t.Fatal("b1's finish was refused")
	}
	sum := f.storeBlob(f.b2, "forged package")

	// Directly: no INSERT on any of the tables.
	const denied = "permission denied"
	f.refused(f.b2, denied, `INSERT INTO kiln.attempt (task_id, attempt, builder) VALUES ($1, 2, 'two')`, f.t1)
	f.refused(f.b2, denied, `INSERT INTO kiln.log_chunk (task_id, attempt, seq, data) VALUES ($1, 1, 99, 'forged')`, f.t1)
	f.refused(f.b2, denied, `INSERT INTO kiln.artifact (task_id, attempt, kind, file_name, blob_sha256, size)
		VALUES ($1, 1, 'package', 'evil.rpm', $2, 14)`, f.t1, sum)
	// Through the functions, in its own builder's name or in b1's.
	if f.int(f.b2, `SELECT kiln.task_log('two', $1, 1, 99, 'forged', false)::int`, f.t1) != 0 {
		t.Error("b2 logged into b1's finished attempt")
	}
	if f.int(f.b2, `SELECT kiln.task_finish('two', $1, 1, 'succeeded', NULL, NULL, false,
		'{package}', '{evil.rpm}', ARRAY[$2::bytea], '{14}')::int`, f.t1, sum) != 0 {
		t.Error("b2 added an artifact to b1's finished attempt")
	}
	f.refused(f.b2, "is not one of the builders", `SELECT kiln.task_log('one', $1, 1, 99, 'forged', false)`, f.t1)
	// b1 itself cannot add to its attempt once it is finished.
	if f.int(f.b1, `SELECT kiln.task_log('one', $1, 1, 99, 'late', false)::int`, f.t1) != 0 {
		t.Error("b1 logged into its finished attempt")
	}
	if n := f.int("postgres", `SELECT (SELECT count(*) FROM kiln.attempt WHERE task_id = $1) * 100
		+ (SELECT count(*) FROM kiln.log_chunk WHERE task_id = $1) * 10 + (SELECT count(*) FROM kiln.artifact WHERE task_id = $1)`, f.t1); n != 100 {
		t.Fatalf("task has attempts*100+logs*10+artifacts = %d, want one attempt and nothing else", n)
	}
}

// Finding: a builder marked the attempt of a cancelled task succeeded and
// added an artifact to it, which kiln download then served.
func TestAttackFinishesACancelledTask(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	if n := f.take(f.b1, "one", f.t1); n != 1 {
		t.Fatalf("take: attempt %d", n)
	}
	f.exec(f.alice, `SELECT kiln.cancel_job($1)`, f.job)
	sum := f.storeBlob(f.b1, "package of a cancelled build")

	// The attempt's own builder, and another.
	const denied = "permission denied"
	for _, role := range []string{f.b1, f.b2} {
		f.refused(role, denied, `UPDATE kiln.attempt SET status = 'succeeded' WHERE task_id = $1 AND attempt = 1`, f.t1)
		f.refused(role, denied, `UPDATE kiln.task SET status = 'succeeded' WHERE id = $1`, f.t1)
		f.refused(role, denied, `INSERT INTO kiln.artifact (task_id, attempt, kind, file_name, blob_sha256, size)
			VALUES ($1, 1, 'package', 'x.rpm', $2, 28)`, f.t1, sum)
	}
	if f.int(f.b1, `SELECT kiln.task_finish('one', $1, 1, 'succeeded', NULL, NULL, false,
		'{package}', '{x.rpm}', ARRAY[$2::bytea], '{28}')::int`, f.t1, sum) != 0 {
		t.Error("the cancelled attempt was finished")
	}
	var task, attempt string
	var artifacts int
	if err := f.conn("postgres").QueryRow(context.Background(), `SELECT t.status, a.status, (SELECT count(*) FROM kiln.artifact WHERE task_id = t.id)
		FROM kiln.task t JOIN kiln.attempt a ON a.task_id = t.id AND a.attempt = 1 WHERE t.id = $1`, f.t1).Scan(&task, &attempt, &artifacts); err != nil {
		t.Fatal(err)
	}
	if task != "cancelled" || attempt != "cancelled" || artifacts != 0 {
		t.Fatalf("after the attack: task %s, attempt %s, %d artifacts; want cancelled, cancelled, none", task, attempt, artifacts)
	}
}

// An artifact names bytes that are stored, with their true size: a finish
// cannot point at a blob that is not there or lie about its size.
func TestAttackArtifactMustNameStoredBytes(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	if n := f.take(f.b1, "one", f.t1); n != 1 {
		t.Fatalf("take: attempt %d", n)
	}
	sum := f.storeBlob(f.b1, "twelve bytes")
	f.refusedCode(f.b1, "23503", `SELECT kiln.task_finish('one', $1, 1, 'succeeded', NULL, NULL, false,
		'{package}', '{x.rpm}', ARRAY[$2::bytea], '{999}')`, f.t1, sum)
	f.refusedCode(f.b1, "23503", `SELECT kiln.task_finish('one', $1, 1, 'succeeded', NULL, NULL, false,
		'{package}', '{x.rpm}', ARRAY[sha256('never stored')], '{12}')`, f.t1)
	if f.int(f.b1, `SELECT kiln.task_finish('one', $1, 1, 'succeeded', NULL, NULL, false,
		'{package}', '{x.rpm}', ARRAY[$2::bytea], '{12}')::int`, f.t1, sum) != 1 {
		t.Fatal("a true artifact was refused")
	}
}

// Finding: a builder "squatted" an attempt number on a pending task, so the
// rightful take failed on the primary key.
func TestAttackSquatsAnAttemptNumber(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	for _, n := range []int{1, 2} {
		f.refused(f.b2, "permission denied", `INSERT INTO kiln.attempt (task_id, attempt, builder) VALUES ($1, $2, 'two')`, f.t2, n)
	}
	// No function makes an attempt but the take of a pending task; the
	// squatter's own take is a take, and the next one is refused.
	if n := f.take(f.b1, "one", f.t2); n != 1 {
		t.Fatalf("the rightful take: attempt %d, want 1", n)
	}
	if n := f.take(f.b2, "two", f.t2); n != 0 {
		t.Fatalf("a second take of a building task: attempt %d", n)
	}
	if n := f.int("postgres", `SELECT count(*) FROM kiln.attempt WHERE task_id = $1 AND builder = 'one'`, f.t2); n != 1 {
		t.Fatalf("%d attempts of b1", n)
	}
}

// Finding: a builder set another task's lost_count to 999.
func TestAttackSetsLostCount(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	if n := f.take(f.b1, "one", f.t1); n != 1 {
		t.Fatalf("take: attempt %d", n)
	}
	for _, id := range []int64{f.t1, f.t2} {
		f.refused(f.b2, "permission denied", `UPDATE kiln.task SET lost_count = 999 WHERE id = $1`, id)
	}
	// The one step that counts a loss for a builder, kiln.task_recover,
	// works only on an attempt of the caller's own builder.
	f.refused(f.b2, "is not one of the builders", `SELECT kiln.task_recover('one', $1, 1)`, f.t1)
	if n := f.int(f.b2, `SELECT count(*) FROM kiln.task_recover('two', $1, 1) WHERE outcome IS NOT NULL`, f.t1); n != 0 {
		t.Fatal("b2 recovered b1's attempt")
	}
	if n := f.int("postgres", `SELECT sum(lost_count) FROM kiln.task WHERE id IN ($1, $2)`, f.t1, f.t2); n != 0 {
		t.Fatalf("lost_count moved to %d", n)
	}
}

// The janitor cannot make a builder's moves (take, heartbeat, log, finish,
// give back, recover), nor change tasks and attempts directly; builders and
// people cannot make the janitor's.
func TestAttackJanitorAndBuilderStayInTheirSteps(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	janitor := f.login("janitor_", "kiln_janitor")
	if n := f.take(f.b1, "one", f.t1); n != 1 {
		t.Fatalf("take: attempt %d", n)
	}
	const denied = "permission denied"
	for _, sql := range []string{
		`SELECT kiln.task_take('one', $1, 1, 'p1')`,
		`SELECT kiln.task_heartbeat('one', ARRAY[$1::bigint], '{1}')`,
		`SELECT kiln.task_log('one', $1, 1, 0, 'x', false)`,
		`SELECT kiln.task_log_many('one', ARRAY[$1::bigint], '{1}', '{0}', '{x}', '{f}')`,
		`SELECT kiln.task_finish('one', $1, 1, 'failed', 'x', NULL, false, '{}', '{}', '{}', '{}')`,
		`SELECT kiln.task_give_back('one', $1, 1)`,
		`SELECT kiln.task_recover('one', $1, 1)`,
		`UPDATE kiln.task SET status = 'pending', builder = NULL WHERE id = $1`,
		`UPDATE kiln.attempt SET status = 'lost', finished_at = now() WHERE task_id = $1`,
	} {
		f.refused(janitor, denied, sql, f.t1)
	}
	for _, role := range []string{f.b1, f.alice} {
		f.refused(role, denied, `SELECT kiln.task_take_back_lost($1, '0 s')`, f.t1)
		f.refused(role, denied, `SELECT kiln.task_time_out($1, '0 s')`, f.t1)
		f.refused(role, denied, `SELECT kiln.task_link_river_job($1, 1)`, f.t1)
		f.refused(role, denied, `SELECT kiln.set_max_lost(999)`)
	}
	f.refused(janitor, denied, `SELECT kiln.set_max_lost(999)`)
	// The internal pieces are nobody's.
	for _, role := range []string{f.b1, janitor, f.alice} {
		f.refused(role, denied, `SELECT kiln.task_lose(t, 'x', 'janitor.requeue', 'janitor.lost', '{}') FROM kiln.task t WHERE t.id = $1`, f.t1)
		f.refused(role, denied, `SELECT kiln.task_check_builder('one')`)
	}
	// The janitor's own step works: the attempt is taken back.
	f.exec("postgres", `UPDATE kiln.task SET heartbeat_at = now() - interval '1 hour' WHERE id = $1`, f.t1)
	if n := f.int(janitor, `SELECT count(*) FROM kiln.task_take_back_lost($1, '1 min') WHERE outcome = 'pending'`, f.t1); n != 1 {
		t.Fatal("the janitor could not take back a silent attempt")
	}
}

// Which group roles may execute which protocol function: builders their
// steps, the janitor its steps, admins the limit; nobody else anything.
func TestProtocolFunctionGrants(t *testing.T) {
	t.Parallel()
	f := newFarm(t)
	builderSteps := []string{
		"kiln.task_take(text, bigint, bigint, text)",
		"kiln.task_heartbeat(text, bigint[], integer[])",
		"kiln.task_log(text, bigint, integer, integer, text, boolean)",
		"kiln.task_log_many(text, bigint[], integer[], integer[], text[], boolean[])",
		"kiln.task_finish(text, bigint, integer, text, text, jsonb, boolean, text[], text[], bytea[], bigint[])",
		"kiln.task_give_back(text, bigint, integer)",
		"kiln.task_recover(text, bigint, integer)",
	}
	janitorSteps := []string{
		"kiln.task_take_back_lost(bigint, interval)",
		"kiln.task_time_out(bigint, interval)",
		"kiln.task_link_river_job(bigint, bigint)",
	}
	internal := []string{"kiln.task_lose(kiln.task, text, text, text, jsonb)", "kiln.task_check_builder(text)", "kiln.task_check_janitor()"}
	may := map[string][]string{"kiln_builder": builderSteps, "kiln_janitor": janitorSteps, "kiln_admin": {"kiln.set_max_lost(integer)"}}
	all := append(append(append([]string{"kiln.set_max_lost(integer)"}, builderSteps...), janitorSteps...), internal...)
	for _, group := range groupRoles {
		g := "kiln_" + group
		login := f.login("fn_"+group+"_", g)
		for _, fn := range all {
			want := false
			for _, m := range may[g] {
				want = want || m == fn
			}
			if got := f.int(login, `SELECT has_function_privilege($1, $2, 'EXECUTE')::int`, login, fn) == 1; got != want {
				t.Errorf("%s (a member of %s) may execute %s: %v, want %v", login, g, fn, got, want)
			}
		}
	}
}

// The janitor's one direct write to artifacts is pruning (UPDATE of
// blob_sha256 and pruned_at, internal/janitor/retention.go): it may drop an
// artifact's content, never point it at other bytes (a private job's
// source package, say, which kiln download would then serve with a public
// task) nor bring pruned content back.
func TestAttackJanitorOnlyPrunesArtifacts(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	janitor := f.login("janitor_", "kiln_janitor")
	if n := f.take(f.b1, "one", f.t1); n != 1 {
		t.Fatalf("take: attempt %d", n)
	}
	sum := f.storeBlob(f.b1, "twelve bytes")
	if !f.finishWith(f.b1, "one", f.t1, 1, sum) {
		t.Fatal("finish refused")
	}
	bob := f.login("bob_", "kiln_submitter")
	private := f.submit(bob, "secret")
	secretBlob := `(SELECT blob_sha256 FROM kiln.package WHERE job_id = $2)`
	f.refusedCode(janitor, "42501", `UPDATE kiln.artifact SET blob_sha256 = `+secretBlob+` WHERE task_id = $1`, f.t1, private)
	f.refusedCode(janitor, "42501", `UPDATE kiln.artifact SET blob_sha256 = `+secretBlob+`, pruned_at = now() WHERE task_id = $1`, f.t1, private)
	f.refusedCode(janitor, "42501", `UPDATE kiln.artifact SET pruned_at = now() WHERE task_id = $1`, f.t1)
	// Pruning works, and what is pruned stays pruned.
	if n := f.exec(janitor, `UPDATE kiln.artifact SET blob_sha256 = NULL, pruned_at = now() WHERE task_id = $1`, f.t1); n != 1 {
		t.Fatalf("pruning changed %d artifacts, want 1", n)
	}
	f.refusedCode(janitor, "42501", `UPDATE kiln.artifact SET blob_sha256 = $2 WHERE task_id = $1`, f.t1, sum)
	// (an artifact has content or was pruned: the table's own constraint)
	f.refusedCode(janitor, "23514", `UPDATE kiln.artifact SET pruned_at = NULL WHERE task_id = $1`, f.t1)
	if n := f.int("postgres", `SELECT count(*) FROM kiln.artifact WHERE task_id = $1 AND blob_sha256 IS NULL AND pruned_at IS NOT NULL`, f.t1); n != 1 {
		t.Fatal("the artifact is not pruned")
	}
}

// finishWith ends an attempt as succeeded with one artifact of the
// 12-byte blob sum, as role, and reports whether it was accepted.
func (f *attackFarm) finishWith(role, builder string, task, attempt int64, sum []byte) bool {
	f.t.Helper()
	return f.int(role, `SELECT kiln.task_finish($1, $2, $3, 'succeeded', NULL, NULL, false,
		'{package}', '{x.rpm}', ARRAY[$4::bytea], '{12}')::int`, builder, task, attempt, sum) == 1
}

// A builder works River jobs only in the build queues of its own builders'
// platforms: it cannot complete, cancel, delete or move another platform's
// build River jobs, nor the validate, report or janitor River jobs, and it
// cannot move its own into another queue.
func TestAttackBuilderTouchesOnlyItsOwnRiverJobs(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	ids := map[string]int64{}
	for _, q := range []string{"build-p1", "build-p2", "incoming", "report", "janitor"} {
		ids[q] = f.int("postgres", `INSERT INTO river.river_job (kind, queue, max_attempts, args) VALUES ('probe', $1, 1, '{}') RETURNING id`, q)
	}
	others := []string{"build-p2", "incoming", "report", "janitor"}
	for _, q := range others {
		for _, sql := range []string{
			`UPDATE river.river_job SET state = 'cancelled', finalized_at = now() WHERE id = $1`,
			`UPDATE river.river_job SET args = '{"task_id": 1}' WHERE id = $1`,
			`DELETE FROM river.river_job WHERE id = $1`,
		} {
			if n := f.exec(f.b1, sql, ids[q]); n != 0 {
				t.Errorf("b1 (platform p1): %s changed %d River jobs of queue %s", sql, n, q)
			}
		}
	}
	// Its own queue: River's moves work, a move out of it does not.
	f.refusedCode(f.b1, "42501", `UPDATE river.river_job SET queue = 'incoming' WHERE id = $1`, ids["build-p1"])
	if n := f.exec(f.b1, `UPDATE river.river_job SET state = 'running', attempt = 1, attempted_at = now() WHERE id = $1`, ids["build-p1"]); n != 1 {
		t.Fatalf("b1 could not fetch a River job of its own platform's queue (%d rows)", n)
	}
	if n := f.int("postgres", `SELECT count(*) FROM river.river_job WHERE id = ANY ($1) AND state = 'available' AND args = '{}'`,
		[]int64{ids["build-p2"], ids["incoming"], ids["report"], ids["janitor"]}); n != 4 {
		t.Fatalf("%d of the other queues' River jobs are as they were, want 4", n)
	}
}

// A builder's River fetch runs under row security (river_job_build_work),
// where its non-leakproof comparison of state cannot be an index
// condition: with River's own index only, each fetch read the whole table
// (migration 0039). With many River jobs waiting and many more done, the
// fetch's plan, as a builder makes it, reads the queue's head through
// kiln's index and no River job table scan.
func TestBuilderFetchReadsTheQueueHeadOnly(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	f.exec("postgres", `INSERT INTO river.river_job (kind, queue, max_attempts, args, state, finalized_at)
		SELECT 'build', 'build-p' || (1 + g % 2), 1, '{}',
		       (CASE WHEN g % 3 = 0 THEN 'available' ELSE 'completed' END)::river.river_job_state,
		       CASE WHEN g % 3 = 0 THEN NULL ELSE now() END
		  FROM generate_series(1, 30000) g`)
	f.exec("postgres", `ANALYZE river.river_job`)
	// River's JobGetAvailable (riverpgxv5's dbsqlc), its CTE alone.
	const fetch = `SELECT id FROM river.river_job
		WHERE state = 'available' AND queue = $1::text AND ($2::text[] IS NULL OR kind = ANY ($2::text[]))
		  AND scheduled_at <= coalesce($3::timestamptz, now())
		ORDER BY priority ASC, scheduled_at ASC, id ASC
		LIMIT $4::integer FOR UPDATE SKIP LOCKED`
	conn := f.conn(f.b1)
	for _, mode := range []string{"auto", "force_generic_plan"} {
		if _, err := conn.Exec(context.Background(), "SET plan_cache_mode = "+mode); err != nil {
			t.Fatal(err)
		}
		plan := pgtest.Plan(t, conn, fetch, "build-p1", nil, nil, 10)
		if !strings.Contains(plan, "river_job_kiln_build_fetch_idx") || strings.Contains(plan, "Seq Scan on river_job") || strings.Contains(plan, "Sort") {
			t.Errorf("plan_cache_mode %s: a builder's fetch does not read its queue's head through the index:\n%s", mode, plan)
		}
	}
	// And the fetch still finds only its own queue's River jobs.
	rows, err := conn.Query(context.Background(), fetch, "build-p1", nil, nil, 10)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil || len(ids) != 10 {
		t.Fatalf("the fetch locked %d River jobs (%v), want 10", len(ids), err)
	}
	if n := f.int(f.b1, `SELECT count(*) FROM river.river_job WHERE id = ANY ($1) AND queue = 'build-p1' AND state = 'available'`, ids); n != 10 {
		t.Errorf("%d of the fetched River jobs are build-p1's available ones, want 10", n)
	}
}

// River's completion of a batch (riverpgxv5's JobSetStateIfRunningMany,
// the core of it: an UPDATE joining the batch's ids) probes the primary
// key under the builders' policy, whatever the batch's size, and not read
// every River job: the policy's queues are an array made once per
// statement (migration 0046). With the hashed subquery it had, PostgreSQL
// charged the subquery's start to every probe and planned a sequential
// scan. And the builder still completes only its own queue's River jobs,
// however many others' the batch names.
func TestBuilderCompletionProbesRiverJobsByID(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	f.exec("postgres", `INSERT INTO river.river_job (kind, queue, max_attempts, args, state, attempt, attempted_at, finalized_at)
		SELECT 'build', 'build-p' || (1 + g % 2), 1, '{}',
		       (CASE WHEN g % 5 = 0 THEN 'running' ELSE 'completed' END)::river.river_job_state, 1, now(),
		       CASE WHEN g % 5 = 0 THEN NULL ELSE now() END
		  FROM generate_series(1, 30000) g`)
	f.exec("postgres", `ANALYZE river.river_job`)
	const complete = `WITH job_input AS (
			SELECT unnest($1::bigint[]) AS id, unnest($2::boolean[]) AS metadata_do_merge
		), updated AS (
			UPDATE river.river_job SET state = 'completed', finalized_at = now()
			  FROM job_input
			 WHERE river_job.id = job_input.id AND (river_job.state = 'running' OR job_input.metadata_do_merge)
			RETURNING river_job.id, river_job.queue
		)
		SELECT coalesce(array_agg(id ORDER BY id) FILTER (WHERE queue <> 'build-p1'), '{}'), count(*) FROM updated`
	conn := f.conn(f.b1)
	for _, n := range []int{30, 200} {
		var ids []int64
		if err := f.conn("postgres").QueryRow(context.Background(), `SELECT array_agg(id ORDER BY id) FROM
				(SELECT id FROM river.river_job WHERE state = 'running' ORDER BY id LIMIT $1) r`, n).Scan(&ids); err != nil {
			t.Fatal(err)
		}
		merge := make([]bool, len(ids))
		for _, mode := range []string{"auto", "force_generic_plan"} {
			if _, err := conn.Exec(context.Background(), "SET plan_cache_mode = "+mode); err != nil {
				t.Fatal(err)
			}
			tx, err := conn.Begin(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			plan := pgtest.Plan(t, tx, complete, ids, merge)
			_ = tx.Rollback(context.Background())
			if !strings.Contains(plan, "river_job_pkey") || strings.Contains(plan, "Seq Scan on river_job") {
				t.Errorf("%d River jobs, plan_cache_mode %s: a builder's completion does not probe the primary key:\n%s", n, mode, plan)
			}
		}
		own := f.int("postgres", `SELECT count(*) FROM river.river_job WHERE id = ANY ($1) AND queue = 'build-p1'`, ids)
		var others []int64
		var done int64
		if err := conn.QueryRow(context.Background(), complete, ids, merge).Scan(&others, &done); err != nil {
			t.Fatal(err)
		}
		if len(others) != 0 || done != own || own == 0 || own == int64(n) {
			t.Errorf("of %d running River jobs, %d of them build-p1's, the builder completed %d, others' %v; want all its own, none of the others", n, own, done, others)
		}
	}
}
