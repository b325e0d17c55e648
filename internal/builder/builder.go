// Package builder is the kiln-builder daemon: it registers a builder, works
// the River queues of its platforms, builds each task it takes in a sandbox
// with the platform's backend, streams the log into PostgreSQL, stores the
// results and finishes the task, following the task protocol
// (docs/protocol.md): every write names the attempt, so a builder that was
// declared lost cannot overwrite the attempt that replaced it.
package builder

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/backend"
	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/environment"
	"github.com/kiln-build/kiln/internal/platform"
	"github.com/kiln-build/kiln/internal/sandbox"
	"github.com/kiln-build/kiln/internal/task"
)

// Config configures a builder.
type Config struct {
	// Name is the builder's name (kiln.builder.name).
	Name string
	// Host is the host name recorded for the builder (os.Hostname when empty).
	Host string
	// Platforms are the platforms it builds; each must exist.
	Platforms []string
	// Slots is the most tasks it builds at once, across all its platforms.
	Slots int
	// WorkDir holds one directory per running attempt. It belongs to the
	// builder: leftovers of earlier runs are removed at start.
	WorkDir string
	// Version is the kiln version, recorded on the builder row.
	Version string
	// Grace is how long running builds may go on after a stop is requested
	// before they are given back (0: give back at once).
	Grace time.Duration
	// Heartbeat is how often the builder and its tasks heartbeat (5 s when 0).
	Heartbeat time.Duration
	// LogFlush is the least time between two stores of an attempt's log
	// output (250 ms when 0): a line written later than that after the last
	// store is stored at once (log.go).
	LogFlush time.Duration
	// LogLimit caps the log stored per attempt (DefaultLogLimit when 0).
	LogLimit int64
	// Hide lists paths below the system directories builds see (/usr,
	// /etc, ...) that they must not (the keytab, the configuration), besides
	// sandbox.DefaultHide. Everything else of the host (other work
	// directories, /root, /home, /var, /run) is absent from builds anyway.
	Hide []string
	// BuildUIDs is the range of host uids builds run as when the builder
	// runs as root, one per running build, claimed with lock files in
	// UIDLockDir so that no two builders of a host share one
	// (sandbox.DefaultIDFirst and DefaultIDCount when Count is 0). A builder
	// that is not root maps its builds to its own uid and needs none.
	BuildUIDs UIDRange
	// UIDLockDir is where the builders of a host claim build uids
	// (sandbox.DefaultLockDir when empty).
	UIDLockDir string
	// Bwrap is the bubblewrap program ("bwrap" when empty).
	Bwrap string
	// Backend holds backend settings (the mock program).
	Backend backend.Options
	// Environments caches the build environments of sbuild platforms
	// (internal/environment); its directory must be readable by the build
	// user. When nil, a cache in WorkDir/environments keeping 4 tarballs.
	Environments *environment.Cache
	// BuildUser names the unprivileged account that sbuild and mmdebstrap
	// run as when the builder runs as root (DefaultBuildUser when empty);
	// it must have subordinate uid and gid ranges. A builder that is not
	// root runs them as itself, and then needs those ranges itself.
	BuildUser string
	// RepoURL is kiln-web's base URL as builds reach it (http://kiln:8080):
	// sbuild platforms install build dependencies from the job's bucket's
	// repository and those of its build_against setting through it. Empty:
	// builds use no bucket repository.
	RepoURL string
	// Logger receives the daemon's logs (slog.Default when nil).
	Logger *slog.Logger
	// Session is a pool of direct connections to the primary for what
	// belongs to a session: LISTEN kiln_task and kiln_builder, and the
	// advisory lock on the builder's name. Nil: the main pool. A builder
	// whose main pool goes through a transaction pooler (PgBouncer) must
	// have one (docs/scaling.md).
	Session *pgxpool.Pool
	// PollOnly runs River in poll-only mode (no LISTEN on the main pool),
	// fetching every PollInterval (River's default of 1 s when 0): for a
	// main pool through a transaction pooler.
	PollOnly     bool
	PollInterval time.Duration
	// ListenIdle is how long the builder keeps listening for notifications
	// once no build runs (DefaultListenIdle when 0). Then its session
	// sends UNLISTEN *, so that the farm's notifying commits no longer wake
	// it (the session stays: it holds the name's lock), and listens again
	// when it takes a task; meanwhile its heartbeat reads its row.
	ListenIdle time.Duration
}

// UIDRange is a range of host uids: First, First+1, ..., First+Count-1.
type UIDRange struct {
	First, Count uint32
}

