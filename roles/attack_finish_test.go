package roles_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"testing"
)

// The one-call finish (schema/0031_lean_finish.sql): kiln.task_finish also
// takes the end of the log and the bytes of small artifacts, and stores
// them as verified blobs itself. Replayed by hostile builders, it must not
// become a way to write what the caller does not hold, to store bytes
// under a digest they do not have, or to take over a blob someone planted
// under the digest of bytes a builder is about to store.

// finishInline finishes attempt 1 of task as succeeded through the full
// form, as role in builder's name, with one artifact "out.rpm" of data
// (sum and size as given: nil and -1 leave them to the server) and the log
// tail text at seq; it returns finished and the error.
func (f *attackFarm) finishInline(role, builder string, task int64, data, sum []byte, size int64, seq int, text string) (bool, error) {
	var sizeArg any
	if size >= 0 {
		sizeArg = size
	}
	var finished bool
	err := f.conn(role).QueryRow(context.Background(), `SELECT finished
		FROM kiln.task_finish($1, $2, 1, 'succeeded', NULL, NULL, false, ARRAY['package'], ARRAY['out.rpm'],
		                      ARRAY[$3::bytea], ARRAY[$4::bigint], NULL, ARRAY[$5::bytea], $6, $7)`,
		builder, task, sum, sizeArg, data, seq, text).Scan(&finished)
	return finished, err
}

func TestAttackInlineFinishWritesOnlyWhatIsHeld(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	if n := f.take(f.b1, "one", f.t1); n != 1 {
		t.Fatalf("take: attempt %d", n)
	}
	data := []byte("bytes b2 would like stored as t1's package")
	// b2, in its own builder's name: not held, nothing written.
	if done, err := f.finishInline(f.b2, "two", f.t1, data, nil, -1, 0, "forged line\n"); err != nil || done {
		t.Fatalf("b2 finishing b1's attempt: finished %v, %v", done, err)
	}
	// In b1's builder's name: refused outright.
	if _, err := f.finishInline(f.b2, "one", f.t1, data, nil, -1, 0, "forged line\n"); err == nil {
		t.Fatal("b2 finished in the name of b1's builder")
	}
	// A pending task nobody holds.
	if done, err := f.finishInline(f.b2, "two", f.t2, data, nil, -1, 0, "forged line\n"); err != nil || done {
		t.Fatalf("b2 finishing a pending task: finished %v, %v", done, err)
	}
	digest := sha256.Sum256(data)
	for what, n := range map[string]int64{
		"log chunks":  f.int("postgres", `SELECT count(*) FROM kiln.log_chunk WHERE task_id IN ($1, $2)`, f.t1, f.t2),
		"artifacts":   f.int("postgres", `SELECT count(*) FROM kiln.artifact WHERE task_id IN ($1, $2)`, f.t1, f.t2),
		"blobs":       f.int("postgres", `SELECT count(*) FROM kiln.blob WHERE sha256 = $1 OR content_sha256 = $1`, digest[:]),
		"log bytes":   f.int("postgres", `SELECT coalesce(sum(log_bytes), 0) FROM kiln.attempt WHERE task_id = $1`, f.t1),
		"not pending": f.int("postgres", `SELECT count(*) FROM kiln.task WHERE id = $1 AND status <> 'pending'`, f.t2),
	} {
		if n != 0 {
			t.Errorf("after b2's finishes: %d %s", n, what)
		}
	}
	if s, a, _, b := f.taskState(f.t1); s != "building" || a != 1 || b != "one" {
		t.Fatalf("t1 after the attacks: %s attempt %d builder %q", s, a, b)
	}

	// The holder's bytes must have the digest and size it claims.
	wrong := sha256.Sum256([]byte("something else"))
	f.refusedCode(f.b1, "22023", `SELECT kiln.task_finish('one', $1, 1, 'succeeded', NULL, NULL, false, ARRAY['package'], ARRAY['x.rpm'],
		ARRAY[$2::bytea], ARRAY[NULL::bigint], NULL, ARRAY[$3::bytea], NULL, NULL)`, f.t1, wrong[:], data)
	f.refusedCode(f.b1, "22023", `SELECT kiln.task_finish('one', $1, 1, 'succeeded', NULL, NULL, false, ARRAY['package'], ARRAY['x.rpm'],
		ARRAY[NULL::bytea], ARRAY[7::bigint], NULL, ARRAY[$2::bytea], NULL, NULL)`, f.t1, data)
	// Arrays of different lengths are refused.
	f.refusedCode(f.b1, "22023", `SELECT kiln.task_finish('one', $1, 1, 'succeeded', NULL, NULL, false, ARRAY['package'], ARRAY['x.rpm'],
		ARRAY[NULL::bytea], ARRAY[NULL::bigint], NULL, ARRAY[$2::bytea, $2::bytea], NULL, NULL)`, f.t1, data)

	// The holder's finish stores the log's end, counts it, and stores the
	// artifact's bytes as a verified blob under their digest.
	if done, err := f.finishInline(f.b1, "one", f.t1, data, digest[:], int64(len(data)), 0, "the end\n"); err != nil || !done {
		t.Fatalf("b1's finish: finished %v, %v", done, err)
	}
	if got := f.int("postgres", `SELECT log_bytes FROM kiln.attempt WHERE task_id = $1 AND attempt = 1`, f.t1); got != int64(len("the end\n")) {
		t.Errorf("log bytes %d, want %d", got, len("the end\n"))
	}
	var stored []byte
	var verified bool
	if err := f.conn("postgres").QueryRow(context.Background(), `SELECT string_agg(c.data, ''::bytea ORDER BY c.seq), bool_and(b.verified_at IS NOT NULL)
		FROM kiln.artifact a JOIN kiln.blob b ON b.sha256 = a.blob_sha256 JOIN kiln.blob_chunk c ON c.sha256 = b.sha256
		WHERE a.task_id = $1 AND a.blob_sha256 = $2`, f.t1, digest[:]).Scan(&stored, &verified); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(stored, data) || !verified {
		t.Errorf("stored %q (verified %v), want %q verified", stored, verified, data)
	}
}

