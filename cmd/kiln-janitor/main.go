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
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	kcli "github.com/kiln-build/kiln/internal/cli"
	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/janitor"
)

func main() { daemon.Main(app()) }

func app() *cli.App {
	def := janitor.DefaultConfig()
	return daemon.App("kiln-janitor", "requeue tasks of silent builders, end runaway builds, repair and prune the kiln build farm", kcli.Version,
		[]cli.Flag{
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
			daemon.HealthFlag("janitor"),
		}, run)
}

func run(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", c.Args().Slice())
	}
	common, err := daemon.Common(c, 0)
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
	return janitor.Run(c.Context, janitor.RunConfig{
		DB: common.DB, Janitor: cfg, Once: c.Bool("once"), Logger: common.Logger,
		Schedule: janitor.Schedule{
			Upkeep:      c.Duration("interval"),
			Prune:       c.Duration("prune-interval"),
			RescueAfter: c.Duration("river-rescue-after"),
			HealthAddr:  common.HealthAddr,
		},
	})
}
