package roles_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"
)

// The set-based steps (kiln.task_take_many, kiln.task_finish_many): a
// builder takes and finishes several tasks in one statement. Replayed by a
// hostile builder, a batch must not become a way to take or finish in
// another builder's name, to write anything of an attempt the caller does
// not hold by slipping it in beside one it does hold, to attach an artifact
// to a task the batch does not finish, or to leave half a batch written
// when one item is bad.

// finishMany finishes attempt 1 of each task as succeeded through
// kiln.task_finish_many, as role in builder's name, each with the log tail
// "end of TASK" and one artifact "out.rpm" whose bytes are data (its task
// artTasks[i], defaulting to the tasks themselves); it returns finished per
// task.
func (f *attackFarm) finishMany(role, builder string, tasks []int64, artTasks []int64, data [][]byte) ([]bool, error) {
	n := len(tasks)
	attempts, statuses, reasons, infos, truncated, stages := make([]int32, n), make([]string, n), make([]*string, n),
		make([]*string, n), make([]bool, n), make([]*string, n)
	seqs, tails := make([]int32, n), make([]string, n)
	for i := range tasks {
		attempts[i], statuses[i], tails[i] = 1, "succeeded", "end of "+string(rune('a'+i))+"\n"
	}
	if artTasks == nil {
		artTasks = tasks
	}
	kinds, names, sums, sizes := make([]string, len(data)), make([]string, len(data)), make([][]byte, len(data)), make([]*int64, len(data))
	for i := range data {
		kinds[i], names[i] = "package", "out.rpm"
	}
	rows, err := f.conn(role).Query(context.Background(), `SELECT finished FROM kiln.task_finish_many($1, $2, $3, $4, $5, $6::jsonb[],
		$7, $8, $9, $10, $11, $12, $13, $14, $15, $16)`,
		builder, tasks, attempts, statuses, reasons, infos, truncated, stages, seqs, tails, artTasks, kinds, names, sums, sizes, data)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []bool
	for rows.Next() {
		var done bool
		if err := rows.Scan(&done); err != nil {
			return nil, err
		}
		out = append(out, done)
	}
	return out, rows.Err()
}

