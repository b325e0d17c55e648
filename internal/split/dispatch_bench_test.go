package split_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testsupport/benchstat"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/riverjob"
)

// BenchmarkDispatchQueued measures whether fair share keeps dispatch fast
// when the queue is long (issue 18: "dispatch latency must not grow beyond
// noise" at 50,000 queued tasks). One builder River client of one slot
// (riverjob.NewBuilderClient, as kiln-builder runs it) works the platform's
// queue; its build holds the slot until released. Each round Bob enqueues a
// task as the splitter does (every other round once Alice's tasks wait, as
// he then gets every other slot) (a River job that the fair-share trigger gives
// its turn), then the slot is freed, and the round measures
//
//   - enqueue: the splitter's transaction (task, River job, fair turn);
//   - handoff: slot freed to River handing the builder its next task
//     (available to taken), whoever's it is.
//
// First with nothing else queued, then, in the same database and run, with
// KILN_BENCH_DISPATCH_QUEUED (default 50,000) tasks of Alice waiting on the
// same platform (seeded in SQL with the virtual turns the trigger would
// have given them). It reports the p50 of both in each case and their
// ratios, and fails unless Bob's every task still started within the first
// two slots freed after it was queued. It also reports how long one read
// of kiln.task_eta (every task's estimate) takes with the long queue.
//
//	.ci/with-cluster go test ./internal/split/ -run '^$' -bench DispatchQueued -benchtime 1x
func BenchmarkDispatchQueued(b *testing.B) {
	queued := 50000
	if s := os.Getenv("KILN_BENCH_DISPATCH_QUEUED"); s != "" {
		var err error
		if queued, err = strconv.Atoi(s); err != nil || queued < 1 {
			b.Fatalf("KILN_BENCH_DISPATCH_QUEUED: want a positive count, not %q", s)
		}
	}
	const rounds = 40
	const platform = "el9-x86_64"
	db := pgtest.New(b)
	ctx := context.Background()
	farmtest.Platform(b, db.Pool, platform, "x86_64")
	farmtest.Bucket(b, db.Pool, "devel")
	alice := farmtest.Person(b, db, "alice", "kiln_submitter")
	bob := farmtest.Person(b, db, "bob", "kiln_submitter")
	if _, err := db.Pool.Exec(ctx, "INSERT INTO kiln.quota (person, jobs_per_hour) VALUES ($1, 100000)", bob); err != nil {
		b.Fatal(err)
	}

	rec := &recorder{started: make(chan int64), release: make(chan struct{})}
	rc, err := riverjob.NewBuilderClient(db.Pool, riverjob.BuilderConfig{
		ID: "dispatch-builder", Platforms: []string{platform}, Slots: 1,
		Builder: rec, Environments: rec, RescueAfter: 24 * time.Hour,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	if err := rc.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		close(rec.release)
		stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rc.Stop(stop)
	})
	next := func() (int64, time.Time) {
		b.Helper()
		select {
		case id := <-rec.started:
			return id, time.Now()
		case <-time.After(time.Minute):
			b.Fatal("no task started within a minute")
			return 0, time.Time{}
		}
	}
	n := 0
	enqueue := func() (int64, time.Duration) {
		b.Helper()
		n++
		job := farmtest.Submit(b, db.Pool, bob, "devel", []string{platform},
			farmtest.File{Name: fmt.Sprintf("bob%d-1.0-1.src.rpm", n), Data: fmt.Appendf(nil, "bob %d", n)})
		task := farmtest.Split(b, db.Pool, job, platform)[0]
		began := time.Now()
		farmtest.Enqueue(b, db.Pool, task)
		return task, time.Since(began)
	}

	// The builder's one slot is busy with a first task of Bob's.
	first, _ := enqueue()
	if id, _ := next(); id != first {
		b.Fatalf("the builder took task %d, want %d", id, first)
	}
	// measure runs the rounds, Bob enqueueing a task every every-th;
	// slotsToStart is, per task of Bob's, how many slots freed until it
	// started.
	measure := func(every int) (enq, handoff []float64, slotsToStart []int) {
		b.Helper()
		waiting := map[int64]int{}
		for i := range rounds {
			if i%every == 0 {
				task, took := enqueue()
				enq = append(enq, benchstat.Ms(took))
				waiting[task] = 0
			}
			freed := time.Now()
			rec.release <- struct{}{}
			id, at := next()
			handoff = append(handoff, benchstat.Ms(at.Sub(freed)))
			for t := range waiting {
				waiting[t]++
			}
			if s, ok := waiting[id]; ok {
				slotsToStart = append(slotsToStart, s)
				delete(waiting, id)
			}
		}
		return enq, handoff, slotsToStart
	}

	b.ResetTimer()
	emptyEnq, emptyHandoff, emptySlots := measure(1)
	b.StopTimer()
	if slices.Max(emptySlots) != 1 || len(emptySlots) != rounds {
		b.Fatalf("with nothing else queued, Bob's tasks started after %v freed slots, want each in the first", emptySlots)
	}

	// Alice's tasks, seeded in SQL as the splitter and the trigger would
	// have left them: pending tasks, available River jobs with her turns
	// after the queue's latest, her kiln.queue_turn row.
	began := time.Now()
	seed := fmt.Sprintf(`
		SET session_replication_role = replica;
		INSERT INTO kiln.job (submitter, bucket, platforms, submission_key, status, submitted_at, validated_at)
		SELECT '%[1]s', 'devel', '{%[2]s}', 'seed-' || g, 'queued', now(), now() FROM generate_series(1, %[3]d) g;
		INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size, name)
		SELECT id, 0, 'seed' || id || '-1-1.src.rpm', 'srpm', sha256('x'), 1, 'seed' || id FROM kiln.job WHERE submitter = '%[1]s';
		INSERT INTO kiln.task (job_id, platform, status) SELECT id, '%[2]s', 'pending' FROM kiln.job WHERE submitter = '%[1]s';
		WITH base AS (SELECT coalesce(max(last_turn), '2000-01-01 00:00:00+00') AS t FROM kiln.queue_turn WHERE queue = 'build-%[2]s'),
		     r AS (
		     INSERT INTO river.river_job (args, kind, max_attempts, priority, queue, state, scheduled_at)
		     SELECT jsonb_build_object('task_id', t.id, 'job_id', t.job_id, 'platform', t.platform), 'build', 25, 2,
		            'build-%[2]s', 'available', base.t + row_number() OVER (ORDER BY t.id) * interval '1 millisecond'
		       FROM kiln.task t JOIN kiln.job j ON j.id = t.job_id, base
		      WHERE j.submitter = '%[1]s' ORDER BY t.id
		     RETURNING id, (args ->> 'task_id')::bigint AS task_id, scheduled_at)
		UPDATE kiln.task t SET river_job_id = r.id FROM r WHERE t.id = r.task_id;
		INSERT INTO kiln.queue_turn (queue, priority, submitter, last_turn)
		SELECT 'build-%[2]s', 2, '%[1]s', max(r.scheduled_at) FROM river.river_job r WHERE r.queue = 'build-%[2]s' AND r.state = 'available';
		RESET session_replication_role;`, alice, platform, queued)
	if _, err := db.Pool.Exec(ctx, seed); err != nil {
		b.Fatalf("seeding %d queued tasks: %v", queued, err)
	}
	// Vacuumed now, so that autovacuum, which 50,000 inserted rows wake,
	// does not run during the rounds.
	for _, table := range []string{"river.river_job", "kiln.task", "kiln.job", "kiln.package", "kiln.queue_turn"} {
		if _, err := db.Pool.Exec(ctx, "VACUUM (ANALYZE) "+table); err != nil {
			b.Fatalf("vacuuming %s: %v", table, err)
		}
	}
	b.Logf("seeded %d queued tasks of Alice in %s", queued, time.Since(began).Round(time.Millisecond))

	b.StartTimer()
	// Bob now gets every other slot (the other is Alice's turn), so he
	// queues a task every other round, as fast as he is served.
	fullEnq, fullHandoff, fullSlots := measure(2)
	b.StopTimer()
	var waiting int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM river.river_job WHERE queue = $1 AND state = 'available'`,
		riverjob.BuildQueue(platform)).Scan(&waiting); err != nil {
		b.Fatal(err)
	}
	if waiting < queued-rounds {
		b.Fatalf("only %d River jobs wait in the queue, want about %d", waiting, queued)
	}
	if len(fullSlots) < rounds/2-1 || slices.Max(fullSlots) > 2 {
		b.Fatalf("with %d of Alice's queued, Bob's tasks started after %v freed slots, want each within 2", queued, fullSlots)
	}

	// One read of every estimate (kiln queue, the web's queue page) with
	// the long queue.
	readBegan := time.Now()
	var estimated int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM kiln.task_eta`).Scan(&estimated); err != nil {
		b.Fatal(err)
	}
	etaRead := time.Since(readBegan)
	if estimated < queued {
		b.Fatalf("kiln.task_eta has %d rows, want at least %d", estimated, queued)
	}

	e0, e1 := benchstat.Percentile(emptyEnq, 50), benchstat.Percentile(fullEnq, 50)
	h0, h1 := benchstat.Percentile(emptyHandoff, 50), benchstat.Percentile(fullHandoff, 50)
	b.ReportMetric(e0, "enqueue-empty-p50-ms")
	b.ReportMetric(e1, "enqueue-queued-p50-ms")
	b.ReportMetric(e1/e0, "enqueue-ratio")
	b.ReportMetric(h0, "handoff-empty-p50-ms")
	b.ReportMetric(h1, "handoff-queued-p50-ms")
	b.ReportMetric(benchstat.Percentile(emptyHandoff, 90), "handoff-empty-p90-ms")
	b.ReportMetric(benchstat.Percentile(fullHandoff, 90), "handoff-queued-p90-ms")
	b.ReportMetric(h1/h0, "handoff-ratio")
	b.ReportMetric(float64(queued), "queued")
	b.ReportMetric(benchstat.Ms(etaRead), "eta-read-ms")
	b.ReportMetric(0, "ns/op")
}
