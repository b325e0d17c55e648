package report_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// follower is a FollowJob running in the background as a role of its own
// (so the test can cut its connections), reporting what it sees.
type follower struct {
	role string
	seen chan *report.Job
	lost chan error
	done chan error
	last *report.Job
}

func follow(t *testing.T, f *farmtest.Farm, job int64, giveUp time.Duration) *follower {
	t.Helper()
	fl := &follower{role: farmtest.Person(t, f.DB, "watcher", "kiln_submitter"),
		seen: make(chan *report.Job, 100), lost: make(chan error, 10), done: make(chan error, 1)}
	pool, err := pgxpool.New(context.Background(), f.DB.URLAs(fl.role))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		j, err := report.FollowJob(ctx, pool, job, report.Follow{
			Seen:      func(j *report.Job) error { fl.seen <- j; return nil },
			Reconnect: report.Reconnect{Lost: func(err error) { fl.lost <- err }, GiveUpAfter: giveUp},
		})
		fl.last = j
		fl.done <- err
	}()
	return fl
}

// next waits for the follower to see the job in status.
func (fl *follower) next(t *testing.T, status task.JobStatus) *report.Job {
	t.Helper()
	for {
		select {
		case j := <-fl.seen:
			if j.Status == status {
				return j
			}
		case err := <-fl.done:
			t.Fatalf("FollowJob ended (%v) before the job was %s", err, status)
		case <-time.After(time.Minute):
			t.Fatalf("the job never became %s", status)
		}
	}
}

// cut ends the follower's database sessions, as a server restart would.
func (fl *follower) cut(t *testing.T, f *farmtest.Farm) {
	t.Helper()
	var n int
	if err := f.DB.Pool.QueryRow(context.Background(),
		`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1`, fl.role).Scan(&n); err != nil || n == 0 {
		t.Fatalf("terminating %s's sessions: %d, %v", fl.role, n, err)
	}
}

