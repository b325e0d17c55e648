package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/format"
	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/task"
)

func jobsCommand() *cli.Command {
	return &cli.Command{
		Name:  "jobs",
		Usage: "list jobs, newest first",
		Description: "One line per job: id, submitter, bucket, status, age, packages and the status of each platform's task.\n" +
			"--since takes a duration back from now (36h, 90m, 7d, 1.5d, 2w), a date (2025-05-01, midnight local time) or an RFC 3339 time.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "mine", Usage: "only your jobs"},
			&cli.StringFlag{Name: "user", Usage: "only the jobs of this database role"},
			&cli.StringSliceFlag{Name: "status", Usage: "only jobs in this status (repeatable, or comma-separated): " + task.JobStatusNames()},
			&cli.StringFlag{Name: "bucket", Usage: "only jobs for this bucket"},
			&cli.StringFlag{Name: "platform", Usage: "only jobs with a task on this platform"},
			&cli.StringFlag{Name: "since", Usage: "only jobs submitted since then (36h, 7d, 2w, 2025-05-01, RFC 3339)"},
			&cli.IntFlag{Name: "limit", Usage: fmt.Sprintf("at most this many jobs (at most %d)", report.MaxLimit), Value: report.DefaultLimit},
			&cli.Int64Flag{Name: "before", Usage: "only jobs with a smaller id (the next page)"},
			jsonFlag,
		},
		Action: withReadDB(runJobs),
	}
}

