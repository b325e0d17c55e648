// Command kiln-splitter validates submitted jobs and splits them into tasks:
// it works River queue "incoming" (one validate River job per submitted
// job) and enqueues one build River job per task in the platform's queue.
// With --once it processes what is waiting and exits, for cron. See
// docs/submit.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/split"
	"github.com/kiln-build/kiln/jobs"
)

// config is what the flags set.
type config struct {
	db          dbconn.Config
	workers     int
	maxFileSize int64
	once        bool
	healthAddr  string
}

func main() {
	app := &cli.App{
		Name:  "kiln-splitter",
		Usage: "validate submitted kiln jobs and split them into tasks",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "db", Usage: "PostgreSQL connection string or URL (default: libpq's PG* environment variables)", EnvVars: []string{"KILN_DB"}},
			&cli.IntFlag{Name: "workers", Usage: "jobs validated at once", Value: 4, EnvVars: []string{"KILN_SPLITTER_WORKERS"}},
			&cli.StringFlag{Name: "max-file-size", Usage: "largest file a job may contain (bytes, or with K, M, G suffix)", Value: "2G", EnvVars: []string{"KILN_MAX_FILE_SIZE"}},
			&cli.BoolFlag{Name: "once", Usage: "process the waiting jobs, then exit (for cron)", EnvVars: []string{"KILN_SPLITTER_ONCE"}},
			&cli.StringFlag{Name: "health-addr", Usage: "serve GET /healthz on this address (empty: none)", EnvVars: []string{"KILN_HEALTH_ADDR"}},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", Value: "info", EnvVars: []string{"KILN_LOG_LEVEL"}},
		}, dbconn.KerberosFlags()...),
		Action: func(c *cli.Context) error {
			log, err := daemon.Logger(c.String("log-level"))
			if err != nil {
				return err
			}
			size, err := parseSize(c.String("max-file-size"))
			if err != nil {
				return err
			}
			ctx, stop := daemon.SignalContext(c.Context)
			defer stop()
			return run(ctx, log, config{
				db: dbconn.WithFlags(c, dbconn.Config{URL: c.String("db"), AppName: "kiln-splitter", MaxConns: int32(c.Int("workers")*2 + 4)}), workers: c.Int("workers"), maxFileSize: size,
				once: c.Bool("once"), healthAddr: c.String("health-addr"),
			})
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "kiln-splitter:", err)
		os.Exit(1)
	}
}

// run connects and works queue incoming until ctx ends (or, with once,
// until nothing is waiting).
func run(ctx context.Context, log *slog.Logger, cfg config) error {
	db, err := dbconn.Open(ctx, cfg.db)
	if err != nil {
		return err
	}
	defer db.Close()
	rc, err := jobs.NewSplitterClient(db, split.New(db, cfg.maxFileSize), log, cfg.workers)
	if err != nil {
		return err
	}
	if err := rc.Start(ctx); err != nil {
		return fmt.Errorf("starting the River client: %w", err)
	}
	log.Info("kiln-splitter working queue "+jobs.QueueIncoming, "workers", cfg.workers, "max_file_size", cfg.maxFileSize, "once", cfg.once)
	if cfg.once {
		err := drain(ctx, db)
		if serr := stopRiver(rc, log); err == nil {
			err = serr
		}
		return err
	}
	alive := func(ctx context.Context) error { return db.Ping(ctx) }
	if err := daemon.ServeHealth(ctx, log, cfg.healthAddr, alive); err != nil {
		_ = stopRiver(rc, log)
		return err
	}
	_ = daemon.Notify("READY=1")
	go daemon.Watchdog(ctx, log, alive)
	<-ctx.Done()
	_ = daemon.Notify("STOPPING=1")
	log.Info("stopping: finishing the jobs being validated")
	return stopRiver(rc, log)
}

// drain waits until queue incoming has no validate River job available to
// run now. Those already taken finish in stopRiver; ones waiting for a
// retry later are left for the next run.
func drain(ctx context.Context, db *pgxpool.Pool) error {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		var waiting int
		err := db.QueryRow(ctx, `SELECT count(*) FROM river.river_job
			WHERE queue = $1 AND state = 'available' AND scheduled_at <= now()`, jobs.QueueIncoming).Scan(&waiting)
		if err != nil {
			return fmt.Errorf("counting waiting jobs: %w", err)
		}
		if waiting == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// stopRiver lets running validations finish (at most a minute).
func stopRiver(rc *river.Client[pgx.Tx], log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := rc.Stop(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Error("stopping the River client", "err", err)
		return err
	}
	return nil
}

// parseSize reads a byte count with an optional K, M or G (binary) suffix.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	t := strings.ToUpper(strings.TrimSpace(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	for suffix, m := range map[string]int64{"K": 1 << 10, "M": 1 << 20, "G": 1 << 30} {
		if strings.HasSuffix(t, suffix) {
			mult, t = m, strings.TrimSuffix(t, suffix)
			break
		}
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("size %q: give a positive number of bytes, optionally with K, M or G", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q is too large", s)
	}
	return n * mult, nil
}
