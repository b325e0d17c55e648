package builder

import (
	"context"
	"sync"
	"time"
)

// group joins the calls of a builder's slots that wait at the same moment
// into one, as a database joins commits: the takes of River jobs fetched
// together, the finishes of builds that end together. Nothing waits to
// fill a batch: a call that finds none running runs at once, alone, and
// the calls that arrive meanwhile run together after it. A batch that
// fails as a whole (one bad item, or the database away) is run again one
// call at a time, so that each call gets its own answer.
type group[Q, R any] struct {
	// run makes one batch's calls, in one statement, and returns one
	// result per call in order.
	run func(ctx context.Context, reqs []Q) ([]R, error)
	// max is the most calls in a batch.
	max int
	// weight, when set, is what a call carries (a finish's artifact
	// bytes); a batch carries at most maxWeight in all, or one call of
	// any weight.
	weight    func(Q) int
	maxWeight int
	// timeout bounds one batch: it runs apart from its callers' contexts,
	// as a cancelled caller must not fail the others.
	timeout time.Duration

	mu    sync.Mutex
	queue []*call[Q, R]
	busy  bool
}

// call is one call waiting in a group.
type call[Q, R any] struct {
	req  Q
	res  R
	err  error
	lead bool          // wakes to run the next batch, not with its result
	wake chan struct{} // closed when res and err are set, or lead
}

// do makes one call through g and returns its own result.
func (g *group[Q, R]) do(ctx context.Context, req Q) (R, error) {
	c := &call[Q, R]{req: req, wake: make(chan struct{})}
	g.mu.Lock()
	g.queue = append(g.queue, c)
	lead := !g.busy
	g.busy = true
	g.mu.Unlock()
	if !lead {
		<-c.wake
		if !c.lead {
			return c.res, c.err
		}
	}
	// Lead one batch: c is first in the queue (the queue was empty when
	// no batch ran, and a leader is woken from its head).
	g.mu.Lock()
	batch := g.queue[:g.fits()]
	g.queue = g.queue[len(batch):]
	g.mu.Unlock()
	g.runBatch(context.WithoutCancel(ctx), batch)
	g.mu.Lock()
	if len(g.queue) > 0 {
		next := g.queue[0]
		next.lead = true
		close(next.wake)
	} else {
		g.busy = false
	}
	g.mu.Unlock()
	for _, o := range batch[1:] {
		close(o.wake)
	}
	return c.res, c.err
}

// fits is how many calls at the head of the queue go in the next batch:
// at least one, at most max, within maxWeight. The caller holds mu.
func (g *group[Q, R]) fits() int {
	n, carried := 0, 0
	for _, c := range g.queue {
		if n == g.max {
			break
		}
		if g.weight != nil {
			w := g.weight(c.req)
			if n > 0 && carried+w > g.maxWeight {
				break
			}
			carried += w
		}
		n++
	}
	return n
}

// runBatch runs batch and sets every call's result; after an error of the
// whole batch, each call alone.
func (g *group[Q, R]) runBatch(ctx context.Context, batch []*call[Q, R]) {
	reqs := make([]Q, len(batch))
	for i, c := range batch {
		reqs[i] = c.req
	}
	res, err := g.runOnce(ctx, reqs)
	if err == nil {
		for i, c := range batch {
			c.res = res[i]
		}
		return
	}
	if len(batch) == 1 {
		batch[0].err = err
		return
	}
	for _, c := range batch {
		res, err := g.runOnce(ctx, []Q{c.req})
		if err != nil {
			c.err = err
			continue
		}
		c.res = res[0]
	}
}

func (g *group[Q, R]) runOnce(ctx context.Context, reqs []Q) ([]R, error) {
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	return g.run(ctx, reqs)
}