func runJobs(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	if c.NArg() > 0 {
		return usageError("kiln jobs takes no arguments (to see one job: kiln show %s)", c.Args().First())
	}
	f := report.Filter{
		Mine: c.Bool("mine"), Submitter: c.String("user"), Bucket: c.String("bucket"),
		Platform: c.String("platform"), Limit: c.Int("limit"), Before: c.Int64("before"),
	}
	for _, s := range c.StringSlice("status") {
		for _, one := range strings.Split(s, ",") {
			if one = strings.TrimSpace(one); one != "" {
				f.Status = append(f.Status, one)
			}
		}
	}
	for _, s := range f.Status {
		if _, err := task.ParseJobStatus(s); err != nil {
			return usageError("--status %s: not a job status (use %s)", s, task.JobStatusNames())
		}
	}
	if f.Limit < 1 || f.Limit > report.MaxLimit {
		return usageError("--limit must be between 1 and %d", report.MaxLimit)
	}
	if s := c.String("since"); s != "" {
		t, err := report.ParseSince(s, time.Now())
		if err != nil {
			return usageError("--since %s: %v", s, err)
		}
		f.Since = t
	}
	list, err := report.ListJobs(ctx, db, f)
	if err != nil {
		return err
	}
	w := stdout(c)
	if c.Bool("json") {
		return printJSON(w, list)
	}
	p := painter(useColor(c, w))
	if len(list.Jobs) == 0 {
		fmt.Fprintln(w, "no jobs")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tSUBMITTER\tBUCKET\tSTATUS\tAGE\tPACKAGES\tTASKS")
	for _, j := range list.Jobs {
		var platforms []string
		var statuses []task.Status
		for _, t := range j.Tasks {
			platforms = append(platforms, t.Platform)
			statuses = append(statuses, t.Status)
		}
		tasks := joinTasks(p, platforms, statuses)
		for _, t := range j.Tasks {
			if t.FailureStage != nil && t.Status == task.Failed {
				tasks += fmt.Sprintf(" (%s: %s)", t.Platform, *t.FailureStage)
			}
		}
		if len(j.Tasks) == 0 && j.Status == task.JobSubmitted {
			tasks = "(waiting for validation)"
		} else if j.Status == task.JobInvalid {
			tasks = "(" + clip(orDash(j.Reason), 60) + ")"
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", j.ID, j.Submitter, j.Bucket, paintStatus(p, j.Status),
			format.Duration(j.AgeSeconds), clip(strings.Join(j.Packages, ","), 40), tasks)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if list.NextBefore != 0 {
		fmt.Fprintf(w, "more: add --before %d\n", list.NextBefore)
	}
	return nil
}

// parseJobID reads a job id argument.
func parseJobID(s string) (int64, error) {
	if strings.HasPrefix(s, "t") {
		return 0, usageError("%s is a task, not a job (kiln log %s shows its log; kiln show takes the job's id)", s, s)
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id <= 0 {
		return 0, usageError("%q is not a job id (a positive number; kiln jobs lists them)", s)
	}
	return id, nil
}

// parseTaskID reads a task id argument: 17 or t17.
func parseTaskID(s string) (int64, error) {
	id, err := strconv.ParseInt(strings.TrimPrefix(s, "t"), 10, 64)
	if err != nil || id <= 0 {
		return 0, usageError("%q is not a task id (t17 or 17; kiln show JOB lists a job's tasks)", s)
	}
	return id, nil
}

// oneID reads the single id argument of a command.
func oneID(c *cli.Context, what string, parse func(string) (int64, error)) (int64, error) {
	if c.NArg() != 1 {
		return 0, usageError("%s: expected one %s, got %d arguments", commandLine(c), what, c.NArg())
	}
	return parse(c.Args().First())
}

func showCommand() *cli.Command {
	return &cli.Command{
		Name:      "show",
		Usage:     "show a job: packages, tasks, attempts, artifacts, and the log tail of failed tasks",
		ArgsUsage: "JOB",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "lines", Usage: "log lines to show for each failed task", Value: 20},
			jsonFlag,
		},
		Action: withReadDB(runShow),
	}
}

func runShow(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	id, err := oneID(c, "job id", parseJobID)
	if err != nil {
		return err
	}
	j, err := report.GetJob(ctx, db, id)
	if err != nil {
		return notFoundHint(err, "kiln jobs lists jobs")
	}
	w := stdout(c)
	if c.Bool("json") {
		return printJSON(w, j)
	}
	p := painter(useColor(c, w))
	printJob(w, p, j, webURL(ctx, c, db))
	return printLogTails(ctx, w, p, db, j, c.Int("lines"))
}

// printLogTails writes the last n lines of the log of each of the job's
// failed, timed-out and lost tasks.
func printLogTails(ctx context.Context, w io.Writer, p painter, db *pgxpool.Pool, j *report.Job, n int) error {
	for _, t := range j.Tasks {
		if t.Status != "failed" && t.Status != "timed_out" && t.Status != "lost" || t.Attempt == 0 || n <= 0 {
			continue
		}
		lines, err := report.LogTail(ctx, db, t.ID, t.Attempt, n)
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "\nlog of %s (%s, %s, attempt %d), last %d lines (kiln log %s for all):\n", taskRef(t.ID), t.Platform, paintStatus(p, t.Status), t.Attempt, len(lines), taskRef(t.ID))
		for _, l := range lines {
			fmt.Fprintln(w, "  "+l)
		}
	}
	return nil
}