func TestFollowJob(t *testing.T) {
	t.Parallel()
	f := farmtest.Seed(t, pgtest.New(t))
	p := f.DB.Pool
	job := farmtest.Submit(t, p, f.Alice, "devel", []string{farmtest.EL9, farmtest.Bookworm}, farmtest.File{Name: "follow-1-1.src.rpm", Data: []byte("f")})
	fl := follow(t, f, job, 0)
	fl.next(t, "submitted")
	ids := farmtest.Split(t, p, job, farmtest.EL9, farmtest.Bookworm)
	if j := fl.next(t, "queued"); len(j.Tasks) != 2 {
		t.Fatalf("queued job seen with %d tasks", len(j.Tasks))
	}
	a := farmtest.Take(t, p, ids[0], "b1")
	fl.next(t, "building")
	farmtest.Finish(t, p, ids[0], a, "succeeded", "")
	b := farmtest.Take(t, p, ids[1], "b1")
	farmtest.Finish(t, p, ids[1], b, "failed", "exit 2")
	fl.next(t, "partially_failed")
	if err := <-fl.done; err != nil || fl.last.Status != "partially_failed" {
		t.Fatalf("FollowJob = %+v, %v", fl.last, err)
	}
	// Every snapshot agrees with itself: a job is final only with every
	// task final.
	for _, tk := range fl.last.Tasks {
		if !tk.Status.Final() {
			t.Errorf("final job with task %d %s", tk.ID, tk.Status)
		}
	}

	_, err := report.FollowJob(context.Background(), p, 999999, report.Follow{})
	if !errors.Is(err, report.ErrNotFound) {
		t.Errorf("following a job that does not exist: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := report.FollowJob(ctx, p, job+1000, report.Follow{}); !errors.Is(err, context.Canceled) {
		t.Errorf("following with an ended context: %v", err)
	}
}

// A lost connection is made again and the job read again: a change made
// while the follower was cut off is not missed.
func TestFollowJobReconnects(t *testing.T) {
	t.Parallel()
	f := farmtest.Seed(t, pgtest.New(t))
	p := f.DB.Pool
	job := farmtest.Submit(t, p, f.Alice, "devel", []string{farmtest.EL9}, farmtest.File{Name: "cut-1-1.src.rpm", Data: []byte("c")})
	fl := follow(t, f, job, 0)
	fl.next(t, "submitted")
	fl.cut(t, f)
	ids := farmtest.Split(t, p, job, farmtest.EL9) // perhaps before the follower is back
	if err := <-fl.lost; err == nil {
		t.Fatal("Lost called without an error")
	}
	fl.next(t, "queued")
	a := farmtest.Take(t, p, ids[0], "b1")
	fl.next(t, "building")
	farmtest.Finish(t, p, ids[0], a, "succeeded", "")
	if err := <-fl.done; err != nil || fl.last.Status != "succeeded" {
		t.Fatalf("FollowJob = %+v, %v", fl.last, err)
	}
}

// When the connection cannot be made again, FollowJob says so.
func TestFollowJobGivesUp(t *testing.T) {
	t.Parallel()
	f := farmtest.Seed(t, pgtest.New(t))
	job := farmtest.Submit(t, f.DB.Pool, f.Alice, "devel", []string{farmtest.EL9}, farmtest.File{Name: "gone-1-1.src.rpm", Data: []byte("g")})
	fl := follow(t, f, job, 2*time.Second)
	fl.next(t, "submitted")
	if _, err := f.DB.Pool.Exec(context.Background(), fmt.Sprintf("ALTER ROLE %s NOLOGIN", fl.role)); err != nil {
		t.Fatal(err)
	}
	fl.cut(t, f)
	err := <-fl.done
	if !errors.Is(err, report.ErrConnectionLost) {
		t.Fatalf("FollowJob after its role lost its login: %v", err)
	}
	if len(fl.lost) != 1 {
		t.Errorf("Lost called %d times for one outage", len(fl.lost))
	}
}

// A log follower whose connection is cut while batches keep arriving goes
// on from the last batch it passed on: every batch exactly once, in order,
// the ones written while it was cut off too.
func TestFollowLogReconnects(t *testing.T) {
	t.Parallel()
	f := farmtest.Seed(t, pgtest.New(t))
	p := f.DB.Pool
	job := farmtest.Submit(t, p, f.Alice, "devel", []string{farmtest.EL9}, farmtest.File{Name: "logcut-1-1.src.rpm", Data: []byte("l")})
	task := farmtest.Split(t, p, job, farmtest.EL9)[0]
	a := farmtest.Take(t, p, task, "b1")

	role := farmtest.Person(t, f.DB, "reader", "kiln_submitter")
	pool, err := pgxpool.New(context.Background(), f.DB.URLAs(role))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	chunks := make(chan report.LogChunk, 100)
	lost := make(chan error, 10)
	done := make(chan error, 1)
	var attempts []int
	var ended *report.Task
	go func() {
		tk, err := report.FollowLog(context.Background(), pool, task, report.LogFollow{
			Attempt: func(tk *report.Task) error { attempts = append(attempts, tk.Attempt); return nil },
			Chunks: func(cs []report.LogChunk) error {
				for _, c := range cs {
					chunks <- c
				}
				return nil
			},
			Reconnect: report.Reconnect{Lost: func(err error) { lost <- err }},
		})
		ended = tk
		done <- err
	}()

	const batches = 40
	var got []int // the seqs passed on, in order
	for seq := range batches {
		farmtest.Log(t, p, task, a, seq, fmt.Sprintf("line %d\n", seq))
		if seq == 10 {
			// The follower is listening once it has passed a batch on.
			select {
			case c := <-chunks:
				got = append(got, c.Seq)
			case <-time.After(time.Minute):
				t.Fatal("no log batch passed on")
			}
			var n int
			if err := p.QueryRow(context.Background(),
				`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = $1`, role).Scan(&n); err != nil || n == 0 {
				t.Fatalf("terminating %s's sessions: %d, %v", role, n, err)
			}
		}
	}
	if err := <-lost; err == nil {
		t.Fatal("Lost called without an error")
	}
	farmtest.Finish(t, p, task, a, "succeeded", "")
	if err := <-done; err != nil || ended.Status != "succeeded" {
		t.Fatalf("FollowLog = %+v, %v", ended, err)
	}
	close(chunks)
	for c := range chunks {
		got = append(got, c.Seq)
	}
	want := make([]int, batches)
	for i := range want {
		want[i] = i
	}
	if !slices.Equal(got, want) {
		t.Errorf("batches passed on: %v, want %v", got, want)
	}
	if !slices.Equal(attempts, []int{a}) {
		t.Errorf("attempts started: %v, want [%d]", attempts, a)
	}
}

// TestFollowLogWatchesAndRenews: a follower watches the task's log before
// reading it (a batch stored then notifies), and renews the watch once it
// has run out, so the next batch notifies too.
func TestFollowLogWatchesAndRenews(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := farmtest.Seed(t, pgtest.New(t))
	p := f.DB.Pool
	job := farmtest.Submit(t, p, f.Alice, "devel", []string{farmtest.EL9}, farmtest.File{Name: "watch-1-1.src.rpm", Data: []byte("w")})
	id := farmtest.Split(t, p, job, farmtest.EL9)[0]
	a := farmtest.Take(t, p, id, "b1")
	role := farmtest.Person(t, f.DB, "reader", "kiln_submitter")
	pool, err := pgxpool.New(ctx, f.DB.URLAs(role))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	chunks := make(chan int, 10)
	done := make(chan error, 1)
	go func() {
		_, err := report.FollowLog(ctx, pool, id, report.LogFollow{
			Renew: 200 * time.Millisecond,
			Chunks: func(cs []report.LogChunk) error {
				for _, c := range cs {
					chunks <- c.Seq
				}
				return nil
			},
		})
		done <- err
	}()
	watched := func() bool {
		var ok bool
		if err := p.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM kiln.log_watch WHERE task_id = $1 AND until > now())", id).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited 30 s for %s", what)
			}
		}
	}
	waitUntil("the follower's watch", watched)
	for seq := range 2 {
		if seq == 1 {
			// The watch runs out (as if the follower had missed its
			// renewals); the follower renews it.
			if _, err := p.Exec(ctx, "UPDATE kiln.log_watch SET until = now() - interval '1 second' WHERE task_id = $1", id); err != nil {
				t.Fatal(err)
			}
			waitUntil("the renewed watch", watched)
		}
		farmtest.Log(t, p, id, a, seq, fmt.Sprintf("line %d\n", seq))
		select {
		case got := <-chunks:
			if got != seq {
				t.Fatalf("batch %d passed on, want %d", got, seq)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("batch %d not passed on within 30 s", seq)
		}
	}
	farmtest.Finish(t, p, id, a, "succeeded", "")
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
