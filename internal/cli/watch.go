package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/format"
	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/task"
)

// ExitInterrupted is the exit status after Ctrl-C (128 + SIGINT).
const ExitInterrupted = 130

func watchCommand() *cli.Command {
	return &cli.Command{
		Name:      "watch",
		Usage:     "follow a job live until it finishes; exit status 0 if it succeeded, 1 if not",
		ArgsUsage: "JOB",
		Description: "Prints a line for every change of the job and its tasks as it happens " +
			"(LISTEN kiln_job and kiln_task; no polling), then the job as kiln show prints it. " +
			"After a lost connection it connects again and reads the job again.",
		Flags:  []cli.Flag{jsonFlag},
		Action: withDB(runWatch),
	}
}

// watchEvent is one line of kiln watch --json.
type watchEvent struct {
	At       time.Time `json:"at"`
	JobID    int64     `json:"job_id"`
	TaskID   int64     `json:"task_id"`
	Platform string    `json:"platform"`
	Status   string    `json:"status"`
	Builder  *string   `json:"builder"`
	Attempt  int       `json:"attempt"`
	Reason   *string   `json:"reason"`
}

func runWatch(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	id, err := oneID(c, "job id", parseJobID)
	if err != nil {
		return err
	}
	w := stdout(c)
	asJSON := c.Bool("json")
	p := painter(useColor(c, w))
	seen := map[int64]report.Task{}
	var jobStatus task.JobStatus
	emit := func(j *report.Job) error {
		now := time.Now()
		if j.Status != jobStatus {
			jobStatus = j.Status
			at := now
			if j.FinishedAt != nil {
				at = *j.FinishedAt // a finished job's end, not when watch saw it
			}
			if asJSON {
				if err := printJSONLine(w, watchEvent{At: at, JobID: j.ID, Status: string(j.Status), Reason: j.Reason}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(w, "%s  job %d %s\n", format.Clock(at.Local()), j.ID, paintStatus(p, j.Status))
			}
		}
		for _, t := range j.Tasks {
			old, known := seen[t.ID]
			seen[t.ID] = t
			if known && old.Status == t.Status && old.Attempt == t.Attempt {
				continue
			}
			at := taskChangedAt(t, now)
			if asJSON {
				if err := printJSONLine(w, watchEvent{At: at, JobID: j.ID, TaskID: t.ID, Platform: t.Platform, Status: string(t.Status),
					Builder: t.Builder, Attempt: t.Attempt, Reason: t.Reason}); err != nil {
					return err
				}
				continue
			}
			line := fmt.Sprintf("%s  %s %s %s", format.Clock(at.Local()), taskRef(t.ID), t.Platform, paintStatus(p, t.Status))
			switch {
			case t.Status == task.Building:
				line += fmt.Sprintf(" on %s (attempt %d)", orDash(t.Builder), t.Attempt)
				if e := t.ETA.Estimate(t.Status); e != "" {
					line += ", " + e
				}
			case t.Status == task.Pending && t.Why != "":
				if t.Reason != nil {
					line += ": " + *t.Reason + ";"
				} else {
					line += ":"
				}
				line += " " + t.Why
			case t.Reason != nil:
				line += ": " + *t.Reason
			}
			if t.Status.Final() && t.DurationSeconds != nil {
				line += fmt.Sprintf(" after %s", format.Duration(*t.DurationSeconds))
			}
			fmt.Fprintln(w, line)
		}
		return nil
	}
	j, err := followJob(ctx, c, db, id, emit)
	if err != nil {
		return err
	}
	if asJSON {
		if err := printJSONLine(w, j); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(w)
		printJob(w, p, j, webURL(ctx, c, db))
	}
	if j.Status != task.JobSucceeded {
		return cli.Exit(fmt.Sprintf("job %d %s", j.ID, j.Status), ExitFailure)
	}
	return nil
}

// followJob follows a job with report.FollowJob for kiln watch and kiln
// submit --wait, calling seen with the job as first read and after each
// change. A lost connection is said on stderr while it is made again.
func followJob(ctx context.Context, c *cli.Context, db *pgxpool.Pool, id int64, seen func(*report.Job) error) (*report.Job, error) {
	j, err := report.FollowJob(ctx, db, id, report.Follow{Seen: seen, Reconnect: reconnecting(c)})
	if err != nil {
		return nil, followError(ctx, err, "kiln jobs lists jobs")
	}
	return j, nil
}

// taskChangedAt is when a task took on its status as far as the database
// knows (its end, or the start of its attempt), else now: a job watched
// after it finished shows when things happened, not when watch saw them.
func taskChangedAt(t report.Task, now time.Time) time.Time {
	switch {
	case t.Status.Final() && t.FinishedAt != nil:
		return *t.FinishedAt
	case t.Status == task.Building && t.StartedAt != nil:
		return *t.StartedAt
	}
	return now
}

// reconnecting says a lost connection on stderr while a follower makes it
// again.
func reconnecting(c *cli.Context) report.Reconnect {
	return report.Reconnect{Lost: func(err error) {
		fmt.Fprintf(stderr(c), "kiln: %v; reconnecting\n", err)
	}}
}

// followError makes the error of report.FollowJob or report.FollowLog the
// command's: Ctrl-C is ExitInterrupted, a connection that cannot be made
// again ExitConnect, something that does not exist ExitNotFound with hint,
// a database whose kiln schema does not match this kiln said so.
func followError(ctx context.Context, err error, hint string) error {
	switch {
	case ctx.Err() != nil:
		return cli.Exit("interrupted", ExitInterrupted)
	case errors.Is(err, report.ErrNotFound):
		return notFoundHint(err, hint)
	case errors.Is(err, report.ErrConnectionLost), errors.As(err, new(*pgconn.ConnectError)):
		return &connectError{err}
	}
	if pgErr := new(*pgconn.PgError); errors.As(err, pgErr) && olderSchema(*pgErr) {
		return explainDB(err, "following")
	}
	return err
}

func logCommand() *cli.Command {
	return &cli.Command{
		Name:      "log",
		Usage:     "print a task's build log; -f follows it live until the task ends",
		ArgsUsage: "TASK",
		Description: "TASK is t17 or 17 (kiln show JOB lists a job's tasks). The log is the current attempt's " +
			"unless --attempt is given. With -f the exit status says how the task ended: 0 succeeded, 1 not; " +
			"after a lost connection it connects again and goes on after the last batch it printed.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "follow the log live (LISTEN kiln_log) until the task ends"},
			&cli.IntFlag{Name: "attempt", Usage: "print this attempt's log instead of the current one"},
			jsonFlag,
		},
		Action: runLog,
	}
}

