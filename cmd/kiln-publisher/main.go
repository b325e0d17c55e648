// Command kiln-publisher turns finished jobs into repository snapshots of
// their buckets and signs them with the buckets' keys, held in its host's
// GNUPGHOME. It works the pending rows of kiln.publication_request, woken by
// NOTIFY kiln_publish and, in case a notification is missed, by a periodic
// look; all pending requests of a bucket go into one publication. See
// docs/repositories.md.
package main

import (
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	kcli "github.com/kiln-build/kiln/internal/cli"
	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/repo"
)

func main() { daemon.Main(app()) }

func app() *cli.App {
	app := daemon.App("kiln-publisher", "publish finished jobs into their buckets' signed APT and rpm-md repositories", kcli.Version,
		[]cli.Flag{
			&cli.StringFlag{Name: "gnupghome", Usage: "GnuPG home holding the buckets' secret signing keys (mode 0700, like a keytab)", Value: "/var/lib/kiln-publisher/gnupg", EnvVars: []string{"KILN_PUBLISHER_GNUPGHOME"}},
			&cli.StringFlag{Name: "workdir", Usage: "directory for the rpm-md trees createrepo_c updates and for scratch files", Value: "/var/lib/kiln-publisher/work", EnvVars: []string{"KILN_PUBLISHER_WORKDIR"}},
			&cli.BoolFlag{Name: "once", Usage: "publish what is pending and exit", EnvVars: []string{"KILN_PUBLISHER_ONCE"}},
			&cli.DurationFlag{Name: "poll", Usage: "look for pending requests this often even without a notification", Value: 30 * time.Second, EnvVars: []string{"KILN_PUBLISHER_POLL"}},
			&cli.DurationFlag{Name: "coalesce", Usage: "after a notification, wait this long for more before publishing", Value: 500 * time.Millisecond, EnvVars: []string{"KILN_PUBLISHER_COALESCE"}},
			daemon.HealthFlag("publisher"),
		}, run)
	app.Commands = []*cli.Command{{
		Name:      "rotate-key",
		Usage:     "make a new signing key for a bucket, retire the old one and re-sign its repositories",
		ArgsUsage: "BUCKET",
		Action:    rotate,
	}}
	return app
}

func run(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", c.Args().Slice())
	}
	cfg, err := config(c)
	if err != nil {
		return err
	}
	return repo.Run(c.Context, cfg)
}

// config maps the flags to repo.RunConfig.
func config(c *cli.Context) (repo.RunConfig, error) {
	common, err := daemon.Common(c, 0)
	if err != nil {
		return repo.RunConfig{}, err
	}
	return repo.RunConfig{
		DB: common.DB, GnuPGHome: c.String("gnupghome"), WorkDir: c.String("workdir"), Once: c.Bool("once"),
		Serve:      repo.ServeConfig{Poll: c.Duration("poll"), Coalesce: c.Duration("coalesce")},
		HealthAddr: common.HealthAddr, Logger: common.Logger,
	}, nil
}

func rotate(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("usage: kiln-publisher rotate-key BUCKET")
	}
	cfg, err := config(c)
	if err != nil {
		return err
	}
	p, err := repo.Open(c.Context, cfg)
	if err != nil {
		return err
	}
	defer p.DB.Close()
	fpr, err := p.RotateKey(c.Context, c.Args().First())
	if err != nil {
		return err
	}
	fmt.Printf("bucket %s is now signed with key %s; its repositories are re-signed on the next publication\n", c.Args().First(), fpr)
	return nil
}
