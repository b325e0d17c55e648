package split_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
	"github.com/kiln-build/kiln/riverjob"
)

// recorder is a builder whose builds wait until released: it records the
// order in which River hands it tasks.
type recorder struct {
	started chan int64
	release chan struct{}
}

func (r *recorder) BuildTimeout(string) time.Duration { return time.Hour }

func (r *recorder) BuildTask(ctx context.Context, a riverjob.BuildArgs) error {
	select {
	case r.started <- a.TaskID:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-r.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *recorder) MakeEnvironment(context.Context, string) error { return nil }

// queueTasks submits n one-package jobs as role on platform and enqueues
// their tasks as the splitter does, returning the task ids in submission
// order.
func queueTasks(t *testing.T, db *pgtest.DB, role, platform string, n int) []int64 {
	t.Helper()
	var ids []int64
	for i := range n {
		job := farmtest.Submit(t, db.Pool, role, "devel", []string{platform},
			farmtest.File{Name: fmt.Sprintf("p%d-1.0-1.src.rpm", i), Data: fmt.Appendf(nil, "%s %d", role, i)})
		task := farmtest.Split(t, db.Pool, job, platform)[0]
		farmtest.Enqueue(t, db.Pool, task)
		ids = append(ids, task)
	}
	return ids
}

// TestFairShare: one person queues 500 tasks, another then 5; the 5 start
// within the first slots that free up (taking turns with the 500), each
// person's tasks start in submission order, and a more urgent task still
// goes first. The tasks are handed out by a real builder River client
// working the platform's queue.
func TestFairShare(t *testing.T) {
	db := pgtest.New(t)
	ctx := t.Context()
	const platform = "el9-x86_64"
	farmtest.Platform(t, db.Pool, platform, "x86_64")
	farmtest.Bucket(t, db.Pool, "devel")
	alice := farmtest.Person(t, db, "alice", "kiln_submitter")
	bob := farmtest.Person(t, db, "bob", "kiln_submitter")
	// Alice's 500 jobs and her urgent one are more than the default
	// 500 jobs an hour.
	if _, err := db.Pool.Exec(ctx, "INSERT INTO kiln.quota (person, jobs_per_hour) VALUES ($1, 1000)", alice); err != nil {
		t.Fatal(err)
	}

	aliceTasks := queueTasks(t, db, alice, platform, 500)

	rec := &recorder{started: make(chan int64), release: make(chan struct{})}
	rc, err := riverjob.NewBuilderClient(db.Pool, riverjob.BuilderConfig{
		ID: "fair-builder", Platforms: []string{platform}, Slots: 2,
		Builder: rec, Environments: rec, RescueAfter: 24 * time.Hour,
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		close(rec.release)
		stop, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = rc.Stop(stop)
	})
	next := func() int64 {
		t.Helper()
		select {
		case id := <-rec.started:
			return id
		case <-time.After(time.Minute):
			t.Fatal("no task started within a minute")
			return 0
		}
	}
	// Both slots busy with Alice's first two.
	var order []int64
	// River fetched them in one go and starts them at once, in either order.
	order = append(order, next(), next())
	slices.Sort(order)

	bobTasks := queueTasks(t, db, bob, platform, 5)
	for range 12 {
		rec.release <- struct{}{}
		order = append(order, next())
	}
	t.Logf("start order: %v (Alice %d..%d, Bob %v)", order, aliceTasks[0], aliceTasks[len(aliceTasks)-1], bobTasks)

	var bobStarts []int
	var aliceSeen, bobSeen []int64
	for i, id := range order {
		switch {
		case slices.Contains(bobTasks, id):
			bobStarts = append(bobStarts, i-2) // the how-manieth slot freed after Bob submitted
			bobSeen = append(bobSeen, id)
		case slices.Contains(aliceTasks, id):
			aliceSeen = append(aliceSeen, id)
		default:
			t.Fatalf("task %d started, neither Alice's nor Bob's", id)
		}
	}
	if !slices.Equal(bobSeen, bobTasks) {
		t.Fatalf("Bob's tasks started %v, want all 5 in submission order %v", bobSeen, bobTasks)
	}
	// Taking turns: Bob's k-th task starts at the latest in the 2k-th slot
	// that frees up.
	for k, s := range bobStarts {
		if s >= 2*(k+1) {
			t.Errorf("Bob's task %d started in freed slot %d, want before slot %d (starts %v)", k+1, s+1, 2*(k+1)+1, bobStarts)
		}
	}
	if !slices.IsSorted(aliceSeen) || !slices.Equal(aliceSeen, aliceTasks[:len(aliceSeen)]) {
		t.Fatalf("Alice's tasks started %v, not in submission order", aliceSeen)
	}

	// Priorities still come first: Alice's urgent job goes before anything
	// of priority 2, although she has 490 waiting and Bob none.
	job := farmtest.Submit(t, db.Pool, alice, "devel", []string{platform}, farmtest.File{Name: "urgent-1.0-1.src.rpm", Data: []byte("urgent")})
	if _, err := db.Pool.Exec(ctx, `UPDATE kiln.job SET priority = 1 WHERE id = $1`, job); err != nil {
		t.Fatal(err)
	}
	urgent := farmtest.Split(t, db.Pool, job, platform)[0]
	farmtest.Enqueue(t, db.Pool, urgent)
	rec.release <- struct{}{}
	if id := next(); id != urgent {
		t.Fatalf("task %d started after the urgent task %d was queued, want the urgent one", id, urgent)
	}
}
