// Command kiln-splitter validates submitted jobs and splits them into tasks:
// it works River queue "incoming" (one validate River job per submitted
// job) and enqueues one build River job per task in the platform's queue.
// With --once it processes what is waiting and exits, for cron. See
// docs/submit.md.
package main

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/split"
)

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
			return split.Run(ctx, split.Config{
				DB:      dbconn.WithFlags(c, dbconn.Config{URL: c.String("db"), AppName: "kiln-splitter", MaxConns: int32(c.Int("workers")*2 + 4)}),
				Workers: c.Int("workers"), MaxFileSize: size, Once: c.Bool("once"), HealthAddr: c.String("health-addr"), Logger: log,
			})
		},
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "kiln-splitter:", err)
		os.Exit(1)
	}
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