// printJob writes a job's header, packages, tasks, attempts and artifacts.
func printJob(w io.Writer, p painter, j *report.Job, webURL string) {
	fmt.Fprintf(w, "job %d  %s  submitted by %s to bucket %s, priority %d\n", j.ID, paintStatus(p, j.Status), j.Submitter, j.Bucket, j.Priority)
	fmt.Fprintf(w, "submitted %s", when(&j.SubmittedAt))
	if j.StartedAt != nil {
		fmt.Fprintf(w, ", started %s", when(j.StartedAt))
	}
	if j.FinishedAt != nil {
		fmt.Fprintf(w, ", finished %s (took %s)", when(j.FinishedAt), format.Duration(j.DurationSeconds))
	} else {
		fmt.Fprintf(w, " (%s ago)", format.Duration(j.AgeSeconds))
	}
	fmt.Fprintln(w)
	if j.Note != "" {
		fmt.Fprintf(w, "note: %s\n", j.Note)
	}
	if j.Reason != nil {
		fmt.Fprintf(w, "reason: %s\n", *j.Reason)
	}
	if j.ResubmitOf != nil {
		fmt.Fprintf(w, "resubmit of job %d\n", *j.ResubmitOf)
	}
	if j.CancelledBy != nil {
		fmt.Fprintf(w, "cancelled by %s\n", *j.CancelledBy)
	}
	if webURL != "" {
		fmt.Fprintf(w, "%s\n", jobURL(webURL, j.ID))
	}

	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PACKAGE\tFORMAT\tNAME\tVERSION\tSIZE\tPROBLEM")
	for _, pk := range j.Packages {
		version := format.Version(pk.Epoch, pk.Version, pk.Release)
		if version == "" {
			version = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", pk.FileName, pk.Format, orDash(pk.Name), version, format.Size(pk.Size), orDash(pk.Reason))
	}
	tw.Flush()

	if len(j.Tasks) == 0 {
		if j.Status == "submitted" {
			fmt.Fprintln(w, "\nno tasks yet: the job waits for validation (kiln queue)")
		}
		return
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tPLATFORM\tSTATUS\tSTAGE\tBUILDER\tATTEMPT\tWAITED\tDURATION\tREASON")
	for _, t := range j.Tasks {
		stage := orDash(t.FailureStage)
		if t.InfraRetries > 0 {
			stage += fmt.Sprintf(" (%d retries)", t.InfraRetries)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", taskRef(t.ID), t.Platform, paintStatus(p, t.Status), stage, orDash(t.Builder),
			t.Attempt, ageOf(t.WaitSeconds), ageOf(t.DurationSeconds), orDash(t.Reason))
	}
	tw.Flush()
	printEstimates(w, p, j.Tasks)

	var history []string
	for _, t := range j.Tasks {
		if len(t.Attempts) < 2 {
			continue
		}
		for _, a := range t.Attempts {
			stage := orDash(a.FailureStage)
			if a.Retried {
				stage += ", retried"
			}
			history = append(history, fmt.Sprintf("%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", taskRef(t.ID), a.Attempt, a.Builder,
				paintStatus(p, a.Status), stage, when(&a.StartedAt), format.Duration(a.DurationSeconds), orDash(a.Reason)))
		}
	}
	if len(history) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TASK\tATTEMPT\tBUILDER\tSTATUS\tSTAGE\tSTARTED\tDURATION\tREASON")
		for _, h := range history {
			fmt.Fprint(tw, h)
		}
		tw.Flush()
	}

	var arts []report.Artifact
	for _, t := range j.Tasks {
		arts = append(arts, t.Artifacts...)
	}
	if len(arts) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ARTIFACT\tPLATFORM\tATTEMPT\tKIND\tSIZE\tSHA256")
		for _, a := range arts {
			sum := "(pruned)"
			if a.SHA256 != nil {
				sum = (*a.SHA256)[:16] + "…"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", a.FileName, a.Platform, a.Attempt, a.Kind, format.Size(a.Size), sum)
		}
		tw.Flush()
	}
}

// printEstimates writes where each pending task stands and when it should
// build, and when each building task should end (kiln.task_eta).
func printEstimates(w io.Writer, p painter, ts []report.Task) {
	var lines []string
	for _, t := range ts {
		s := t.Why
		if t.Status == task.Building {
			s = t.ETA.Estimate(t.Status)
		}
		if s == "" {
			continue
		}
		lines = append(lines, fmt.Sprintf("%s\t%s\t%s\t%s\t%s\n", taskRef(t.ID), t.Platform, paintStatus(p, t.Status), position(t.ETA), s))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tPLATFORM\tSTATUS\tPLACE\tWHEN")
	for _, l := range lines {
		fmt.Fprint(tw, l)
	}
	tw.Flush()
}

// position is a pending task's place in its platform's queue (1 is next), "-" for
// none.
func position(e *report.ETA) string {
	if e == nil || e.Position == nil {
		return "-"
	}
	return fmt.Sprintf("%d", *e.Position)
}

// jobURL is a job's page on kiln-web.
func jobURL(base string, id int64) string {
	return fmt.Sprintf("%s/jobs/%d", strings.TrimRight(base, "/"), id)
}

// notFoundHint adds what to do to a not-found error.
func notFoundHint(err error, hint string) error {
	if err != nil && classify(err) == ExitNotFound {
		return fmt.Errorf("%w (%s)", err, hint)
	}
	return err
}
