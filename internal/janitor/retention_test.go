package janitor

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/blob"
)

// putBlob stores content as a blob made age ago.
func (b *bundle) putBlob(t *testing.T, content string, age time.Duration) []byte {
	t.Helper()
	info, err := blob.Put(b.ctx, b.db.Pool, bytes.NewReader([]byte(content)), true)
	if err != nil {
		t.Fatal(err)
	}
	b.exec(t, `UPDATE kiln.blob SET created_at = now() - make_interval(secs => $2) WHERE sha256 = $1`, info.Sum[:], age.Seconds())
	return info.Sum[:]
}

// finishedJob makes a job in bucket whose one task was built by b1, wrote
// two log batches and the given artifacts, with source package src, and
// finished ago.
func (b *bundle) finishedJob(t *testing.T, bucket string, ago time.Duration, src []byte, artifacts ...[]byte) (jobID, taskID int64) {
	t.Helper()
	jobID, taskID, _ = b.submitTask(t, 2)
	b.exec(t, `UPDATE kiln.job SET bucket = $2 WHERE id = $1`, jobID, bucket)
	b.exec(t, `INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size) VALUES ($1, 0, 'p.src.rpm', 'srpm', $2, 1)`, jobID, src)
	b.take(t, taskID, "b1")
	for seq := 0; seq < 2; seq++ {
		b.exec(t, `INSERT INTO kiln.log_chunk (task_id, attempt, seq, data) VALUES ($1, 1, $2, 'line\n')`, taskID, seq)
	}
	for i, sum := range artifacts {
		b.exec(t, `INSERT INTO kiln.artifact (task_id, attempt, kind, file_name, blob_sha256, size) VALUES ($1, 1, 'package', $2, $3, 1)`,
			taskID, "a"+string(rune('0'+i))+".rpm", sum)
	}
	b.exec(t, `UPDATE kiln.attempt SET status = 'succeeded', finished_at = now() WHERE task_id = $1`, taskID)
	b.exec(t, `UPDATE kiln.task SET status = 'succeeded', builder = NULL, finished_at = now() WHERE id = $1`, taskID)
	b.exec(t, `UPDATE kiln.job SET finished_at = now() - make_interval(secs => $2) WHERE id = $1`, jobID, ago.Seconds())
	return jobID, taskID
}

func (b *bundle) blobExists(t *testing.T, sum []byte) bool {
	t.Helper()
	var n int
	b.scan(t, `SELECT count(*) FROM kiln.blob WHERE sha256 = $1`, []any{sum}, &n)
	return n == 1
}

func retentionConfig() Config {
	cfg := testConfig()
	cfg.Retention = 30 * 24 * time.Hour
	cfg.BlobGrace = time.Hour
	return cfg
}

