// Command kiln-splitter validates submitted jobs and splits them into tasks:
// it works River queue "incoming" (one validate River job per submitted
// job) and enqueues one build River job per task in the platform's queue.
// With --once it processes what is waiting and exits, for cron. See
// docs/submit.md.
package main

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	kcli "github.com/kiln-build/kiln/internal/cli"
	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/format"
	"github.com/kiln-build/kiln/internal/split"
)

func main() { daemon.Main(app()) }

func app() *cli.App {
	return daemon.App("kiln-splitter", "validate submitted kiln jobs and split them into tasks", kcli.Version,
		[]cli.Flag{
			&cli.IntFlag{Name: "workers", Usage: "jobs validated at once", Value: 4, EnvVars: []string{"KILN_SPLITTER_WORKERS"}},
			&cli.StringFlag{Name: "max-file-size", Usage: "largest file a job may contain (bytes, or with K, M, G, T suffix)", Value: "2G", EnvVars: []string{"KILN_MAX_FILE_SIZE"}},
			&cli.BoolFlag{Name: "once", Usage: "process the waiting jobs, then exit (for cron)", EnvVars: []string{"KILN_SPLITTER_ONCE"}},
			daemon.HealthFlag("splitter"),
		}, run)
}

func run(c *cli.Context) error {
	common, err := daemon.Common(c, int32(c.Int("workers")*2+4))
	if err != nil {
		return err
	}
	size, err := format.ParseSize(c.String("max-file-size"))
	if err == nil && size == 0 {
		err = errors.New("give a positive size")
	}
	if err != nil {
		return fmt.Errorf("--max-file-size: %w", err)
	}
	return split.Run(c.Context, split.Config{
		DB: common.DB, HealthAddr: common.HealthAddr, Logger: common.Logger,
		Workers: c.Int("workers"), MaxFileSize: size, Once: c.Bool("once"),
	})
}
