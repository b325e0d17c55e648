// Command kiln-janitor keeps the farm honest: it takes tasks back from
// builders that went silent, ends builds that ran past their timeout, marks
// silent builders offline, repairs disagreements between tasks, jobs and
// River jobs, and prunes logs, artifacts and blobs by retention.
//
// As a daemon its rounds are River periodic jobs, enqueued by River's elected
// leader, so several janitors may run. With --once it does one full round
// and exits, for cron. See docs/janitor.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/janitor"
	"github.com/kiln-build/kiln/jobs"
	"github.com/kiln-build/kiln/schema"
)

func main() {
	ctx, stop := daemon.SignalContext(context.Background())
	defer stop()
	if err := app().RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "kiln-janitor:", err)
		os.Exit(1)
	}
}

func app() *cli.App {
	def := janitor.DefaultConfig()
	return &cli.App{
		Name:  "kiln-janitor",
		Usage: "requeue tasks of silent builders, end runaway builds, repair and prune the kiln build farm",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "db", Usage: "PostgreSQL connection string or URL (default: libpq's PG* environment variables)", EnvVars: []string{"KILN_DB"}},
			&cli.BoolFlag{Name: "once", Usage: "do one full round (upkeep and retention) and exit, for cron", EnvVars: []string{"KILN_JANITOR_ONCE"}},
			&cli.DurationFlag{Name: "horizon", Usage: "a building task or builder without a heartbeat for this long is lost", Value: def.Horizon, EnvVars: []string{"KILN_JANITOR_HORIZON"}},
			&cli.DurationFlag{Name: "timeout-grace", Usage: "a build running longer than its platform's timeout plus this is ended as timed_out", Value: def.TimeoutGrace, EnvVars: []string{"KILN_JANITOR_TIMEOUT_GRACE"}},
			&cli.DurationFlag{Name: "retention", Usage: "logs and artifacts of jobs finished longer ago are pruned, unless the bucket sets its own retention", Value: def.Retention, EnvVars: []string{"KILN_JANITOR_RETENTION"}},
			&cli.DurationFlag{Name: "blob-grace", Usage: "unreferenced blobs older than this are removed", Value: def.BlobGrace, EnvVars: []string{"KILN_JANITOR_BLOB_GRACE"}},
			&cli.DurationFlag{Name: "delete-jobs-after", Usage: "delete the rows of jobs finished longer ago than this (0 keeps job history forever)", EnvVars: []string{"KILN_JANITOR_DELETE_JOBS_AFTER"}},
			&cli.DurationFlag{Name: "recheck-jobs-for", Usage: "compare a finished job's status with its tasks for this long after it finished", Value: def.RecheckJobsFor, EnvVars: []string{"KILN_JANITOR_RECHECK_JOBS_FOR"}},
			&cli.DurationFlag{Name: "validate-horizon", Usage: "a job submitted this long ago without a live validate River job gets a new one", Value: def.ValidateHorizon, EnvVars: []string{"KILN_JANITOR_VALIDATE_HORIZON"}},
			&cli.IntFlag{Name: "max-revalidate", Usage: "a job is marked invalid when this many new validate River jobs did not validate it", Value: def.MaxRevalidate, EnvVars: []string{"KILN_JANITOR_MAX_REVALIDATE"}},
			&cli.IntFlag{Name: "batch", Usage: "most candidates of each kind handled in one round", Value: def.Batch, EnvVars: []string{"KILN_JANITOR_BATCH"}},
			&cli.DurationFlag{Name: "interval", Usage: "time between upkeep rounds (lost, runaway, offline, consistency)", Value: 15 * time.Second, EnvVars: []string{"KILN_JANITOR_INTERVAL"}},
			&cli.DurationFlag{Name: "prune-interval", Usage: "time between retention rounds", Value: 10 * time.Minute, EnvVars: []string{"KILN_JANITOR_PRUNE_INTERVAL"}},
			&cli.DurationFlag{Name: "river-rescue-after", Usage: "River rescues River jobs running longer than this; keep it beyond the longest platform timeout plus the grace", Value: 24 * time.Hour, EnvVars: []string{"KILN_JANITOR_RIVER_RESCUE_AFTER"}},
			&cli.StringFlag{Name: "health-addr", Usage: "serve GET /healthz on this address (empty: off)", EnvVars: []string{"KILN_JANITOR_HEALTH_ADDR"}},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", Value: "info", EnvVars: []string{"KILN_LOG_LEVEL"}},
		}, dbconn.KerberosFlags()...),
		Action: run,
	}
}