func TestRetentionRemovesOnlyWhatIsOldAndUnreferenced(t *testing.T) {
	t.Parallel()
	b := setup(t, retentionConfig())
	b.exec(t, `INSERT INTO kiln.bucket (name, retention) VALUES ('short', '1 day')`)
	day := 24 * time.Hour
	var (
		srcA   = b.putBlob(t, "source of A", 41*day)
		onlyA  = b.putBlob(t, "artifact only A made", 40*day)
		shared = b.putBlob(t, "artifact A and C made", 40*day)
		srcB   = b.putBlob(t, "source of B", 3*day)
		onlyB  = b.putBlob(t, "artifact only B made", 2*day)
		srcC   = b.putBlob(t, "source of C", 3*day)
		srcD   = b.putBlob(t, "source of D (still waiting)", 50*day)
		orphan = b.putBlob(t, "aborted submit, long ago", 2*day)
		fresh  = b.putBlob(t, "submit in flight", time.Minute)
	)
	jobA, taskA := b.finishedJob(t, "devel", 40*day, srcA, onlyA, shared) // past the default retention
	jobB, taskB := b.finishedJob(t, "short", 2*day, srcB, onlyB)          // past its bucket's retention
	jobC, taskC := b.finishedJob(t, "devel", 2*day, srcC, shared)         // within the default retention
	jobD, _, _ := b.submitTask(t, 2)                                      // not finished
	b.exec(t, `INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size) VALUES ($1, 0, 'd.src.rpm', 'srpm', $2, 1)`, jobD, srcD)

	// Upkeep never prunes.
	if c := b.round(t, Upkeep); c.JobsPruned != 0 || c.BlobsRemoved != 0 {
		t.Fatalf("upkeep pruned: %+v", c)
	}
	c := b.round(t, Retention)
	if c.JobsPruned != 2 || c.LogChunksPruned != 4 || c.ArtifactsPruned != 3 || c.BlobsRemoved != 3 || c.BlobsStillReferenced != 0 {
		t.Fatalf("counts %+v; want jobs A and B pruned (4 log batches, 3 artifacts) and 3 blobs removed", c)
	}

	for _, tc := range []struct {
		task            int64
		logs, unpruned  int
		prunedArtifacts int
	}{{taskA, 0, 0, 2}, {taskB, 0, 0, 1}, {taskC, 2, 1, 0}} {
		var logs, unpruned, pruned int
		b.scan(t, `SELECT (SELECT count(*) FROM kiln.log_chunk WHERE task_id = $1),
			(SELECT count(*) FROM kiln.artifact WHERE task_id = $1 AND blob_sha256 IS NOT NULL),
			(SELECT count(*) FROM kiln.artifact WHERE task_id = $1 AND blob_sha256 IS NULL AND pruned_at IS NOT NULL)`,
			[]any{tc.task}, &logs, &unpruned, &pruned)
		if logs != tc.logs || unpruned != tc.unpruned || pruned != tc.prunedArtifacts {
			t.Fatalf("task %d: %d log batches, %d artifacts with content, %d pruned; want %d, %d, %d",
				tc.task, logs, unpruned, pruned, tc.logs, tc.unpruned, tc.prunedArtifacts)
		}
	}
	for name, want := range map[string]struct {
		sum  []byte
		kept bool
	}{
		"A's source (package row stays)": {srcA, true}, "A's own artifact": {onlyA, false},
		"artifact shared with recent C": {shared, true}, "B's source": {srcB, true}, "B's own artifact": {onlyB, false},
		"C's source": {srcC, true}, "waiting D's old source": {srcD, true}, "old orphan": {orphan, false},
		"orphan within grace": {fresh, true},
	} {
		if got := b.blobExists(t, want.sum); got != want.kept {
			t.Errorf("%s: kept=%v, want %v", name, got, want.kept)
		}
	}
	var chunks int
	b.scan(t, `SELECT count(*) FROM kiln.blob_chunk WHERE sha256 = ANY($1)`, []any{[][]byte{onlyA, onlyB, orphan}}, &chunks)
	if chunks != 0 {
		t.Fatalf("%d chunks of removed blobs remain", chunks)
	}
	// History stays: job, task and attempt rows.
	var rows int
	b.scan(t, `SELECT (SELECT count(*) FROM kiln.job WHERE id IN ($1, $2, $3)) + (SELECT count(*) FROM kiln.task WHERE id IN ($4, $5))
		+ (SELECT count(*) FROM kiln.attempt WHERE task_id IN ($4, $5))`, []any{jobA, jobB, jobC, taskA, taskB}, &rows)
	if rows != 7 {
		t.Fatalf("%d history rows, want 7", rows)
	}
	ev := b.events(t, "janitor.prune")
	if len(ev) != 3 {
		t.Fatalf("%d janitor.prune events, want 3 (jobs A, B, blobs): %v", len(ev), ev)
	}
	for _, e := range ev {
		if e["actor"] != b.role {
			t.Fatalf("event %v", e)
		}
	}
	if d := ev[2]["detail"].(map[string]any); d["blobs"] != float64(3) {
		t.Fatalf("blob prune event %v", d)
	}
	if c := b.round(t, Retention); c.JobsPruned != 0 || c.BlobsRemoved != 0 {
		t.Fatalf("second retention round %+v", c)
	}
}

