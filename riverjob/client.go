package riverjob

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
)

// Client is the River client every role uses.
type Client = river.Client[pgx.Tx]

// SplitterFetchCooldown is the least time between two fetches of the
// splitter's River client (River's default is 100 ms): queue incoming sees
// few River jobs, and each waits for a person, so it fetches eagerly.
const SplitterFetchCooldown = 10 * time.Millisecond

// InserterFetchCooldown is the FetchCooldown of the insert-only clients. An
// inserter never fetches, but River also spaces out a client's insert
// notifications by it (at most one per queue per FetchCooldown, 100 ms by
// default); every submit and resubmit should wake the splitter at once.
const InserterFetchCooldown = time.Millisecond

// BuilderFetchCooldown is the least time between two fetches of a
// builder's River client (River's default is 100 ms, which alone made
// submit to build start take p50 57 ms). A short cooldown costs nothing
// when idle: with no River job waiting, River fetches only when notified
// of an insert or on its poll interval, so an idle builder makes no more
// queries; under load it fetches sooner after each completion.
const BuilderFetchCooldown = time.Millisecond

// config is what every kiln River client shares: River's tables in Schema,
// logs through log, and no reindexer (REINDEX needs the tables' owner,
// which no kiln role is; the DBA reindexes). A nil log leaves River's
// default logger. Leader election is off unless
// a role turns it on: River's leader enqueues the periodic jobs, and only
// kiln-janitor may be it (docs/janitor.md).
func config(log *slog.Logger) *river.Config {
	return &river.Config{
		Schema:                 Schema,
		Logger:                 log,
		ReindexerSchedule:      river.NeverSchedule(),
		LeaderElectionDisabled: true,
	}
}

func newClient(db *pgxpool.Pool, cfg *river.Config, role string) (*Client, error) {
	rc, err := river.NewClient(riverpgxv5.New(db), cfg)
	if err != nil {
		return nil, fmt.Errorf("setting up the River client of the %s: %w", role, err)
	}
	return rc, nil
}

// NewInserter returns an insert-only River client (it is never started),
// as kiln submit, kiln-web, the CLI, the janitor's repairs and the tests
// use to insert River jobs in their own transactions.
func NewInserter(db *pgxpool.Pool, log *slog.Logger) (*Client, error) {
	cfg := config(log)
	cfg.FetchCooldown = InserterFetchCooldown
	return newClient(db, cfg, "inserter")
}

// NewSplitterClient returns the River client kiln-splitter runs: it works
// queue incoming with workers (at most n at once) and inserts build River
// jobs, which it never works itself. id is its River client ID
// (NewSplitterID, with the client's lock held: takeover.go); empty, River
// picks one and the janitor does not take its River jobs over.
func NewSplitterClient(db *pgxpool.Pool, workers *river.Workers, n int, id string, log *slog.Logger) (*Client, error) {
	cfg := config(log)
	cfg.ID = id
	cfg.Queues = map[string]river.QueueConfig{QueueIncoming: {MaxWorkers: n}}
	cfg.Workers = workers
	cfg.FetchCooldown = SplitterFetchCooldown
	cfg.SkipUnknownJobCheck = true
	return newClient(db, cfg, "splitter")
}

// BuilderConfig is what a builder's River client is made of.
type BuilderConfig struct {
	// ID names the client in River's attempted_by; a builder uses its own
	// name in it, so River says who fetched a River job.
	ID string
	// Platforms are the platforms whose build queues it works, Slots
	// River jobs of each at once.
	Platforms []string
	Slots     int
	// Builder builds the tasks.
	Builder TaskBuilder
	// Environments makes platforms' next build environments (environment
	// River jobs, in the same queues).
	Environments EnvironmentMaker
	// RescueAfter is River's RescueStuckJobsAfter: beyond the longest
	// platform timeout, so River never rescues a build that still runs.
	RescueAfter time.Duration
	// PollOnly turns off River's LISTEN (for a pool through a transaction
	// pooler): it fetches every PollInterval (River's default when 0).
	PollOnly     bool
	PollInterval time.Duration
	Logger       *slog.Logger
}

// NewBuilderClient returns the River client of a builder: it works the
// build queues of its platforms with the build and environment workers.
func NewBuilderClient(db *pgxpool.Pool, c BuilderConfig) (*Client, error) {
	workers := river.NewWorkers()
	if err := river.AddWorkerSafely(workers, &BuildWorker{Builder: c.Builder}); err != nil {
		return nil, fmt.Errorf("registering the build worker: %w", err)
	}
	if err := river.AddWorkerSafely(workers, &EnvironmentWorker{Maker: c.Environments}); err != nil {
		return nil, fmt.Errorf("registering the environment worker: %w", err)
	}
	cfg := config(c.Logger)
	cfg.ID = c.ID
	cfg.Queues = map[string]river.QueueConfig{}
	for _, p := range c.Platforms {
		cfg.Queues[BuildQueue(p)] = river.QueueConfig{MaxWorkers: c.Slots}
	}
	cfg.Workers = workers
	cfg.FetchCooldown = BuilderFetchCooldown
	cfg.RescueStuckJobsAfter = c.RescueAfter
	cfg.PollOnly = c.PollOnly
	cfg.FetchPollInterval = c.PollInterval
	return newClient(db, cfg, "builder")
}

// JanitorConfig is what the janitor's River client is made of.
type JanitorConfig struct {
	// Janitor does the rounds.
	Janitor Janitor
	// UpkeepEvery and PruneEvery are the periods of the two rounds.
	UpkeepEvery, PruneEvery time.Duration
	// RescueAfter is when River's rescuer takes back a River job still
	// running: beyond the longest platform timeout plus the janitor's grace.
	RescueAfter time.Duration
	Logger      *slog.Logger
}

// NewJanitorClient returns kiln-janitor's River client, the only one that
// stands for River's leader: it works queue janitor, and while it leads it
// enqueues the periodic rounds and runs River's maintenance (scheduling,
// rescue, cleaning) for every kind.
func NewJanitorClient(db *pgxpool.Pool, c JanitorConfig) (*Client, error) {
	workers := river.NewWorkers()
	// A round may take at most a few intervals (upkeep) or one interval
	// (retention); a later round picks up what is left.
	river.AddWorker(workers, &JanitorUpkeepWorker{Janitor: c.Janitor, Limit: max(5*c.UpkeepEvery, time.Minute)})
	river.AddWorker(workers, &JanitorPruneWorker{Janitor: c.Janitor, Limit: max(c.PruneEvery, time.Minute)})
	// As leader, River's rescuer handles every kind; these are worked by
	// kiln-builder, kiln-splitter and kiln-reporter, never here.
	river.AddWorker(workers, &WorkedElsewhere[BuildArgs]{})
	river.AddWorker(workers, &WorkedElsewhere[ValidateArgs]{})
	river.AddWorker(workers, &WorkedElsewhere[ReportArgs]{})
	cfg := config(c.Logger)
	cfg.Queues = map[string]river.QueueConfig{QueueJanitor: {MaxWorkers: 4}}
	cfg.Workers = workers
	cfg.PeriodicJobs = JanitorPeriodicJobs(c.UpkeepEvery, c.PruneEvery)
	cfg.RescueStuckJobsAfter = c.RescueAfter
	cfg.LeaderElectionDisabled = false
	return newClient(db, cfg, "janitor")
}