func run(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", c.Args().Slice())
	}
	log, err := daemon.Logger(c.String("log-level"))
	if err != nil {
		return err
	}
	cfg := janitor.Config{
		Horizon:         c.Duration("horizon"),
		TimeoutGrace:    c.Duration("timeout-grace"),
		Retention:       c.Duration("retention"),
		BlobGrace:       c.Duration("blob-grace"),
		DeleteJobsAfter: c.Duration("delete-jobs-after"),
		RecheckJobsFor:  c.Duration("recheck-jobs-for"),
		ValidateHorizon: c.Duration("validate-horizon"),
		MaxRevalidate:   c.Int("max-revalidate"),
		Batch:           c.Int("batch"),
	}
	if err := cfg.Check(); err != nil {
		return err
	}
	ctx := c.Context
	pool, err := dbconn.Open(ctx, dbconn.WithFlags(c, dbconn.Config{URL: c.String("db"), AppName: "kiln-janitor"}))
	if err != nil {
		return err
	}
	defer pool.Close()
	jan, err := janitor.New(pool, cfg, log)
	if err != nil {
		return err
	}
	if c.Bool("once") {
		_, err := jan.Round(ctx, janitor.All)
		return err
	}
	return serve(ctx, log, pool, jan, schedule{
		upkeep:      c.Duration("interval"),
		prune:       c.Duration("prune-interval"),
		rescueAfter: c.Duration("river-rescue-after"),
		grace:       cfg.TimeoutGrace,
		healthAddr:  c.String("health-addr"),
	})
}

// schedule is how the daemon runs its rounds.
type schedule struct {
	upkeep, prune      time.Duration
	rescueAfter, grace time.Duration
	healthAddr         string
}

func (s schedule) check() error {
	if s.upkeep < time.Second || s.prune < time.Second {
		return errors.New("the intervals must be at least 1s")
	}
	if s.rescueAfter <= 0 {
		return errors.New("--river-rescue-after must be positive")
	}
	return nil
}

// serve runs the janitor as a River client until ctx ends: it works queue
// janitor, and while it is River's leader it enqueues the periodic rounds
// and runs River's maintenance (scheduling, rescue, cleaning).
func serve(ctx context.Context, log *slog.Logger, pool *pgxpool.Pool, jan *janitor.Janitor, s schedule) error {
	if err := s.check(); err != nil {
		return err
	}
	warnIfRescueTooSoon(ctx, log, pool, s)
	workers := river.NewWorkers()
	// A round may take at most a few intervals (upkeep) or one interval
	// (retention); a later round picks up what is left.
	river.AddWorker(workers, &jobs.JanitorUpkeepWorker{Janitor: jan, Limit: max(5*s.upkeep, time.Minute)})
	river.AddWorker(workers, &jobs.JanitorPruneWorker{Janitor: jan, Limit: max(s.prune, time.Minute)})
	// As leader, River's rescuer handles every kind; these are worked by
	// kiln-builder and kiln-splitter, never here.
	river.AddWorker(workers, &jobs.WorkedElsewhere[jobs.BuildArgs]{})
	river.AddWorker(workers, &jobs.WorkedElsewhere[jobs.ValidateArgs]{})
	client, err := river.NewClient(riverpgxv5.New(pool), &river.Config{
		Schema:               schema.RiverSchema,
		Queues:               map[string]river.QueueConfig{jobs.QueueJanitor: {MaxWorkers: 4}},
		Workers:              workers,
		PeriodicJobs:         jobs.JanitorPeriodicJobs(s.upkeep, s.prune),
		RescueStuckJobsAfter: s.rescueAfter,
		// Reindexing needs to own River's tables; the DBA does it.
		ReindexerSchedule: river.NeverSchedule(),
		Logger:            log,
	})
	if err != nil {
		return fmt.Errorf("creating River client: %w", err)
	}
	if err := client.Start(ctx); err != nil {
		return fmt.Errorf("starting River client: %w", err)
	}
	alive := func(ctx context.Context) error { return pool.Ping(ctx) }
	if err := daemon.ServeHealth(ctx, log, s.healthAddr, alive); err != nil {
		_ = client.StopAndCancel(context.WithoutCancel(ctx))
		return err
	}
	go daemon.Watchdog(ctx, log, alive)
	if err := daemon.Notify("READY=1"); err != nil {
		log.Warn("telling systemd we are ready", "err", err)
	}
	log.Info("kiln-janitor running", "interval", s.upkeep, "prune_interval", s.prune)

	<-ctx.Done()
	_ = daemon.Notify("STOPPING=1")
	log.Info("stopping: finishing the round in progress")
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if err := client.Stop(stopCtx); err != nil {
		log.Warn("round did not finish in time; cancelling it", "err", err)
		if err := client.StopAndCancel(context.WithoutCancel(ctx)); err != nil {
			return fmt.Errorf("stopping River client: %w", err)
		}
	}
	log.Info("stopped")
	return nil
}

// warnIfRescueTooSoon warns when River could rescue a build that is still
// running: its rescue must come after the longest platform timeout plus the
// grace (docs/protocol.md).
func warnIfRescueTooSoon(ctx context.Context, log *slog.Logger, pool *pgxpool.Pool, s schedule) {
	var longest float64
	if err := pool.QueryRow(ctx, `SELECT coalesce(extract(epoch FROM max(timeout)), 0)::float8 FROM kiln.platform`).Scan(&longest); err != nil {
		log.Warn("reading platform timeouts", "err", err)
		return
	}
	if need := time.Duration(longest*float64(time.Second)) + s.grace; need >= s.rescueAfter {
		log.Warn("--river-rescue-after is not beyond the longest platform timeout plus grace; River may rescue running builds",
			"river_rescue_after", s.rescueAfter, "longest_timeout_plus_grace", need)
	}
}