// TestRetentionSparesBlobBeingReferenced: a blob old and unreferenced when
// the janitor looks, which a transaction in flight is referencing, stays.
func TestRetentionSparesBlobBeingReferenced(t *testing.T) {
	t.Parallel()
	b := setup(t, retentionConfig())
	sum := b.putBlob(t, "reused by a submit in flight", 48*time.Hour)
	jobID, _, _ := b.submitTask(t, 2)

	tx, err := b.db.Pool.Begin(b.ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck
	if _, err := tx.Exec(b.ctx, `INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size) VALUES ($1, 0, 'x.src.rpm', 'srpm', $2, 1)`, jobID, sum); err != nil {
		t.Fatal(err)
	}
	type result struct {
		c   Counts
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := b.jan.Round(b.ctx, Retention)
		done <- result{c, err}
	}()
	// Wait until the janitor's delete waits for the in-flight transaction.
	for {
		var waiting bool
		b.scan(t, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE usename = $1 AND wait_event_type = 'Lock')`, []any{b.role}, &waiting)
		if waiting {
			break
		}
		select {
		case r := <-done:
			t.Fatalf("round finished without waiting for the in-flight reference: %+v, %v", r.c, r.err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := tx.Commit(b.ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.c.BlobsRemoved != 0 || r.c.BlobsStillReferenced != 1 {
		t.Fatalf("counts %+v; want the blob kept as still referenced", r.c)
	}
	if !b.blobExists(t, sum) {
		t.Fatal("the blob a committed package references was removed")
	}
	var chunks int
	b.scan(t, `SELECT count(*) FROM kiln.blob_chunk WHERE sha256 = $1`, []any{sum}, &chunks)
	if chunks != 1 {
		t.Fatalf("%d chunks left of the referenced blob", chunks)
	}
}

func TestDeleteOldJobsWhenConfigured(t *testing.T) {
	t.Parallel()
	cfg := retentionConfig()
	cfg.DeleteJobsAfter = 60 * 24 * time.Hour
	b := setup(t, cfg)
	day := 24 * time.Hour
	srcOld := b.putBlob(t, "source of an ancient job", 71*day)
	artOld := b.putBlob(t, "artifact of an ancient job", 70*day)
	srcKept := b.putBlob(t, "source of a job past retention only", 41*day)
	ancient, ancientTask := b.finishedJob(t, "devel", 70*day, srcOld, artOld)
	kept, _ := b.finishedJob(t, "devel", 40*day, srcKept)
	// A bucket that keeps longer than DeleteJobsAfter keeps its jobs too.
	b.exec(t, `INSERT INTO kiln.bucket (name, retention) VALUES ('forever', '1000 days')`)
	longKept, _ := b.finishedJob(t, "forever", 70*day, srcKept)

	c := b.round(t, Retention)
	if c.JobsDeleted != 1 || c.BlobsRemoved != 2 {
		t.Fatalf("counts %+v; want one job deleted and its two blobs removed", c)
	}
	var jobs, tasks int
	b.scan(t, `SELECT (SELECT count(*) FROM kiln.job WHERE id = ANY($1)), (SELECT count(*) FROM kiln.task WHERE id = $2)`,
		[]any{[]int64{ancient, kept, longKept}, ancientTask}, &jobs, &tasks)
	if jobs != 2 || tasks != 0 {
		t.Fatalf("%d of 3 jobs and %d tasks of the ancient job remain; want 2 and 0", jobs, tasks)
	}
	if b.blobExists(t, srcOld) || b.blobExists(t, artOld) || !b.blobExists(t, srcKept) {
		t.Fatal("wrong blobs removed")
	}
	ev := b.events(t, "janitor.delete_job")
	if len(ev) != 1 || int64(ev[0]["job_id"].(float64)) != ancient || ev[0]["actor"] != b.role {
		t.Fatalf("janitor.delete_job events %v", ev)
	}
	// The deleted job's history of events stays.
	var events int
	b.scan(t, `SELECT count(*) FROM kiln.event WHERE job_id = $1 AND kind = 'task.status'`, []any{ancient}, &events)
	if events == 0 {
		t.Fatal("the deleted job's events are gone")
	}
}