// DefaultLogLimit is the default cap on the log stored for one attempt.
const DefaultLogLimit = 32 << 20

// DefaultBuildUser is the account sbuild and mmdebstrap run as when the
// builder runs as root and Config.BuildUser is not set.
const DefaultBuildUser = "kiln-build"

// DefaultPollInterval is how often a builder whose River client polls
// (Config.PollOnly) looks for new River jobs: the mean submit-to-start
// delay it adds is about half of it (docs/scaling.md).
const DefaultPollInterval = time.Second

// DefaultGrace is how long builds may run on after SIGTERM unless set.
const DefaultGrace = 30 * time.Second

// loadedPlatform is a platform as a builder has loaded it (platform.Platform),
// with its backend made and its build tools' versions found.
type loadedPlatform struct {
	// Platform is the row as read (platform.Get): name, arch, backend and
	// its settings (for the backend made per task in the platform's
	// environment), timeout.
	platform.Platform
	// backend builds the platform's packages; versions are its tools'.
	backend  backend.Backend
	versions map[string]string
	limits   sandbox.Limits
}

// unshares says whether the platform's builds run sbuild in unshare mode
// (in the platform's environment when it names no chroot, or by its
// chroot_mode), which maps subordinate ids.
func (p *loadedPlatform) unshares() bool {
	if p.Backend != "sbuild" {
		return false
	}
	_, chroot := p.BackendSettings["chroot"]
	return !chroot || p.BackendSettings["chroot_mode"] == "unshare"
}

// attemptRun is a build in progress.
type attemptRun struct {
	task    int64
	attempt int
	cancel  context.CancelCauseFunc
	// takenBy is the database backend that took the attempt (task.Taken's
	// Session), and ownSeen is set once its NOTIFY kiln_task for the take
	// has arrived: that one notification needs no check (onNotify).
	takenBy uint32
	ownSeen atomic.Bool
	// ending is set once the build is over and its result is being
	// written: heartbeats go on, but a refusal no longer stops anything.
	ending atomic.Bool
	// fenced is set by the first heartbeat that finds the attempt no
	// longer held (a notification's check and the periodic heartbeat may
	// both find it): the build is stopped, and the fact logged, once.
	fenced atomic.Bool
}

// Builder is a running builder daemon.
type Builder struct {
	cfg Config
	db  *pgxpool.Pool
	log *slog.Logger
	// buildUser is the account sbuild and mmdebstrap run as (nil when the
	// builder is not root or builds no sbuild platform).
	buildUser *sandbox.User
	// removeMapped is set for a rootless builder of sbuild platforms: what
	// it cannot remove of an attempt's directory it removes with its
	// subordinate ids mapped (removeTree).
	removeMapped bool
	// ids hands out build uids when the builder runs as root (nil
	// otherwise: builds map to the builder's own uid).
	ids *sandbox.IDPool

	// slots caps the builds across queues: River's MaxWorkers is per queue.
	slots    chan struct{}
	stopping chan struct{}

	mu        sync.Mutex
	platforms map[string]*loadedPlatform
	running   map[int64]*attemptRun
	// idleSince is when the last build ended (or the builder was made);
	// guarded by mu. runStarted wakes the listen loop when a build begins,
	// runsEnded when the last one ends (listen.go); listening says whether
	// it has a listening session.
	idleSince  time.Time
	runStarted chan struct{}
	runsEnded  chan struct{}
	listening  atomic.Bool

	lastTick atomic.Int64 // unix nanoseconds of the heartbeat loop's last round

	// enabled mirrors kiln.builder.enabled (from NOTIFY kiln_builder and
	// every heartbeat); enabledChanged wakes Run to start or stop its feed.
	enabled        atomic.Bool
	enabledChanged chan struct{}
	feed           atomic.Pointer[feed] // the feed taking tasks; nil while disabled

	// sess is the builder's session connection: it holds the advisory lock
	// of the builder's name when locked (recover.go), and LISTENs while
	// builds run (listen.go). Only the listen loop touches them once Run
	// started.
	sess           *pgx.Conn
	locked         bool
	nameLockWarned bool

	// takes, logs and finishes join the slots' takes, log batches and
	// finishes that wait at the same moment into one statement each
	// (batch.go).
	takes    *group[task.Taking, task.TakeOutcome]
	logs     *group[task.Logging, bool]
	finishes *group[task.Finishing, task.FinishOutcome]
}

