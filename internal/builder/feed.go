package builder

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/kiln-build/kiln/internal/platform"
	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/riverjob"
)

// A feed is one River client working the builder's queues: it is how the
// builder takes tasks. An enabled builder has one feed. Disabling the
// builder (kiln.builder.enabled, kiln admin builder disable) stops its feed:
// River fetches nothing more for it, River jobs fetched but not yet taken go
// back to their queue at once, and the builds it runs go on to their end in
// the stopping client. Enabling it again starts a new feed at once, even
// while the old one still finishes builds.
//
// A feed is a whole River client rather than River's per-queue
// QueueBundle.Remove and Add, because Remove waits for the queue's running
// builds (perhaps hours) before the queue can be added again. Every feed
// shares the builder's slots, so the builder never runs more than Slots
// builds in all.
type feed struct {
	client *river.Client[pgx.Tx]
	// quit is closed when the feed stops taking tasks.
	quit chan struct{}
	// done is closed when its client has stopped: its builds are over.
	done     chan struct{}
	stopOnce sync.Once
}

// feedWorker is the riverjob.TaskBuilder of one feed.
type feedWorker struct {
	b *Builder
	f *feed
}

// BuildTimeout implements riverjob.TaskBuilder.
func (w feedWorker) BuildTimeout(platform string) time.Duration { return w.b.BuildTimeout(platform) }

// BuildTask implements riverjob.TaskBuilder.
func (w feedWorker) BuildTask(ctx context.Context, a riverjob.BuildArgs) error {
	return w.b.buildTask(ctx, a, w.f.quit)
}

// newFeed makes a feed whose River client works the platforms' queues.
func (b *Builder) newFeed(ctx context.Context) (*feed, error) {
	f := &feed{quit: make(chan struct{}), done: make(chan struct{})}
	// River must never rescue a build that still runs: its horizon lies
	// beyond the longest timeout of any platform.
	longest, err := platform.LongestTimeout(ctx, b.db)
	if err != nil {
		return nil, err
	}
	client, err := riverjob.NewBuilderClient(b.db, riverjob.BuilderConfig{
		ID:           fmt.Sprintf("kiln-builder.%s.%s", b.cfg.Name, time.Now().UTC().Format("20060102T150405.000000")),
		Platforms:    b.cfg.Platforms,
		Slots:        b.cfg.Slots,
		Builder:      feedWorker{b: b, f: f},
		Environments: environmentMaker{b: b, f: f},
		RescueAfter:  longest + RescueMargin,
		PollOnly:     b.cfg.PollOnly,
		PollInterval: b.cfg.PollInterval,
		Logger:       b.log.With("component", "river"),
	})
	if err != nil {
		return nil, err
	}
	f.client = client
	return f, nil
}

// startFeed starts a new feed; its builds run under ctx.
func (b *Builder) startFeed(ctx context.Context) (*feed, error) {
	f, err := b.newFeed(ctx)
	if err != nil {
		return nil, err
	}
	if err := f.client.Start(ctx); err != nil {
		return nil, fmt.Errorf("starting the River client: %w", err)
	}
	b.feed.Store(f)
	return f, nil
}

// stopFeed makes a feed take no more tasks and stops its client in the
// background; f.done is closed once the builds it runs are over.
func (b *Builder) stopFeed(ctx context.Context, f *feed) {
	f.stopOnce.Do(func() {
		b.feed.CompareAndSwap(f, nil)
		close(f.quit)
		go func() {
			defer close(f.done)
			if err := f.client.Stop(context.WithoutCancel(ctx)); err != nil {
				b.log.Warn("stopping the River client", "err", err)
			}
		}()
	})
}

// setEnabled records the builder row's enabled flag and wakes Run when it
// changed.
func (b *Builder) setEnabled(enabled bool) {
	if b.enabled.Swap(enabled) != enabled {
		select {
		case b.enabledChanged <- struct{}{}:
		default:
		}
	}
}

// refreshEnabled reads the builder row's enabled flag.
func (b *Builder) refreshEnabled(ctx context.Context) error {
	var enabled bool
	err := b.db.QueryRow(ctx, "SELECT enabled FROM kiln.builder WHERE name = $1", b.cfg.Name).Scan(&enabled)
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("builder %s is no longer registered", b.cfg.Name)
	}
	if err != nil {
		return fmt.Errorf("reading whether builder %s is enabled: %w", b.cfg.Name, err)
	}
	b.setEnabled(enabled)
	return nil
}

// errDisabled means the take found the builder disabled.
var errDisabled = task.ErrDisabled

// runFeeds runs the builder's feeds until ctx ends or the current feed's
// River client stops on its own: one feed while the builder is enabled,
// none while it is disabled. Builds run under loops. It returns every feed
// it started, for shutdown to stop and wait for.
func (b *Builder) runFeeds(ctx, loops context.Context, first *feed) []*feed {
	var all []*feed
	if first != nil {
		all = append(all, first)
	}
	var retry <-chan time.Time
	for {
		cur := b.feed.Load()
		var stopped <-chan struct{}
		if cur != nil {
			stopped = cur.client.Stopped()
		}
		select {
		case <-ctx.Done():
			return all
		case <-stopped:
			b.log.Error("the River client stopped on its own")
			return all
		case <-retry:
		case <-b.enabledChanged:
		}
		retry = nil
		switch enabled := b.enabled.Load(); {
		case !enabled && cur != nil:
			b.log.Info("builder disabled: taking no new tasks; running builds go on", "running", len(b.snapshot()))
			b.status("disabled (kiln admin builder enable " + b.cfg.Name + ")")
			b.stopFeed(loops, cur)
		case enabled && cur == nil:
			f, err := b.startFeed(loops)
			if err != nil {
				b.log.Warn("builder enabled, but its River client cannot start; retrying", "err", err)
				retry = time.After(b.cfg.Heartbeat)
				continue
			}
			all = append(all, f)
			b.log.Info("builder enabled: taking tasks")
			b.status("building " + strings.Join(b.cfg.Platforms, ", "))
		}
	}
}
