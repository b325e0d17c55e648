package cli

import (
	"context"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"
)

// The reports of ended jobs (docs/reports.md): where and when a person is
// told, and their webhooks. The checks are in the kiln.report_* functions.

var whenFlag = &cli.StringFlag{Name: "when", Usage: "always, failure (failed, partially failed or invalid jobs) or never", Value: "always"}

func reportCommand() *cli.Command {
	return &cli.Command{
		Name:  "report",
		Usage: "where and when you are told that your jobs ended (mail, webhooks)",
		Subcommands: []*cli.Command{
			{
				Name:      "set",
				Usage:     "set your report address and when you are mailed (no address: no mail to you)",
				ArgsUsage: "[ADDR]",
				Flags:     []cli.Flag{whenFlag},
				Action: withDB(func(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
					if c.NArg() > 1 {
						return usageError("kiln report set takes at most one address")
					}
					if _, err := db.Exec(ctx, `SELECT kiln.report_set($1, $2)`, optional(c.Args().First()), c.String("when")); err != nil {
						return explainDB(err, "setting your report address")
					}
					fmt.Fprintf(stdout(c), "reports: %s, %s\n", orNone(c.Args().First()), c.String("when"))
					return nil
				}),
			},
			{
				Name:  "webhook",
				Usage: "webhooks told when your jobs end (a signed JSON POST)",
				Subcommands: []*cli.Command{
					{
						Name:      "add",
						Usage:     "add a webhook; prints its HMAC-SHA256 secret, shown only this once",
						ArgsUsage: "URL",
						Flags:     []cli.Flag{whenFlag, &cli.StringFlag{Name: "bucket", Usage: "for every job of this bucket (admins only)"}},
						Action: withDB(func(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
							if c.NArg() != 1 {
								return usageError("kiln report webhook add takes one URL")
							}
							var id int64
							var secret string
							err := db.QueryRow(ctx, `SELECT id, secret FROM kiln.report_webhook_add($1, $2, $3)`,
								c.Args().First(), c.String("when"), optional(c.String("bucket"))).Scan(&id, &secret)
							if err != nil {
								return explainDB(err, "adding the webhook")
							}
							fmt.Fprintf(stdout(c), "webhook %d added; its secret (shown only now): %s\n", id, secret)
							return nil
						}),
					},
					{
						Name:      "remove",
						Usage:     "remove one of your webhooks",
						ArgsUsage: "ID",
						Action: withDB(func(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
							id, err := strconv.ParseInt(c.Args().First(), 10, 64)
							if c.NArg() != 1 || err != nil {
								return usageError("kiln report webhook remove takes one webhook number")
							}
							if _, err := db.Exec(ctx, `SELECT kiln.report_webhook_remove($1)`, id); err != nil {
								return explainDB(err, "removing the webhook")
							}
							fmt.Fprintf(stdout(c), "webhook %d removed\n", id)
							return nil
						}),
					},
				},
			},
		},
	}
}

// adminReportCommand is kiln admin report: another person's address, and
// the addresses told about every job of a bucket.
func adminReportCommand() *cli.Command {
	return &cli.Command{
		Name:  "report",
		Usage: "report addresses of a person or of a bucket",
		Subcommands: []*cli.Command{
			{
				Name:      "person",
				Usage:     "set a person's report address (no address: none) and when they are mailed",
				ArgsUsage: "PERSON [ADDR]",
				Flags:     []cli.Flag{whenFlag},
				Action: withDB(func(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
					if c.NArg() < 1 || c.NArg() > 2 {
						return usageError("kiln admin report person takes a person and at most one address")
					}
					if _, err := db.Exec(ctx, `SELECT kiln.report_set_person($1, $2, $3)`, c.Args().Get(0), optional(c.Args().Get(1)), c.String("when")); err != nil {
						return explainDB(err, "setting the report address")
					}
					fmt.Fprintf(stdout(c), "reports of %s: %s, %s\n", c.Args().Get(0), orNone(c.Args().Get(1)), c.String("when"))
					return nil
				}),
			},
			{
				Name:      "bucket",
				Usage:     "set the addresses told about every job of a bucket (none: nobody) and when",
				ArgsUsage: "BUCKET [ADDR...]",
				Flags:     []cli.Flag{&cli.StringFlag{Name: "when", Usage: "always, failure or never", Value: "failure"}},
				Action: withDB(func(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
					if c.NArg() < 1 {
						return usageError("kiln admin report bucket takes a bucket and its addresses")
					}
					addrs := append([]string{}, c.Args().Slice()[1:]...)
					if _, err := db.Exec(ctx, `SELECT kiln.report_set_bucket($1, $2, $3)`, c.Args().First(), addrs, c.String("when")); err != nil {
						return explainDB(err, "setting the bucket's report addresses")
					}
					fmt.Fprintf(stdout(c), "reports of bucket %s: %d addresses, %s\n", c.Args().First(), len(addrs), c.String("when"))
					return nil
				}),
			},
		},
	}
}

func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func orNone(s string) string {
	if s == "" {
		return "no address"
	}
	return s
}