func TestAttackBatchTakesAndFinishesOnlyWhatIsHeld(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	splitter := f.login("splitter_", "kiln_splitter")
	t3 := f.task(splitter, f.submit(f.alice, "public"))
	jobOf := func(task int64) int64 {
		return f.int("postgres", `SELECT job_id FROM kiln.task WHERE id = $1`, task)
	}
	events := func(task int64) int64 {
		return f.int("postgres", `SELECT count(*) FROM kiln.event WHERE task_id = $1`, task)
	}

	// Takes. In another builder's name: refused outright.
	f.refused(f.b2, "is not one of the builders", `SELECT * FROM kiln.task_take_many('one', ARRAY[$1::bigint], ARRAY[$2::bigint], ARRAY['p1'])`,
		f.t1, jobOf(f.t1))
	// A task twice, arrays of different lengths, a NULL: refused.
	f.refusedCode(f.b1, "22023", `SELECT * FROM kiln.task_take_many('one', ARRAY[$1::bigint, $1], ARRAY[$2::bigint, $2], ARRAY['p1', 'p1'])`,
		f.t1, jobOf(f.t1))
	f.refusedCode(f.b1, "22023", `SELECT * FROM kiln.task_take_many('one', ARRAY[$1::bigint], ARRAY[$2::bigint, $2], ARRAY['p1'])`,
		f.t1, jobOf(f.t1))
	f.refusedCode(f.b1, "22023", `SELECT * FROM kiln.task_take_many('one', ARRAY[$1::bigint, NULL], ARRAY[$2::bigint, $2], ARRAY['p1', 'p1'])`,
		f.t1, jobOf(f.t1))
	// A task named with another job's id, beside a true one: the true one
	// is taken, the other stays pending.
	var outcomes []string
	rows, err := f.conn(f.b1).Query(context.Background(), `SELECT outcome FROM kiln.task_take_many('one', ARRAY[$1::bigint, $2], ARRAY[$3::bigint, $3], ARRAY['p1', 'p1'])`,
		f.t1, f.t2, jobOf(f.t1))
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var o string
		if err := rows.Scan(&o); err != nil {
			t.Fatal(err)
		}
		outcomes = append(outcomes, o)
	}
	if rows.Err() != nil || len(outcomes) != 2 || outcomes[0] != "taken" || outcomes[1] != "not_pending" {
		t.Fatalf("take of t1 and of t2 under t1's job: %v, %v", outcomes, rows.Err())
	}
	if s, _, _, _ := f.taskState(f.t2); s != "pending" {
		t.Fatalf("t2, named under another job, is %s", s)
	}
	if n := f.take(f.b2, "two", f.t2); n != 1 {
		t.Fatalf("b2's take of t2: attempt %d", n)
	}
	if n := f.take(f.b1, "one", t3); n != 1 {
		t.Fatalf("b1's take of t3: attempt %d", n)
	}
	t2Events := events(f.t2)

	data := [][]byte{[]byte("t1's package"), []byte("bytes b1 would like stored as t2's package")}
	// nothingWritten checks that tasks have no log and no artifacts and
	// that no blob holds any of blobs.
	nothingWritten := func(when string, blobs [][]byte, tasks ...int64) {
		t.Helper()
		for _, task := range tasks {
			for what, n := range map[string]int64{
				"log chunks": f.int("postgres", `SELECT count(*) FROM kiln.log_chunk WHERE task_id = $1`, task),
				"artifacts":  f.int("postgres", `SELECT count(*) FROM kiln.artifact WHERE task_id = $1`, task),
				"log bytes":  f.int("postgres", `SELECT coalesce(sum(log_bytes), 0) FROM kiln.attempt WHERE task_id = $1`, task),
			} {
				if n != 0 {
					t.Errorf("%s: task %d has %d %s", when, task, n, what)
				}
			}
		}
		for _, d := range blobs {
			sum := sha256.Sum256(d)
			if n := f.int("postgres", `SELECT count(*) FROM kiln.blob WHERE sha256 = $1 OR content_sha256 = $1`, sum[:]); n != 0 {
				t.Errorf("%s: %d blobs of %q", when, n, d)
			}
		}
	}

	// Finishes. In another builder's name: refused outright.
	if _, err := f.finishMany(f.b2, "one", []int64{f.t1}, nil, data[:1]); err == nil {
		t.Error("b2 finished in the name of b1's builder")
	}
	// An artifact said to belong to a task the batch does not finish
	// (b2's t2, beside b1's own t1): the whole call is refused.
	if _, err := f.finishMany(f.b1, "one", []int64{f.t1}, []int64{f.t1, f.t2}, data); err == nil {
		t.Error("b1 attached an artifact to a task its batch does not finish")
	}
	// One bad item refuses the whole batch: t3's artifact bytes do not
	// have the size given, and t1, good, is not finished either.
	f.refusedCode(f.b1, "22023", `SELECT * FROM kiln.task_finish_many('one', ARRAY[$1::bigint, $2], ARRAY[1, 1], ARRAY['succeeded', 'succeeded'],
		ARRAY[NULL, NULL]::text[], ARRAY[NULL, NULL]::jsonb[], ARRAY[false, false], ARRAY[NULL, NULL]::text[], ARRAY[0, 0], ARRAY['a', 'b'],
		ARRAY[$1::bigint, $2], ARRAY['package', 'package'], ARRAY['a.rpm', 'b.rpm'], ARRAY[NULL, NULL]::bytea[], ARRAY[NULL, 7]::bigint[],
		ARRAY[$3::bytea, $4])`, f.t1, t3, data[0], data[1])
	// A task twice, a status a builder may not give, a stage on a success,
	// arrays of different lengths.
	for _, q := range []string{
		`SELECT * FROM kiln.task_finish_many('one', ARRAY[$1::bigint, $1], ARRAY[1, 1], ARRAY['succeeded', 'succeeded'], ARRAY[NULL, NULL]::text[],
			ARRAY[NULL, NULL]::jsonb[], ARRAY[false, false], ARRAY[NULL, NULL]::text[], ARRAY[NULL, NULL]::integer[], ARRAY[NULL, NULL]::text[],
			'{}', '{}', '{}', '{}', '{}', NULL)`,
		`SELECT * FROM kiln.task_finish_many('one', ARRAY[$1::bigint], ARRAY[1], ARRAY['lost'], ARRAY[NULL]::text[], ARRAY[NULL]::jsonb[],
			ARRAY[false], ARRAY[NULL]::text[], ARRAY[NULL]::integer[], ARRAY[NULL]::text[], '{}', '{}', '{}', '{}', '{}', NULL)`,
		`SELECT * FROM kiln.task_finish_many('one', ARRAY[$1::bigint], ARRAY[1], ARRAY['succeeded'], ARRAY[NULL]::text[], ARRAY[NULL]::jsonb[],
			ARRAY[false], ARRAY['build'], ARRAY[NULL]::integer[], ARRAY[NULL]::text[], '{}', '{}', '{}', '{}', '{}', NULL)`,
		`SELECT * FROM kiln.task_finish_many('one', ARRAY[$1::bigint], ARRAY[1, 2], ARRAY['succeeded'], ARRAY[NULL]::text[], ARRAY[NULL]::jsonb[],
			ARRAY[false], ARRAY[NULL]::text[], ARRAY[NULL]::integer[], ARRAY[NULL]::text[], '{}', '{}', '{}', '{}', '{}', NULL)`,
	} {
		f.refusedCode(f.b1, "22023", q, f.t1)
	}
	nothingWritten("after the refused batches", data, f.t1, f.t2, t3)
	for _, task := range []int64{f.t1, t3} {
		if s, _, _, b := f.taskState(task); s != "building" || b != "one" {
			t.Fatalf("task %d after the refused batches: %s by %q", task, s, b)
		}
	}

	// b1's own t1 beside b2's t2, each with its log's end and an
	// artifact: t1 finishes, nothing of t2 is written and t2 still builds
	// on two.
	done, err := f.finishMany(f.b1, "one", []int64{f.t1, f.t2}, nil, data)
	if err != nil || len(done) != 2 || !done[0] || done[1] {
		t.Fatalf("b1 finishing t1 and b2's t2: %v, %v", done, err)
	}
	nothingWritten("after b1's batch", data[1:], f.t2)
	if s, a, _, b := f.taskState(f.t2); s != "building" || a != 1 || b != "two" {
		t.Errorf("t2 after b1's batch: %s attempt %d by %q", s, a, b)
	}
	if n := events(f.t2); n != t2Events {
		t.Errorf("b1's batch recorded %d events of t2", n-t2Events)
	}
	if s, _, _, _ := f.taskState(f.t1); s != "succeeded" {
		t.Errorf("t1 after b1's batch: %s", s)
	}
	if n := f.int("postgres", `SELECT count(*) FROM kiln.artifact WHERE task_id = $1`, f.t1); n != 1 {
		t.Errorf("t1 has %d artifacts, want 1", n)
	}
	if n := f.int("postgres", `SELECT count(*) FROM kiln.log_chunk WHERE task_id = $1 AND data = 'end of a'||chr(10)`, f.t1); n != 1 {
		t.Errorf("t1 has %d log ends, want 1", n)
	}
}

