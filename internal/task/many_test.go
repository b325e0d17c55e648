package task_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// TakeMany and FinishMany give each task of a batch its own outcome, in
// order: of three tasks, two pending ones are taken and the one already
// building is not; of three finishes, a success stores its log's end and
// its artifact, a failure at a farm's stage is retried, and the attempt not
// held is refused alone (ErrStale) with nothing of it written.
func TestTakeManyAndFinishManyGiveEachTaskItsOwnOutcome(t *testing.T) {
	t.Parallel()
	f := newProtocolFarm(t, 3)
	ctx := context.Background()
	p := f.pool
	var tasks, jobs []int64
	for range 3 {
		job, id := f.pendingTask(t)
		tasks, jobs = append(tasks, id), append(jobs, job)
	}
	ok, retried, busy := tasks[0], tasks[1], tasks[2]
	farmtest.Take(t, p, busy, "b1")

	var reqs []task.Taking
	for i := range tasks {
		reqs = append(reqs, task.Taking{Task: tasks[i], Job: jobs[i], Platform: "el9-x86_64"})
	}
	taken, err := task.TakeMany(ctx, p, "b1", reqs)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{1, 1, 0} {
		if taken[i].Err != nil || taken[i].Attempt != want {
			t.Errorf("take of task %d: attempt %d, %v; want attempt %d", tasks[i], taken[i].Attempt, taken[i].Err, want)
		}
	}
	if taken[0].Policy == "" || taken[0].Timeout <= 0 {
		t.Errorf("a taken task's policy and timeout: %+v", taken[0])
	}

	pkg := []byte("the package")
	done, err := task.FinishMany(ctx, p, "b1", []task.Finishing{
		{Task: ok, Attempt: 1, Result: task.Result{Status: task.Succeeded, LogTail: &task.LogBatch{Seq: 0, Text: "built\n"},
			Artifacts: []task.Artifact{{Kind: "package", Name: "x.rpm", Data: pkg}}}},
		{Task: retried, Attempt: 1, Result: task.Result{Status: task.Failed, Reason: "disk full", FailureStage: task.StageOutOfDisk}},
		{Task: busy, Attempt: 2, Result: task.Result{Status: task.Succeeded, LogTail: &task.LogBatch{Seq: 0, Text: "forged\n"},
			Artifacts: []task.Artifact{{Kind: "package", Name: "y.rpm", Data: []byte("forged")}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if done[0].Err != nil || done[0].Retried || done[1].Err != nil || !done[1].Retried || !errors.Is(done[2].Err, task.ErrStale) {
		t.Fatalf("finishes: %+v", done)
	}
	for _, c := range []struct {
		task                 int64
		status               string
		artifacts, logChunks int64
	}{{ok, "succeeded", 1, 1}, {retried, "pending", 0, 0}, {busy, "building", 0, 0}} {
		var status string
		var artifacts, chunks int64
		if err := p.QueryRow(ctx, `SELECT status, (SELECT count(*) FROM kiln.artifact a WHERE a.task_id = t.id),
				(SELECT count(*) FROM kiln.log_chunk l WHERE l.task_id = t.id) FROM kiln.task t WHERE id = $1`, c.task).
			Scan(&status, &artifacts, &chunks); err != nil {
			t.Fatal(err)
		}
		if status != c.status || artifacts != c.artifacts || chunks != c.logChunks {
			t.Errorf("task %d: %s with %d artifacts and %d log chunks; want %s, %d, %d",
				c.task, status, artifacts, chunks, c.status, c.artifacts, c.logChunks)
		}
	}
}

// The jobs one statement ends each ask for their publication and their
// reports (kiln.job_changed, once per statement): of three jobs finished
// in one FinishMany, the two failed ones tell alice (who wants failures
// only) and their own --report address, each in a mail River job of its
// own, the succeeded one tells nobody; all three are queued for
// publication into devel, with a kiln_publish notification each; a job of
// a bucket that publishes nothing is not; and an ended job finished again
// (a stale finish) asks for nothing more.
func TestJobsEndedTogetherEachAskForPublicationAndReports(t *testing.T) {
	t.Parallel()
	f := newProtocolFarm(t, 4)
	ctx := context.Background()
	p := f.pool
	farmtest.Bucket(t, p, "quiet")
	if _, err := p.Exec(ctx, `UPDATE kiln.bucket SET publish_policy = 'none' WHERE name = 'quiet'`); err != nil {
		t.Fatal(err)
	}
	alice, err := pgxpool.New(ctx, f.db.URLAs(f.alice))
	if err != nil {
		t.Fatal(err)
	}
	defer alice.Close()
	if _, err := alice.Exec(ctx, `SELECT kiln.report_set('alice@example.org', 'failure')`); err != nil {
		t.Fatal(err)
	}
	var tasks, jobs []int64
	var reqs []task.Taking
	for i, bucket := range []string{"devel", "devel", "devel", "quiet"} {
		job := farmtest.Submit(t, p, f.alice, bucket, []string{"el9-x86_64"}, farmtest.File{Name: fmt.Sprintf("x%d.src.rpm", i), Data: []byte{byte(i)}})
		if _, err := alice.Exec(ctx, `INSERT INTO kiln.job_report_address (job_id, email) VALUES ($1, $2)`, job, fmt.Sprintf("team%d@example.org", i)); err != nil {
			t.Fatal(err)
		}
		id := farmtest.Split(t, p, job, "el9-x86_64")[0]
		farmtest.Enqueue(t, p, id)
		tasks, jobs = append(tasks, id), append(jobs, job)
		reqs = append(reqs, task.Taking{Task: id, Job: job, Platform: "el9-x86_64"})
	}
	if _, err := task.TakeMany(ctx, p, "b1", reqs); err != nil {
		t.Fatal(err)
	}
	listener, err := p.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Release()
	if _, err := listener.Exec(ctx, "LISTEN kiln_publish"); err != nil {
		t.Fatal(err)
	}
	finishes := []task.Finishing{
		{Task: tasks[0], Attempt: 1, Result: task.Result{Status: task.Failed, Reason: "make failed"}},
		{Task: tasks[1], Attempt: 1, Result: task.Result{Status: task.Succeeded}},
		{Task: tasks[2], Attempt: 1, Result: task.Result{Status: task.Failed, Reason: "make failed"}},
		{Task: tasks[3], Attempt: 1, Result: task.Result{Status: task.Failed, Reason: "make failed"}},
	}
	if done, err := task.FinishMany(ctx, p, "b1", finishes); err != nil || done[0].Err != nil || done[3].Err != nil {
		t.Fatalf("finish: %+v, %v", done, err)
	}
	if done, err := task.FinishMany(ctx, p, "b1", finishes[:1]); err != nil || !errors.Is(done[0].Err, task.ErrStale) {
		t.Fatalf("finishing again: %+v, %v; want ErrStale", done, err)
	}

	deliveries := func(job int64) string {
		t.Helper()
		var got string
		if err := p.QueryRow(ctx, `SELECT coalesce(string_agg(channel || ':' || target || ':' || job_status, ' ' ORDER BY target), '')
				FROM kiln.report_delivery WHERE job_id = $1`, job).Scan(&got); err != nil {
			t.Fatal(err)
		}
		return got
	}
	for i, want := range []string{
		"mail:alice@example.org:failed mail:team0@example.org:failed", "",
		"mail:alice@example.org:failed mail:team2@example.org:failed",
		"mail:alice@example.org:failed mail:team3@example.org:failed",
	} {
		if got := deliveries(jobs[i]); got != want {
			t.Errorf("job %d's deliveries: %q, want %q", i, got, want)
		}
	}
	var mails []int64
	if err := p.QueryRow(ctx, `SELECT coalesce(array_agg((args->>'job_id')::bigint ORDER BY id), '{}') FROM river.river_job
			WHERE kind = 'report' AND args->>'channel' = 'mail'`).Scan(&mails); err != nil {
		t.Fatal(err)
	}
	if want := []int64{jobs[0], jobs[2], jobs[3]}; !slices.Equal(mails, want) {
		t.Errorf("mail River jobs for jobs %v, want %v", mails, want)
	}
	var published []int64
	if err := p.QueryRow(ctx, `SELECT coalesce(array_agg(job_id ORDER BY id), '{}') FROM kiln.publication_request WHERE kind = 'job'`).Scan(&published); err != nil {
		t.Fatal(err)
	}
	if want := jobs[:3]; !slices.Equal(published, want) {
		t.Errorf("publication requests for jobs %v, want %v", published, want)
	}
	for _, job := range jobs[:3] {
		n, err := listener.Conn().WaitForNotification(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf(`{"bucket" : "devel", "job" : %d}`, job); n.Payload != want {
			t.Errorf("kiln_publish %s, want %s", n.Payload, want)
		}
	}
}

// A log batch sent again under its number, because the builder lost the
// answer to the first send with its connection (as at a failover) though
// the batch committed, is stored and counted once, and the attempt goes on
// and finishes; a builder that sends other text under a stored number is
// refused, with nothing of it stored.
func TestLogBatchSentAgainIsStoredOnce(t *testing.T) {
	t.Parallel()
	f := newProtocolFarm(t, 1)
	ctx := context.Background()
	p := f.pool
	_, id := f.pendingTask(t)
	attempt := farmtest.Take(t, p, id, "b1")
	send := func(seq int, text string) error {
		stored, err := task.LogMany(ctx, p, "b1", []task.Logging{{Task: id, Attempt: attempt, Seq: seq, Text: text}})
		if err == nil && !stored[0] {
			t.Fatalf("batch %d of a held attempt not stored", seq)
		}
		return err
	}
	for range 2 {
		if err := send(0, "first line\n"); err != nil {
			t.Fatalf("batch 0, sent again: %v", err)
		}
	}
	var pgErr *pgconn.PgError
	if err := send(0, "other text\n"); !errors.As(err, &pgErr) || pgErr.Code != "23505" {
		t.Fatalf("other text under a stored number: %v, want unique_violation", err)
	}
	if err := send(1, "second line\n"); err != nil {
		t.Fatal(err)
	}
	done, err := task.FinishMany(ctx, p, "b1", []task.Finishing{{Task: id, Attempt: attempt,
		Result: task.Result{Status: task.Succeeded, LogTail: &task.LogBatch{Seq: 2, Text: "done\n"}}}})
	if err != nil || done[0].Err != nil || done[0].Retried {
		t.Fatalf("finish after a batch sent again: %+v, %v", done, err)
	}
	var chunks int
	var text string
	var logBytes int64
	if err := p.QueryRow(ctx, `SELECT count(*), string_agg(c.data, '' ORDER BY c.seq), min(a.log_bytes)
		FROM kiln.log_chunk c JOIN kiln.attempt a ON a.task_id = c.task_id AND a.attempt = c.attempt
		WHERE c.task_id = $1 AND c.attempt = $2`, id, attempt).Scan(&chunks, &text, &logBytes); err != nil {
		t.Fatal(err)
	}
	if want := "first line\nsecond line\ndone\n"; chunks != 3 || text != want || logBytes != int64(len(want)) {
		t.Errorf("stored %d chunks %q, log_bytes %d; want 3, %q, %d", chunks, text, logBytes, want, len(want))
	}
}