func runLog(c *cli.Context) error {
	id, err := oneID(c, "task id", parseTaskID)
	if err != nil {
		return err
	}
	db, err := connect(c)
	if err != nil {
		return err
	}
	defer db.Close()
	out := &logPrinter{w: stdout(c), json: c.Bool("json")}
	if c.Bool("follow") && !c.IsSet("attempt") {
		return followLog(c, db, id, out)
	}
	ctx := c.Context
	t, err := report.GetTask(ctx, db, id)
	if err != nil {
		return notFoundHint(err, "kiln show JOB lists a job's tasks")
	}
	attempt := t.Attempt
	if c.IsSet("attempt") {
		attempt = c.Int("attempt")
		if attempt < 1 || attempt > t.Attempt {
			return cli.Exit(fmt.Sprintf("task %s has no attempt %d (it has %d)", taskRef(id), attempt, t.Attempt), ExitNotFound)
		}
	}
	if attempt == 0 {
		return cli.Exit(fmt.Sprintf("task %s has not started yet (%s): no log (kiln log -f %s waits for it)", taskRef(id), t.Status, taskRef(id)), ExitNotFound)
	}
	chunks, err := report.LogAfter(ctx, db, id, attempt, -1)
	if err != nil {
		return err
	}
	if out.json {
		return printJSON(out.w, chunks)
	}
	return out.print(chunks)
}

// followLog prints the log of task id live with report.FollowLog until the
// task ends, a header line before each attempt's log (not with --json).
func followLog(c *cli.Context, db *pgxpool.Pool, id int64, out *logPrinter) error {
	ctx := c.Context
	t, err := report.FollowLog(ctx, db, id, report.LogFollow{
		Attempt: func(t *report.Task) error {
			if out.json {
				return nil
			}
			_, err := fmt.Fprintf(out.w, "--- attempt %d on %s ---\n", t.Attempt, attemptBuilder(t, t.Attempt))
			return err
		},
		Chunks:    out.print,
		Reconnect: reconnecting(c),
	})
	if err != nil {
		return followError(ctx, err, "kiln show JOB lists a job's tasks")
	}
	if t.Status != task.Succeeded {
		return cli.Exit(fmt.Sprintf("task %s %s%s", taskRef(id), t.Status, reasonSuffix(t.Reason)), ExitFailure)
	}
	return nil
}

// attemptBuilder names the builder of attempt n of t.
func attemptBuilder(t *report.Task, n int) string {
	for _, a := range t.Attempts {
		if a.Attempt == n {
			return a.Builder
		}
	}
	return orDash(t.Builder)
}

func reasonSuffix(r *string) string {
	if r == nil {
		return ""
	}
	return ": " + *r
}

// logPrinter writes log chunks as text or JSON lines.
type logPrinter struct {
	w    io.Writer
	json bool
}

func (p *logPrinter) print(chunks []report.LogChunk) error {
	for _, ch := range chunks {
		var err error
		if p.json {
			err = printJSONLine(p.w, ch)
		} else {
			_, err = io.WriteString(p.w, ch.Data)
		}
		if err != nil {
			return err
		}
	}
	return nil
}
