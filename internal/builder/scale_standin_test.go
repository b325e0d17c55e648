package builder

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/riverqueue/river/riverdriver"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivertype"

	"github.com/kiln-build/kiln/riverjob"
)

// River's intervals for a poll-only producer (river v0.51.2 producer.go),
// which the stand-in keeps.
const (
	// standInQueuePoll is River's queuePollIntervalDefault: without a
	// notifier a producer reads its queue's row this often (QueueGet) and,
	// while it works River jobs, asks which were cancelled
	// (JobGetCancelRequested).
	standInQueuePoll = 2 * time.Second
	// standInQueueReport is River's queueReportIntervalDefault
	// (QueueCreateOrSetUpdatedAt).
	standInQueueReport = 10 * time.Minute
)

// standIn is BenchmarkScale's stand-in for a builder's River client, cheap
// enough for 1,000 on two cores: one goroutine instead of a River client's
// dozen, sending a poll-only River client's statements of the builder's one
// queue through River's own driver (riverpgxv5, the same executor and SQL)
// at River's cadence, and working what it fetches with the builder's own
// buildTask. So through PgBouncer it sends, per builder:
//   - at start, QueueCreateOrSetUpdatedAt (River's producer start), and
//     again every 10 minutes;
//   - every poll interval (with River's jitter) while its slot is free, and FetchCooldown after
//     each completion, JobGetAvailable (River's fetch, MaxToLock the free
//     slots, Kind the builder client's two kinds);
//   - every 2 s QueueGet (River's poll for queue pauses), and while it
//     works a River job JobGetCancelRequested;
//   - for a River job worked, the builder's buildTask (task.Take, the noop
//     backend, live log, artifacts, task.Finish), then
//     JobSetStateIfRunningMany with the job completed (River's completer);
//   - every heartbeat interval the builder's heartbeat (its UPDATE of
//     kiln.builder and task.Heartbeat).
type standIn struct {
	bl       *Builder
	exec     riverdriver.Executor
	clientID string
	queue    string
	kinds    []string
}

func newStandIn(bl *Builder) *standIn {
	kinds := []string{riverjob.BuildArgs{}.Kind(), riverjob.EnvironmentArgs{}.Kind()}
	slices.Sort(kinds)
	return &standIn{
		bl:       bl,
		exec:     riverpgxv5.New(bl.db).GetExecutor(),
		clientID: fmt.Sprintf("kiln-builder.%s.%s", bl.cfg.Name, time.Now().UTC().Format("20060102T150405.000000")),
		queue:    riverjob.BuildQueue(bl.cfg.Platforms[0]),
		kinds:    kinds,
	}
}

// pollInterval is River's jitteredFetchPollInterval: the poll interval
// plus up to a tenth of it (at least 10 ms), so that a pooled connection
// idle for more than a second is pinged on acquire as the real client's is
// (pgxpool pings such a connection: the "-- ping" statements in both).
func (s *standIn) pollInterval() time.Duration {
	i := s.bl.cfg.PollInterval
	return i + rand.N(max(i/10, 10*time.Millisecond))
}

// start is River's producer start: the queue's row.
func (s *standIn) start(ctx context.Context) error {
	return s.reportQueue(ctx)
}

func (s *standIn) reportQueue(ctx context.Context) error {
	_, err := s.exec.QueueCreateOrSetUpdatedAt(ctx, &riverdriver.QueueCreateOrSetUpdatedAtParams{
		Metadata: []byte("{}"), Name: s.queue, Schema: riverjob.Schema,
	})
	if err != nil {
		return fmt.Errorf("queue %s: %w", s.queue, err)
	}
	return nil
}

// run polls, works and heartbeats until ctx ends; fail reports errors.
func (s *standIn) run(ctx context.Context, fail func(error)) {
	var (
		fetch     = time.NewTimer(s.pollInterval())
		queuePoll = time.NewTicker(standInQueuePoll)
		report    = time.NewTicker(standInQueueReport)
		heartbeat = time.NewTicker(s.bl.cfg.Heartbeat)
		done      = make(chan struct{}, 1)
		running   *rivertype.JobRow
		again     <-chan time.Time
	)
	defer fetch.Stop()
	defer queuePoll.Stop()
	defer report.Stop()
	defer heartbeat.Stop()
	for {
		poll := false
		select {
		case <-ctx.Done():
			if running != nil {
				<-done
			}
			return
		case <-fetch.C:
			poll = running == nil
			fetch.Reset(s.pollInterval())
		case <-again:
			again, poll = nil, running == nil
		case <-done:
			if err := s.complete(ctx, running); err != nil {
				fail(err)
			}
			running = nil
			again = time.After(riverjob.BuilderFetchCooldown)
		case <-queuePoll.C:
			if _, err := s.exec.QueueGet(ctx, &riverdriver.QueueGetParams{Name: s.queue, Schema: riverjob.Schema}); err != nil && ctx.Err() == nil {
				fail(fmt.Errorf("queue %s: %w", s.queue, err))
			}
			if running != nil {
				if _, err := s.exec.JobGetCancelRequested(ctx, &riverdriver.JobGetCancelRequestedParams{
					ID: []int64{running.ID}, Schema: riverjob.Schema}); err != nil && ctx.Err() == nil {
					fail(fmt.Errorf("cancel requests: %w", err))
				}
			}
		case <-report.C:
			if err := s.reportQueue(ctx); err != nil && ctx.Err() == nil {
				fail(err)
			}
		case <-heartbeat.C:
			if err := s.bl.heartbeat(ctx); err != nil && ctx.Err() == nil {
				fail(err)
			}
		}
		if !poll || ctx.Err() != nil {
			continue
		}
		res, err := s.exec.JobGetAvailable(ctx, &riverdriver.JobGetAvailableParams{
			ClientID: s.clientID, Kind: s.kinds, MaxAttemptedBy: 100, MaxToLock: s.bl.cfg.Slots,
			Queue: s.queue, Schema: riverjob.Schema,
		})
		if err != nil {
			if ctx.Err() == nil {
				fail(fmt.Errorf("fetching from %s: %w", s.queue, err))
			}
			continue
		}
		if len(res.Jobs) == 0 {
			continue
		}
		if len(res.Jobs) > 1 {
			fail(fmt.Errorf("fetched %d River jobs for one slot", len(res.Jobs)))
		}
		running = res.Jobs[0]
		go func(job *rivertype.JobRow) {
			defer func() { done <- struct{}{} }()
			var a riverjob.BuildArgs
			if err := json.Unmarshal(job.EncodedArgs, &a); err != nil {
				fail(fmt.Errorf("River job %d: %w", job.ID, err))
				return
			}
			if err := s.bl.buildTask(ctx, a, nil); err != nil {
				fail(fmt.Errorf("River job %d: %w", job.ID, err))
			}
		}(running)
	}
}

// complete is River's completer for a River job worked.
func (s *standIn) complete(ctx context.Context, job *rivertype.JobRow) error {
	now := time.Now().UTC()
	_, err := s.exec.JobSetStateIfRunningMany(context.WithoutCancel(ctx), &riverdriver.JobSetStateIfRunningManyParams{
		ID: []int64{job.ID}, Attempt: []*int{nil}, ErrData: [][]byte{nil}, FinalizedAt: []*time.Time{&now},
		MetadataDoMerge: []bool{false}, MetadataUpdates: [][]byte{nil}, ScheduledAt: []*time.Time{nil},
		Schema: riverjob.Schema, State: []rivertype.JobState{rivertype.JobStateCompleted},
	})
	if err != nil {
		return fmt.Errorf("completing River job %d: %w", job.ID, err)
	}
	return nil
}
