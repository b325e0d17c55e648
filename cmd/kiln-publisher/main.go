// Command kiln-publisher turns finished jobs into repository snapshots of
// their buckets and signs them with the buckets' keys, held in its host's
// GNUPGHOME. It works the pending rows of kiln.publication_request, woken by
// NOTIFY kiln_publish and, in case a notification is missed, by a periodic
// look; all pending requests of a bucket go into one publication. See
// docs/repositories.md.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/repo"
)

func main() {
	ctx, stop := daemon.SignalContext(context.Background())
	defer stop()
	if err := app().RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "kiln-publisher:", err)
		os.Exit(1)
	}
}

func app() *cli.App {
	return &cli.App{
		Name:  "kiln-publisher",
		Usage: "publish finished jobs into their buckets' signed APT and rpm-md repositories",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "db", Usage: "PostgreSQL connection string or URL (default: libpq's PG* environment variables)", EnvVars: []string{"KILN_DB"}},
			&cli.StringFlag{Name: "gnupghome", Usage: "GnuPG home holding the buckets' secret signing keys (mode 0700, like a keytab)", Value: "/var/lib/kiln-publisher/gnupg", EnvVars: []string{"KILN_PUBLISHER_GNUPGHOME"}},
			&cli.StringFlag{Name: "workdir", Usage: "directory for the rpm-md trees createrepo_c updates and for scratch files", Value: "/var/lib/kiln-publisher/work", EnvVars: []string{"KILN_PUBLISHER_WORKDIR"}},
			&cli.BoolFlag{Name: "once", Usage: "publish what is pending and exit", EnvVars: []string{"KILN_PUBLISHER_ONCE"}},
			&cli.DurationFlag{Name: "poll", Usage: "look for pending requests this often even without a notification", Value: 30 * time.Second, EnvVars: []string{"KILN_PUBLISHER_POLL"}},
			&cli.DurationFlag{Name: "coalesce", Usage: "after a notification, wait this long for more before publishing", Value: 500 * time.Millisecond, EnvVars: []string{"KILN_PUBLISHER_COALESCE"}},
			&cli.StringFlag{Name: "health-addr", Usage: "serve GET /healthz on this address (empty: off)", EnvVars: []string{"KILN_PUBLISHER_HEALTH_ADDR"}},
			&cli.StringFlag{Name: "log-level", Usage: "debug, info, warn or error", Value: "info", EnvVars: []string{"KILN_LOG_LEVEL"}},
		}, dbconn.KerberosFlags()...),
		Commands: []*cli.Command{{
			Name:      "rotate-key",
			Usage:     "make a new signing key for a bucket, retire the old one and re-sign its repositories",
			ArgsUsage: "BUCKET",
			Action:    rotate,
		}},
		Action: run,
	}
}

func open(c *cli.Context) (*repo.Publisher, *pgxpool.Pool, *slog.Logger, error) {
	log, err := daemon.Logger(c.String("log-level"))
	if err != nil {
		return nil, nil, nil, err
	}
	keys := repo.Keyring{Home: c.String("gnupghome")}
	if err := keys.Check(); err != nil {
		return nil, nil, nil, err
	}
	if err := os.MkdirAll(c.String("workdir"), 0o700); err != nil {
		return nil, nil, nil, fmt.Errorf("work directory: %w", err)
	}
	pool, err := dbconn.Open(c.Context, dbconn.WithFlags(c, dbconn.Config{URL: c.String("db"), AppName: "kiln-publisher"}))
	if err != nil {
		return nil, nil, nil, err
	}
	return &repo.Publisher{DB: pool, Keys: keys, WorkDir: c.String("workdir"), Log: log}, pool, log, nil
}

func run(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", c.Args().Slice())
	}
	p, pool, log, err := open(c)
	if err != nil {
		return err
	}
	defer pool.Close()
	if c.Bool("once") {
		_, err := p.PublishPending(c.Context)
		return err
	}
	if addr := c.String("health-addr"); addr != "" {
		go func() {
			if err := daemon.ServeHealth(c.Context, log, addr, func(ctx context.Context) error { return pool.Ping(ctx) }); err != nil {
				log.Error("health endpoint", "err", err)
			}
		}()
	}
	daemon.Notify("READY=1") //nolint:errcheck
	return repo.Serve(c.Context, p, repo.ServeConfig{Poll: c.Duration("poll"), Coalesce: c.Duration("coalesce")})
}

func rotate(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("usage: kiln-publisher rotate-key BUCKET")
	}
	p, pool, _, err := open(c)
	if err != nil {
		return err
	}
	defer pool.Close()
	fpr, err := p.RotateKey(c.Context, c.Args().First())
	if err != nil {
		return err
	}
	fmt.Printf("bucket %s is now signed with key %s; its repositories are re-signed on the next publication\n", c.Args().First(), fpr)
	return nil
}
