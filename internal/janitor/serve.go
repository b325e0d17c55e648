package janitor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/dbconn"
	kplatform "github.com/kiln-build/kiln/internal/platform"
	"github.com/kiln-build/kiln/riverjob"
)

// RunConfig is how kiln-janitor runs.
type RunConfig struct {
	// DB is the connection, as a member of kiln_janitor.
	DB      dbconn.Config
	Janitor Config
	// Once does one full round (upkeep and retention) and returns, for
	// cron; otherwise the daemon runs its rounds by Schedule.
	Once     bool
	Schedule Schedule
	Logger   *slog.Logger
}

// Run connects and runs the janitor until ctx ends (with Once, for one
// round).
func Run(ctx context.Context, rc RunConfig) error {
	if err := rc.Janitor.Check(); err != nil {
		return err
	}
	pool, err := dbconn.Open(ctx, rc.DB)
	if err != nil {
		return err
	}
	defer pool.Close()
	jan, err := New(pool, rc.Janitor, rc.Logger)
	if err != nil {
		return err
	}
	if rc.Once {
		_, err := jan.Round(ctx, All)
		return err
	}
	return serve(ctx, pool, jan, rc.Schedule, rc.Logger)
}

// Schedule is how the daemon runs its rounds.
type Schedule struct {
	// Upkeep and Prune are the periods of the upkeep and retention rounds.
	Upkeep, Prune time.Duration
	// RescueAfter is when River rescues a River job still running: beyond
	// the longest platform timeout plus Config.TimeoutGrace.
	RescueAfter time.Duration
	// HealthAddr serves GET /healthz when not empty.
	HealthAddr string
}

func (s Schedule) check() error {
	if s.Upkeep < time.Second || s.Prune < time.Second {
		return errors.New("the intervals must be at least 1s")
	}
	if s.RescueAfter <= 0 {
		return errors.New("--river-rescue-after must be positive")
	}
	return nil
}

// serve runs jan as kiln-janitor's daemon until ctx ends: a River client
// (riverjob.NewJanitorClient) works queue janitor, and while it is River's
// leader it enqueues the periodic rounds and runs River's maintenance
// (scheduling, rescue, cleaning).
func serve(ctx context.Context, pool *pgxpool.Pool, jan *Janitor, s Schedule, log *slog.Logger) error {
	if err := s.check(); err != nil {
		return err
	}
	warnIfRescueTooSoon(ctx, log, pool, s, jan.cfg.TimeoutGrace)
	client, err := riverjob.NewJanitorClient(pool, riverjob.JanitorConfig{
		Janitor: jan, UpkeepEvery: s.Upkeep, PruneEvery: s.Prune, RescueAfter: s.RescueAfter, Logger: log,
	})
	if err != nil {
		return err
	}
	if err := client.Start(ctx); err != nil {
		return fmt.Errorf("starting River client: %w", err)
	}
	alive := func(ctx context.Context) error { return pool.Ping(ctx) }
	if err := daemon.ServeHealth(ctx, log, s.HealthAddr, alive); err != nil {
		_ = client.StopAndCancel(context.WithoutCancel(ctx))
		return err
	}
	go daemon.Watchdog(ctx, log, alive)
	if err := daemon.Notify("READY=1"); err != nil {
		log.Warn("telling systemd we are ready", "err", err)
	}
	log.Info("kiln-janitor running", "interval", s.Upkeep, "prune_interval", s.Prune)

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
func warnIfRescueTooSoon(ctx context.Context, log *slog.Logger, pool *pgxpool.Pool, s Schedule, grace time.Duration) {
	longest, err := kplatform.LongestTimeout(ctx, pool)
	if err != nil {
		log.Warn("reading platform timeouts", "err", err)
		return
	}
	if need := longest + grace; need >= s.RescueAfter {
		log.Warn("--river-rescue-after is not beyond the longest platform timeout plus grace; River may rescue running builds",
			"river_rescue_after", s.RescueAfter, "longest_timeout_plus_grace", need)
	}
}
