// Command kiln-soak is a development tool, not part of a farm (make install
// leaves it out): it runs kiln under faults on the private cluster of
// .ci/with-cluster and checks that nothing is lost: real builders, splitter
// and janitor; builders killed and paused; PostgreSQL restarted; jobs
// cancelled. It exits 1 when a check fails. See docs/reliability.md.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/testsupport/soak"
)

func main() {
	ctx, stop := daemon.SignalContext(context.Background())
	defer stop()
	if err := app().RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "kiln-soak:", err)
		os.Exit(2)
	}
}

func app() *cli.App {
	self, _ := os.Executable()
	return &cli.App{
		Name:  "kiln-soak",
		Usage: "development tool: run kiln under faults (killed and paused builders, a database restart, cancels) and check nothing is lost",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "tasks", Usage: "tasks to submit, at least", Value: 1000},
			&cli.IntFlag{Name: "builders", Usage: "kiln-builder processes", Value: 4},
			&cli.IntFlag{Name: "slots", Usage: "slots of each builder", Value: 2},
			&cli.DurationFlag{Name: "build-time", Usage: "how long each noop build sleeps", Value: 300 * time.Millisecond},
			&cli.IntFlag{Name: "rpm-every", Usage: "every Nth job also builds with rpmbuild (0: never)", Value: 25},
			&cli.IntFlag{Name: "kills", Usage: "builders killed with SIGKILL (and restarted)", Value: 10},
			&cli.IntFlag{Name: "cancels", Usage: "jobs cancelled mid-run with kiln cancel", Value: 10},
			&cli.BoolFlag{Name: "pause", Usage: "pause one builder with SIGSTOP past the horizon", Value: true},
			&cli.BoolFlag{Name: "restart-db", Usage: "restart PostgreSQL once mid-run", Value: true},
			&cli.DurationFlag{Name: "horizon", Usage: "the janitor's heartbeat horizon (builders heartbeat six times within it)", Value: 3 * time.Second},
			&cli.DurationFlag{Name: "interval", Usage: "the janitor's round interval", Value: time.Second},
			&cli.Uint64Flag{Name: "seed", Usage: "seed of the random moments and victims (0: random; the report prints it)"},
			&cli.DurationFlag{Name: "timeout", Usage: "longest the run may take", Value: 15 * time.Minute},
			&cli.StringFlag{Name: "bin", Usage: "directory of kiln, kiln-builder, kiln-splitter and kiln-janitor", Value: filepath.Dir(self)},
			&cli.BoolFlag{Name: "via-pgbouncer", Usage: "builders connect through the cluster's PgBouncer (transaction pooling), LISTEN straight to the primary"},
			&cli.DurationFlag{Name: "poll-interval", Usage: "with --via-pgbouncer, the builders' River poll interval", Value: 200 * time.Millisecond},
			&cli.BoolFlag{Name: "failover", Usage: "kill the primary mid-run and promote the synchronous standby (KILN_PG_SYNC_STANDBY=1 .ci/with-cluster; with --restart-db=false)"},
			&cli.BoolFlag{Name: "keep", Usage: "keep the database and the work directory (logs in WORK/logs)"},
		},
		Action: run,
	}
}

func run(c *cli.Context) error {
	cl, err := soak.ClusterFromEnv()
	if err != nil {
		return err
	}
	rep, err := soak.Run(c.Context, soak.Config{
		Tasks: c.Int("tasks"), Builders: c.Int("builders"), Slots: c.Int("slots"),
		BuildTime: c.Duration("build-time"), RPMEvery: c.Int("rpm-every"),
		Kills: c.Int("kills"), Cancels: c.Int("cancels"), Pause: c.Bool("pause"), RestartDB: c.Bool("restart-db"),
		Horizon: c.Duration("horizon"), Interval: c.Duration("interval"),
		Seed: c.Uint64("seed"), Timeout: c.Duration("timeout"), Bin: c.String("bin"), Keep: c.Bool("keep"),
		ViaPgBouncer: c.Bool("via-pgbouncer"), PollInterval: c.Duration("poll-interval"), Failover: c.Bool("failover"),
		Out: os.Stdout,
	}, cl)
	if err != nil {
		return err
	}
	rep.Print(os.Stdout)
	if len(rep.Violations) > 0 {
		return cli.Exit(fmt.Sprintf("kiln-soak: %d violations", len(rep.Violations)), 1)
	}
	fmt.Println("kiln-soak: every check passed")
	return nil
}
