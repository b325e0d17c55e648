// Command kiln-reporter tells people that their jobs ended: one mail per
// job (to the submitter, the kiln submit --report addresses and the
// bucket's list) and signed webhooks. It works River queue "report", whose
// River jobs kiln.job_request_reports inserts when a job ends. See
// docs/reports.md.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	kcli "github.com/kiln-build/kiln/internal/cli"
	"github.com/kiln-build/kiln/internal/daemon"
	"github.com/kiln-build/kiln/internal/notify"
	"github.com/kiln-build/kiln/riverjob"
)

func main() { daemon.Main(app()) }

func app() *cli.App {
	return daemon.App("kiln-reporter", "mail and post one report per ended kiln job", kcli.Version,
		[]cli.Flag{
			&cli.StringFlag{Name: "smtp", Usage: "mail server as host:port", Required: true, EnvVars: []string{"KILN_REPORTER_SMTP"}},
			&cli.StringFlag{Name: "from", Usage: "sender address of the reports (also the Message-ID's domain)", Required: true, EnvVars: []string{"KILN_REPORTER_FROM"}},
			&cli.BoolFlag{Name: "starttls", Usage: "require STARTTLS before sending", EnvVars: []string{"KILN_REPORTER_STARTTLS"}},
			&cli.StringFlag{Name: "smtp-user", Usage: "AUTH PLAIN user (with --smtp-password-file)", EnvVars: []string{"KILN_REPORTER_SMTP_USER"}},
			&cli.StringFlag{Name: "smtp-password-file", Usage: "file holding the AUTH PLAIN password", EnvVars: []string{"KILN_REPORTER_SMTP_PASSWORD_FILE"}},
			&cli.IntFlag{Name: "workers", Usage: "deliveries at once", Value: riverjob.DefaultReportWorkers, EnvVars: []string{"KILN_REPORTER_WORKERS"}},
			&cli.DurationFlag{Name: "retry-min", Usage: "wait after a failed delivery, doubled after each further failure", Value: riverjob.DefaultReportRetryMin, EnvVars: []string{"KILN_REPORTER_RETRY_MIN"}},
			&cli.DurationFlag{Name: "retry-max", Usage: "longest wait between two tries", Value: riverjob.DefaultReportRetryMax, EnvVars: []string{"KILN_REPORTER_RETRY_MAX"}},
			daemon.HealthFlag("reporter"),
		}, run)
}

func run(c *cli.Context) error {
	common, err := daemon.Common(c, int32(c.Int("workers")*2+4))
	if err != nil {
		return err
	}
	smtp := notify.SMTP{Addr: c.String("smtp"), From: c.String("from"), StartTLS: c.Bool("starttls"), Username: c.String("smtp-user")}
	if f := c.String("smtp-password-file"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("--smtp-password-file: %w", err)
		}
		smtp.Password = strings.TrimRight(string(b), "\r\n")
	}
	return notify.Run(c.Context, notify.RunConfig{
		DB: common.DB, SMTP: smtp, Workers: c.Int("workers"),
		RetryMin: c.Duration("retry-min"), RetryMax: c.Duration("retry-max"),
		HealthAddr: common.HealthAddr, Logger: common.Logger,
	})
}