// Causes of a build's end other than the build itself.
var (
	errTimedOut = errors.New("build exceeded the platform's timeout")
	errFenced   = errors.New("the attempt is no longer current (cancelled, timed out or declared lost)")
	errShutdown = errors.New("the builder is shutting down")
)

// New checks the configuration, reads the platforms and prepares a builder.
// The pool should allow at least 2×Slots+6 connections.
func New(ctx context.Context, db *pgxpool.Pool, cfg Config) (*Builder, error) {
	if err := checkConfig(&cfg); err != nil {
		return nil, err
	}
	b := &Builder{
		cfg:       cfg,
		db:        db,
		log:       cfg.Logger,
		slots:     make(chan struct{}, cfg.Slots),
		stopping:  make(chan struct{}),
		platforms: map[string]*loadedPlatform{},
		running:   map[int64]*attemptRun{},
		idleSince: time.Now(),

		runStarted:     make(chan struct{}, 1),
		runsEnded:      make(chan struct{}, 1),
		enabledChanged: make(chan struct{}, 1),
	}
	b.takes = &group[task.Taking, task.TakeOutcome]{max: batchMax, timeout: time.Minute,
		run: func(ctx context.Context, reqs []task.Taking) ([]task.TakeOutcome, error) {
			return task.TakeMany(ctx, b.db, b.cfg.Name, reqs)
		}}
	b.logs = &group[task.Logging, bool]{max: batchMax, timeout: 30 * time.Second,
		weight: func(l task.Logging) int { return len(l.Text) }, maxWeight: batchMaxBytes,
		run: func(ctx context.Context, items []task.Logging) ([]bool, error) {
			return task.LogMany(ctx, b.db, b.cfg.Name, items)
		}}
	b.finishes = &group[task.Finishing, task.FinishOutcome]{max: batchMax, timeout: 2 * time.Minute,
		weight: inlineBytes, maxWeight: batchMaxBytes,
		run: func(ctx context.Context, items []task.Finishing) ([]task.FinishOutcome, error) {
			return task.FinishMany(ctx, b.db, b.cfg.Name, items)
		}}
	if err := sandbox.CheckProc(); err != nil {
		return nil, err
	}
	for _, p := range cfg.Platforms {
		pl, err := b.loadPlatform(ctx, p)
		if err != nil {
			return nil, err
		}
		pl.versions = pl.backend.Versions(ctx)
		b.platforms[p] = pl
	}
	for _, p := range b.platforms {
		if p.Backend == "sbuild" {
			// nil when the builder is not root.
			u, err := sandbox.LookupUser(cmp.Or(cfg.BuildUser, DefaultBuildUser))
			if err != nil {
				return nil, err
			}
			b.buildUser = u
			break
		}
	}
	for _, p := range b.platforms {
		if p.unshares() {
			// A host where sbuild and mmdebstrap cannot map the
			// subordinate ids would fail every build: refuse it now.
			if err := sandbox.CheckSubordinateIDs(ctx, b.buildUser); err != nil {
				return nil, fmt.Errorf("platform %s: %w", p.Name, err)
			}
			b.removeMapped = b.buildUser == nil
			break
		}
	}
	if os.Geteuid() == 0 {
		ids, err := sandbox.ClaimIDs(cfg.UIDLockDir, cfg.BuildUIDs.First, cfg.BuildUIDs.Count, cfg.Slots)
		if err != nil {
			return nil, err
		}
		b.ids = ids
	}
	return b, nil
}

func checkConfig(cfg *Config) error {
	if cfg.Name == "" {
		return errors.New("a builder needs a name (--name)")
	}
	if len(cfg.Platforms) == 0 {
		return errors.New("a builder needs at least one platform (--platform)")
	}
	if cfg.Slots < 1 || cfg.Slots > 256 {
		return fmt.Errorf("slots must be between 1 and 256, not %d", cfg.Slots)
	}
	if cfg.WorkDir == "" || !filepath.IsAbs(cfg.WorkDir) {
		return fmt.Errorf("the work directory must be an absolute path, not %q", cfg.WorkDir)
	}
	// Build output is opened beneath the work directory with symbolic
	// links refused, so its own path must hold none.
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	wd, err := filepath.EvalSymlinks(cfg.WorkDir)
	if err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	cfg.WorkDir = wd
	if cfg.Host == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("host name: %w", err)
		}
		cfg.Host = h
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 5 * time.Second
	}
	if cfg.ListenIdle <= 0 {
		cfg.ListenIdle = DefaultListenIdle
	}
	if cfg.LogFlush <= 0 {
		cfg.LogFlush = 250 * time.Millisecond
	}
	if cfg.LogLimit <= 0 {
		cfg.LogLimit = DefaultLogLimit
	}
	if cfg.Grace < 0 {
		return errors.New("the shutdown grace must not be negative")
	}
	if cfg.BuildUIDs.Count == 0 {
		cfg.BuildUIDs = UIDRange{First: sandbox.DefaultIDFirst, Count: sandbox.DefaultIDCount}
	}
	cfg.UIDLockDir = cmp.Or(cfg.UIDLockDir, sandbox.DefaultLockDir)
	if cfg.Environments == nil {
		cfg.Environments = &environment.Cache{Dir: filepath.Join(cfg.WorkDir, "environments"), Keep: 4}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return nil
}

