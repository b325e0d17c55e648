package builder

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// A group gives every caller its own result, runs no batch larger than
// max, runs a lone call at once and alone, joins the calls that arrive
// while a batch runs, and after an error of a whole batch runs each of its
// calls alone, so that only the bad one fails. A caller whose context is
// cancelled does not fail the batch it is in.
func TestGroupJoinsWaitingCallsAndAnswersEachItsOwn(t *testing.T) {
	t.Parallel()
	var (
		mu      sync.Mutex
		batches [][]int
	)
	release := make(chan struct{})
	first := true
	g := &group[int, int]{max: 4, timeout: time.Minute, run: func(ctx context.Context, reqs []int) ([]int, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		mu.Lock()
		batches = append(batches, slices.Clone(reqs))
		wait := first
		first = false
		mu.Unlock()
		if wait {
			<-release // hold the first batch while the others queue
		}
		if len(reqs) > 1 && slices.Contains(reqs, 13) {
			return nil, errors.New("a bad item")
		}
		out := make([]int, len(reqs))
		for i, r := range reqs {
			if r == 13 {
				return nil, errors.New("13 is bad")
			}
			out[i] = r * 10
		}
		return out, nil
	}}

	type answer struct {
		res int
		err error
	}
	answers := make(map[int]answer)
	var amu sync.Mutex
	var wg sync.WaitGroup
	ask := func(ctx context.Context, req int) {
		defer wg.Done()
		res, err := g.do(ctx, req)
		amu.Lock()
		answers[req] = answer{res, err}
		amu.Unlock()
	}
	wg.Add(1)
	go ask(context.Background(), 1)
	for {
		mu.Lock()
		n := len(batches)
		mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	// While call 1 runs alone: nine more, one bad and one whose caller
	// gives up at once.
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	reqs := []int{2, 3, 4, 5, 6, 7, 8, 13, 9}
	for _, r := range reqs {
		wg.Add(1)
		ctx := context.Background()
		if r == 9 {
			ctx = cancelled
		}
		go ask(ctx, r)
	}
	for {
		g.mu.Lock()
		n := len(g.queue)
		g.mu.Unlock()
		if n == len(reqs) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()

	for _, r := range append([]int{1}, reqs...) {
		a := answers[r]
		if r == 13 {
			if a.err == nil {
				t.Errorf("call 13 succeeded with %d", a.res)
			}
			continue
		}
		if a.err != nil || a.res != r*10 {
			t.Errorf("call %d: %d, %v; want %d", r, a.res, a.err, r*10)
		}
	}
	if !slices.Equal(batches[0], []int{1}) {
		t.Errorf("first batch %v, want call 1 alone", batches[0])
	}
	seen := map[int]int{}
	joined := false
	for _, b := range batches {
		if len(b) > g.max {
			t.Errorf("batch %v is larger than %d", b, g.max)
		}
		if len(b) > 1 {
			joined = true
		}
		for _, r := range b {
			seen[r]++
		}
	}
	if !joined {
		t.Errorf("no calls were joined: %v", batches)
	}
	for _, r := range reqs {
		if r != 13 && seen[r] > 2 {
			t.Errorf("call %d ran %d times: %v", r, seen[r], batches)
		}
	}
	if g.busy || len(g.queue) != 0 {
		t.Errorf("group left busy %v with %d queued", g.busy, len(g.queue))
	}
}

// A weighted group's batch carries at most maxWeight, or one heavier call
// alone, and never more than max calls.
func TestGroupBatchesStayWithinTheirWeight(t *testing.T) {
	t.Parallel()
	g := &group[int, int]{max: 3, weight: func(w int) int { return w }, maxWeight: 10}
	for _, c := range []struct {
		queue []int
		want  int
	}{
		{[]int{4, 4, 4}, 2},    // 12 > 10
		{[]int{20, 1}, 1},      // one heavy call alone
		{[]int{1, 20}, 1},      // the heavy one waits for the next batch
		{[]int{1, 1, 1, 1}, 3}, // max
		{[]int{0, 10}, 2},
	} {
		g.queue = nil
		for _, w := range c.queue {
			g.queue = append(g.queue, &call[int, int]{req: w})
		}
		if got := g.fits(); got != c.want {
			t.Errorf("queue %v: batch of %d, want %d", c.queue, got, c.want)
		}
	}
}