// A person plants an unverified blob under the digest of bytes a builder is
// about to store: the builder's finish does not trust it (it stages its own
// copy under a random key that records the digest), and the planted bytes
// stay the planter's, unverified.
func TestAttackInlineFinishIgnoresAPlantedBlob(t *testing.T) {
	t.Parallel()
	f := newAttackFarm(t)
	if n := f.take(f.b1, "one", f.t1); n != 1 {
		t.Fatalf("take: attempt %d", n)
	}
	data := bytes.Repeat([]byte("a package of more than one chunk "), 300<<10/33)
	digest := sha256.Sum256(data)
	f.exec(f.alice, `INSERT INTO kiln.blob (sha256, size, chunk_size) VALUES ($1, $2, 262144)`, digest[:], len(data))
	if done, err := f.finishInline(f.b1, "one", f.t1, data, nil, -1, 0, "end\n"); err != nil || !done {
		t.Fatalf("b1's finish: finished %v, %v", done, err)
	}
	var key, content []byte
	var chunks int64
	var verified bool
	if err := f.conn("postgres").QueryRow(context.Background(), `SELECT a.blob_sha256, b.content_sha256, b.verified_at IS NOT NULL,
			(SELECT count(*) FROM kiln.blob_chunk c WHERE c.sha256 = b.sha256)
		FROM kiln.artifact a JOIN kiln.blob b ON b.sha256 = a.blob_sha256 WHERE a.task_id = $1`, f.t1).Scan(&key, &content, &verified, &chunks); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(key, digest[:]) || !bytes.Equal(content, digest[:]) || !verified || chunks != 2 {
		t.Errorf("artifact blob %x (content %x, verified %v, %d chunks): want a staged, verified copy in 2 chunks", key, content, verified, chunks)
	}
	if n := f.int("postgres", `SELECT count(*) FROM kiln.blob WHERE sha256 = $1 AND verified_at IS NULL`, digest[:]); n != 1 {
		t.Errorf("the planted blob: %d unverified rows, want it left as it was", n)
	}
}