// loadPlatform reads a platform and sets up its backend.
func (b *Builder) loadPlatform(ctx context.Context, name string) (*loadedPlatform, error) {
	row, err := platform.Get(ctx, b.db, name, false)
	if err != nil {
		return nil, err
	}
	p := loadedPlatform{Platform: row, limits: row.Limits()}
	p.backend, err = backend.New(backend.Platform{Backend: row.Backend, Arch: row.Arch, Settings: row.BackendSettings}, b.cfg.Backend)
	if err != nil {
		return nil, fmt.Errorf("platform %s: %w", name, err)
	}
	return &p, nil
}

// platform returns a platform's settings as last read.
func (b *Builder) platform(name string) *loadedPlatform {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.platforms[name]
}

// BuildTimeout is how long a build on a platform may run: the River
// worker's timeout of its build River jobs (see feedWorker).
func (b *Builder) BuildTimeout(name string) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	if p := b.platforms[name]; p != nil {
		return p.Timeout
	}
	return time.Minute // not ours: buildTask refuses it at once
}

// Run registers the builder and works its queues until ctx ends; then it
// stops taking work, lets running builds go on for the grace period, gives
// back what still runs and marks the builder offline. While the builder is
// disabled (kiln.builder.enabled) it takes no tasks.
func (b *Builder) Run(ctx context.Context) error {
	if err := b.register(ctx); err != nil {
		return err
	}
	locked := b.lockName(ctx)
	defer b.closeSession()
	if err := b.prepareWorkDir(ctx); err != nil {
		return err
	}
	if locked {
		if err := b.recoverTasks(ctx); err != nil {
			return err
		}
	}

	// Loops run until the very end, past the grace period.
	loops, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	defer stopLoops()
	var first *feed
	if b.enabled.Load() {
		var err error
		if first, err = b.startFeed(loops); err != nil {
			return err
		}
	}
	b.lastTick.Store(time.Now().UnixNano())
	var wg sync.WaitGroup
	wg.Go(func() { b.heartbeatLoop(loops) })
	wg.Go(func() { b.listenLoop(loops) })
	wg.Go(func() { daemon.Watchdog(loops, b.log, b.Alive) })

	b.log.Info("builder ready", "name", b.cfg.Name, "platforms", b.cfg.Platforms, "slots", b.cfg.Slots,
		"build_uids", b.ids != nil, "enabled", b.enabled.Load())
	_ = daemon.Notify("READY=1")
	if first != nil {
		b.status("building " + strings.Join(b.cfg.Platforms, ", "))
	} else {
		b.log.Info("builder disabled: taking no tasks until it is enabled", "how", "kiln admin builder enable "+b.cfg.Name)
		b.status("disabled (kiln admin builder enable " + b.cfg.Name + ")")
	}

	feeds := b.runFeeds(ctx, loops, first)
	b.shutdown(loops, feeds)
	stopLoops()
	wg.Wait()
	b.markOffline()
	if b.ids != nil {
		b.ids.Close()
	}
	b.log.Info("builder stopped")
	return nil
}

// status tells systemd what the builder does.
func (b *Builder) status(s string) { _ = daemon.Notify("STATUS=" + s) }

// shutdown stops every feed, waits up to the grace period for running
// builds and then gives back those that still run.
func (b *Builder) shutdown(ctx context.Context, feeds []*feed) {
	_ = daemon.Notify("STOPPING=1")
	b.log.Info("stopping: taking no more work", "grace", b.cfg.Grace, "running", len(b.snapshot()))
	close(b.stopping)
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	if _, err := b.db.Exec(sctx, "UPDATE kiln.builder SET draining = true WHERE name = $1", b.cfg.Name); err != nil {
		b.log.Warn("marking the builder draining", "err", err)
	}
	cancel()
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for _, f := range feeds {
			b.stopFeed(ctx, f)
		}
		for _, f := range feeds {
			<-f.done
		}
	}()
	grace := time.NewTimer(b.cfg.Grace)
	defer grace.Stop()
	select {
	case <-stopped:
		return
	case <-grace.C:
	}
	for _, r := range b.snapshot() {
		b.log.Info("giving back", "task", r.task, "attempt", r.attempt)
		r.cancel(errShutdown)
	}
	<-stopped
}

