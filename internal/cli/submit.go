package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/format"
	"github.com/kiln-build/kiln/internal/names"
	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/submit"
	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/internal/termtext"
)

// progressMin is the smallest file whose upload shows progress.
const progressMin = 8 << 20

func submitCommand() *cli.Command {
	return &cli.Command{
		Name:      "submit",
		Usage:     "submit source packages (.src.rpm, .dsc) as a job",
		ArgsUsage: "FILE...",
		Description: "Uploads the files (a .dsc with the files it lists, found next to it) and creates the job in one\n" +
			"transaction. --platform takes names, all, and !name to remove one; it may repeat or take a comma\n" +
			"list; without it every active platform of the packages' format builds the job. See docs/submit.md.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "bucket", Usage: "destination bucket", Required: true, EnvVars: []string{"KILN_BUCKET"}},
			&cli.StringSliceFlag{Name: "platform", Aliases: []string{"p"}, Usage: "platform to build for (repeatable, comma list; all; !name removes one)"},
			&cli.IntFlag{Name: "priority", Usage: "1 (most urgent) to 4", Value: 2},
			&cli.StringFlag{Name: "note", Usage: "free text shown with the job"},
			&cli.StringSliceFlag{Name: "report", Usage: "also mail the job's report to `ADDR` when it ends (repeatable; docs/reports.md)"},
			&cli.StringFlag{Name: "key", Usage: "submission key: submitting again with the same key returns the same job (default: generated)"},
			&cli.BoolFlag{Name: "wait", Usage: "follow the job until it finishes; exit non-zero unless it succeeded"},
			&cli.BoolFlag{Name: "quiet", Aliases: []string{"q"}, Usage: "no upload progress"},
		},
		Action: withDB(runSubmit),
	}
}

func runSubmit(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	if c.NArg() == 0 {
		return usageError("submit: give the .src.rpm or .dsc files to submit")
	}
	platforms := c.StringSlice("platform")
	if _, err := submit.ParsePlatforms(platforms); err != nil {
		return usageError("submit: %v", err)
	}
	if p := c.Int("priority"); p < 1 || p > 4 {
		return usageError("submit: --priority %d: use 1 (most urgent) to 4", p)
	}
	if err := names.CheckName("bucket", c.String("bucket")); err != nil {
		return usageError("submit: --bucket: %v", err)
	}
	if k := c.String("key"); k != "" {
		if err := submit.CheckKey(k); err != nil {
			return usageError("submit: --key: %v", err)
		}
	}
	if _, err := submit.Find(c.Args().Slice()); err != nil {
		return usageError("submit: %v", err)
	}
	client, err := submit.New(db)
	if err != nil {
		return err
	}
	req := submit.Request{
		Bucket:    c.String("bucket"),
		Platforms: platforms,
		Priority:  c.Int("priority"),
		Note:      c.String("note"),
		Report:    c.StringSlice("report"),
		Key:       c.String("key"),
		Files:     c.Args().Slice(),
		Check:     true,
	}
	errw := rawStderr(c)
	if !c.Bool("quiet") && isTerminal(errw) {
		req.Progress = progressPrinter(errw, time.Now)
	}
	res, err := client.Submit(ctx, req)
	if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) && pgErr.Code == quotaCode {
		return explainDB(err, "submit")
	}
	if err != nil {
		return err
	}
	w := stdout(c)
	if res.Existing {
		fmt.Fprintf(w, "job %d was already submitted with key %s\n", res.JobID, res.Key)
	} else {
		fmt.Fprintf(w, "job %d submitted (key %s)\n", res.JobID, res.Key)
	}
	fmt.Fprintln(w, jobURL(webURL(ctx, c, db), res.JobID))
	if !c.Bool("wait") {
		return nil
	}
	var last task.JobStatus
	j, err := followJob(ctx, c, db, res.JobID, func(j *report.Job) error {
		if j.Status != last {
			last = j.Status
			fmt.Fprintf(w, "job %d %s\n", j.ID, j.Status)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if j.Status != task.JobSucceeded {
		// What failed and why, so that following up needs no search.
		for _, t := range j.Tasks {
			if t.Status != task.Succeeded && t.Status != task.Skipped {
				fmt.Fprintf(w, "%s %s %s%s\n", taskRef(t.ID), t.Platform, t.Status, reasonSuffix(t.Reason))
			}
		}
		if err := printLogTails(ctx, w, painter(useColor(c, w)), db, j, 10); err != nil {
			return err
		}
		fmt.Fprintf(w, "kiln show %d shows the job\n", j.ID)
		return cli.Exit(fmt.Sprintf("job %d %s%s", j.ID, j.Status, reasonSuffix(j.Reason)), ExitFailure)
	}
	return nil
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := unwrap(w).(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// progressInterval is the least time between two progress lines of one
// file and phase.
const progressInterval = 200 * time.Millisecond

// progressPrinter shows the progress of large files on one terminal line,
// a few times a second by the clock now.
func progressPrinter(w io.Writer, now func() time.Time) func(submit.Progress) {
	var (
		last  time.Time
		stage string // file and phase last shown
	)
	return func(p submit.Progress) {
		if p.Total < progressMin {
			return
		}
		done := p.Done >= p.Total
		t := now()
		if !done && stage == p.File+p.Phase && t.Sub(last) < progressInterval {
			return
		}
		last, stage = t, p.File+p.Phase
		fmt.Fprintf(w, "\r%s: %s %3d%% of %s\x1b[K", termtext.Terminal(p.File), p.Phase, p.Done*100/p.Total, format.Size(p.Total))
		if done {
			fmt.Fprintln(w)
		}
	}
}