// A batch finish stores each content once, whatever the number of its
// artifacts that carry it (kiln.task_finish_many stores them set-based):
// two tasks' identical bytes share one verified blob, bytes whose digest a
// person planted an unverified blob under are staged under a random key,
// and bytes a verified blob holds already reuse it. Every stored blob's
// chunks add up to its content.
func TestAttackBatchFinishStoresEachContentOnce(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	splitter := f.login("splitter_", "kiln_splitter")
	tasks := []int64{f.t1, f.task(splitter, f.submit(f.alice, "public")), f.task(splitter, f.submit(f.alice, "public")),
		f.task(splitter, f.submit(f.alice, "public"))}
	for _, task := range tasks {
		if n := f.take(f.b1, "one", task); n != 1 {
			t.Fatalf("take of %d: attempt %d", task, n)
		}
	}
	shared := bytes.Repeat([]byte("the same package, built twice "), 300<<10/30)
	planted := []byte("bytes whose digest a person planted a blob under")
	plantedSum := sha256.Sum256(planted)
	f.exec(f.alice, `INSERT INTO kiln.blob (sha256, size, chunk_size) VALUES ($1, $2, 262144)`, plantedSum[:], len(planted))
	reused := "bytes a verified blob holds already"
	reusedKey := f.storeBlob(f.b2, reused)

	done, err := f.finishMany(f.b1, "one", tasks, nil, [][]byte{shared, shared, planted, []byte(reused)})
	if err != nil || len(done) != 4 || !done[0] || !done[1] || !done[2] || !done[3] {
		t.Fatalf("b1's finish of four: %v, %v", done, err)
	}
	type stored struct {
		key, content []byte
		verified     bool
		data         []byte
	}
	blobOf := func(task int64) stored {
		t.Helper()
		var s stored
		if err := f.conn("postgres").QueryRow(context.Background(), `SELECT a.blob_sha256, coalesce(b.content_sha256, b.sha256), b.verified_at IS NOT NULL,
				coalesce((SELECT string_agg(c.data, ''::bytea ORDER BY c.seq) FROM kiln.blob_chunk c WHERE c.sha256 = b.sha256), '')
			FROM kiln.artifact a JOIN kiln.blob b ON b.sha256 = a.blob_sha256 WHERE a.task_id = $1`, task).Scan(&s.key, &s.content, &s.verified, &s.data); err != nil {
			t.Fatalf("the artifact of %d: %v", task, err)
		}
		return s
	}
	sharedSum := sha256.Sum256(shared)
	a, b := blobOf(tasks[0]), blobOf(tasks[1])
	if !bytes.Equal(a.key, sharedSum[:]) || !bytes.Equal(b.key, sharedSum[:]) || !a.verified || !bytes.Equal(a.data, shared) {
		t.Errorf("the shared bytes: blobs %x and %x (verified %v, %d bytes stored), want both %x with the bytes", a.key, b.key, a.verified, len(a.data), sharedSum)
	}
	if n := f.int("postgres", `SELECT count(*) FROM kiln.blob WHERE sha256 = $1 OR content_sha256 = $1`, sharedSum[:]); n != 1 {
		t.Errorf("the shared bytes are in %d blobs, want 1", n)
	}
	if p := blobOf(tasks[2]); bytes.Equal(p.key, plantedSum[:]) || !bytes.Equal(p.content, plantedSum[:]) || !p.verified || !bytes.Equal(p.data, planted) {
		t.Errorf("the planted digest's bytes: blob %x (content %x, verified %v), want a staged, verified copy", p.key, p.content, p.verified)
	}
	if n := f.int("postgres", `SELECT count(*) FROM kiln.blob WHERE sha256 = $1 AND verified_at IS NULL AND created_by = $2`, plantedSum[:], f.alice); n != 1 {
		t.Errorf("the planted blob: %d unverified rows of alice's, want it left as it was", n)
	}
	if r := blobOf(tasks[3]); !bytes.Equal(r.key, reusedKey) {
		t.Errorf("the bytes a verified blob holds: blob %x, want the verified %x", r.key, reusedKey)
	}
}