func (b *Builder) markOffline() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := b.db.Exec(ctx, "UPDATE kiln.builder SET state = 'offline', draining = false WHERE name = $1", b.cfg.Name); err != nil {
		b.log.Warn("marking the builder offline", "err", err)
	}
}

// register creates or updates the builder's row and its platforms. A name
// registered by another database role is refused.
func (b *Builder) register(ctx context.Context) error {
	tx, err := b.db.Begin(ctx)
	if err != nil {
		return fmt.Errorf("registering: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck
	var enabled bool
	err = tx.QueryRow(ctx, `INSERT INTO kiln.builder AS b (name, host, slots, version, state, heartbeat_at, started_at)
		VALUES ($1, $2, $3, $4, 'online', now(), now())
		ON CONFLICT (name) DO UPDATE SET host = EXCLUDED.host, slots = EXCLUDED.slots, version = EXCLUDED.version,
			state = 'online', draining = false, heartbeat_at = now(), started_at = now()
		WHERE b.role = session_user
		RETURNING enabled`, b.cfg.Name, b.cfg.Host, b.cfg.Slots, b.cfg.Version).Scan(&enabled)
	if errors.Is(err, pgx.ErrNoRows) {
		var owner string
		_ = tx.QueryRow(ctx, "SELECT role FROM kiln.builder WHERE name = $1", b.cfg.Name).Scan(&owner)
		return fmt.Errorf("builder %s is registered by database role %s, not by this one", b.cfg.Name, owner)
	}
	if err != nil {
		return fmt.Errorf("registering builder %s: %w", b.cfg.Name, err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO kiln.builder_platform (builder, platform)
		SELECT $1, unnest($2::text[]) ON CONFLICT DO NOTHING`, b.cfg.Name, b.cfg.Platforms); err != nil {
		return fmt.Errorf("registering platforms: %w", err)
	}
	if _, err := tx.Exec(ctx, `DELETE FROM kiln.builder_platform
		WHERE builder = $1 AND platform <> ALL($2::text[])
		  AND NOT EXISTS (SELECT 1 FROM kiln.task t WHERE t.builder = $1 AND t.platform = builder_platform.platform)`,
		b.cfg.Name, b.cfg.Platforms); err != nil {
		return fmt.Errorf("unregistering platforms: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("registering: %w", err)
	}
	b.enabled.Store(enabled)
	return nil
}

// prepareWorkDir creates the work directory, removes what earlier runs left
// and checks that a sandboxed command runs there.
func (b *Builder) prepareWorkDir(ctx context.Context) error {
	if err := os.MkdirAll(b.cfg.WorkDir, 0o755); err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	old, _ := filepath.Glob(filepath.Join(b.cfg.WorkDir, "task-*"))
	for _, d := range old {
		if err := b.removeTree(d); err != nil {
			return fmt.Errorf("removing %s left by an earlier run: %w", d, err)
		}
	}
	sandboxed := false
	for _, p := range b.platforms {
		sandboxed = sandboxed || !p.backend.SelfIsolating()
	}
	if !sandboxed {
		return nil
	}
	id := b.selftestID()
	dirs, err := makeAttemptDirs(filepath.Join(b.cfg.WorkDir, "task-selftest"), id)
	if dirs != nil {
		defer dirs.close()
		defer b.removeTree(dirs.top) //nolint:errcheck
	}
	if err != nil {
		return fmt.Errorf("work directory: %w", err)
	}
	var out strings.Builder
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	sb := b.sandbox(dirs, id, sandbox.Limits{Processes: sandbox.DefaultProcesses})
	err = sb.Run(cctx, sandbox.Command{Dir: dirs.build, Args: []string{"touch", "ok"}, Output: &out})
	if err != nil {
		return fmt.Errorf("a sandboxed command cannot run in %s (is bubblewrap installed, may unprivileged users make user namespaces, and can the build uid reach the directory?): %w: %s",
			b.cfg.WorkDir, err, strings.TrimSpace(out.String()))
	}
	return nil
}

// selftestID is the build uid of the start-up check: one of the pool's,
// not in use yet.
func (b *Builder) selftestID() *sandbox.ID {
	if b.ids == nil {
		return nil
	}
	id := b.ids.Get()
	b.ids.Put(id)
	return &id
}

// sandbox returns the sandbox of an attempt: its work directory writable,
// its local repository read-only, as id, within limits.
func (b *Builder) sandbox(dirs *attemptDirs, id *sandbox.ID, limits sandbox.Limits) *sandbox.Sandbox {
	return &sandbox.Sandbox{Bwrap: b.cfg.Bwrap, Work: dirs.build, ReadOnly: []string{dirs.repo},
		Hide: b.cfg.Hide, ID: id, Limits: limits}
}

// RescueMargin is how far past the longest platform timeout River's
// stuck-job rescue waits; the janitor's heartbeat check finds dead builders
// long before.
const RescueMargin = time.Hour

// snapshot returns the builds in progress.
func (b *Builder) snapshot() []*attemptRun {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]*attemptRun, 0, len(b.running))
	for _, r := range b.running {
		out = append(out, r)
	}
	return out
}

// Alive is the liveness check for systemd's watchdog: the heartbeat loop
// goes round and the River client runs. A database outage does not make the
// builder unalive (restarting would kill builds that can still finish).
func (b *Builder) Alive(context.Context) error {
	last := time.Unix(0, b.lastTick.Load())
	if age := time.Since(last); age > 3*b.cfg.Heartbeat+10*time.Second {
		return fmt.Errorf("the heartbeat loop has not run for %s", age.Round(time.Second))
	}
	if f := b.feed.Load(); f != nil {
		select {
		case <-f.client.Stopped():
			return errors.New("the River client has stopped")
		default:
		}
	}
	return nil
}

// Health is the health endpoint's check: alive and the database answers.
func (b *Builder) Health(ctx context.Context) error {
	if err := b.Alive(ctx); err != nil {
		return err
	}
	if err := b.db.Ping(ctx); err != nil {
		return fmt.Errorf("database: %w", err)
	}
	return nil
}

// heartbeatLoop heartbeats the builder row and every held task until ctx
// ends. Errors are logged and the loop goes on: the pool reconnects.
func (b *Builder) heartbeatLoop(ctx context.Context) {
	t := time.NewTicker(b.cfg.Heartbeat)
	defer t.Stop()
	failing := false
	for {
		b.lastTick.Store(time.Now().UnixNano())
		err := b.heartbeat(ctx)
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			b.log.Warn("heartbeat failed; retrying", "err", err)
			failing = true
		case err == nil && failing:
			b.log.Info("heartbeat works again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (b *Builder) heartbeat(ctx context.Context) error {
	// A heartbeat under way finishes even when the loop is stopped, so the
	// "online" it writes cannot land after markOffline's "offline" (a
	// cancelled statement may still run on the server).
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.Heartbeat+5*time.Second)
	defer cancel()
	var enabled bool
	err := b.db.QueryRow(cctx, "UPDATE kiln.builder SET heartbeat_at = now(), state = 'online' WHERE name = $1 RETURNING enabled",
		b.cfg.Name).Scan(&enabled)
	switch {
	case err == nil:
		b.setEnabled(enabled)
	case !errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("builder heartbeat: %w", err)
	}
	return b.heartbeatTasks(cctx, b.snapshot())
}

// heartbeatTasks is protocol step 2 (task.Heartbeat) for the attempts
// given, in one statement: the builds of those it no longer holds (fenced
// off: cancelled, timed out, declared lost) are killed.
func (b *Builder) heartbeatTasks(ctx context.Context, runs []*attemptRun) error {
	held := make([]task.Held, len(runs))
	for i, r := range runs {
		held[i] = task.Held{Task: r.task, Attempt: r.attempt}
	}
	fenced, err := task.Heartbeat(ctx, b.db, b.cfg.Name, held)
	if err != nil {
		return err
	}
	for _, id := range fenced {
		for _, r := range runs {
			if r.task == id && !r.ending.Load() && r.fenced.CompareAndSwap(false, true) {
				b.log.Info("attempt fenced off; stopping its build", "task", r.task, "attempt", r.attempt)
				r.cancel(errFenced)
			}
		}
	}
	return nil
}

// session is the pool for session-level state (Config.Session).
func (b *Builder) session() *pgxpool.Pool {
	if b.cfg.Session != nil {
		return b.cfg.Session
	}
	return b.db
}
