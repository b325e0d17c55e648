package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/report"
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

// listen opens a connection of its own and LISTENs on channels. The caller
// reads the state it follows after this returns, so no change between the
// read and the first notification is missed.
func listen(c *cli.Context, channels ...string) (*pgx.Conn, error) {
	conn, err := connectOne(c)
	if err != nil {
		return nil, err
	}
	for _, ch := range channels {
		if _, err := conn.Exec(c.Context, "LISTEN "+ch); err != nil {
			conn.Close(context.Background())
			return nil, fmt.Errorf("listening on %s: %w", ch, err)
		}
	}
	return conn, nil
}

// notification is the payload of NOTIFY kiln_job, kiln_task and kiln_log.
type notification struct {
	Job     int64  `json:"job"`
	Task    int64  `json:"task"`
	Attempt int    `json:"attempt"`
	Seq     int    `json:"seq"`
	Status  string `json:"status"`
}

// wait blocks until the next notification; Ctrl-C ends it with
// ExitInterrupted.
func wait(ctx context.Context, conn *pgx.Conn) (string, notification, error) {
	n, err := conn.WaitForNotification(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return "", notification{}, cli.Exit("interrupted", ExitInterrupted)
		}
		return "", notification{}, &connectError{fmt.Errorf("lost the database connection while waiting for changes: %w", err)}
	}
	var p notification
	if err := json.Unmarshal([]byte(n.Payload), &p); err != nil {
		return "", notification{}, fmt.Errorf("unexpected %s notification %q: %w", n.Channel, n.Payload, err)
	}
	return n.Channel, p, nil
}

func runWatch(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	id, err := oneID(c, "job id", parseJobID)
	if err != nil {
		return err
	}
	w := stdout(c)
	asJSON := c.Bool("json")
	enc := json.NewEncoder(w)
	p := painter(useColor(c, w))
	seen := map[int64]report.Task{}
	jobStatus := ""
	emit := func(j *report.Job) error {
		now := time.Now()
		if j.Status != jobStatus {
			jobStatus = j.Status
			if asJSON {
				if err := enc.Encode(watchEvent{At: now, JobID: j.ID, Status: j.Status, Reason: j.Reason}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(w, "%s  job %d %s\n", now.Format("15:04:05"), j.ID, p.status(j.Status, j.Status))
			}
		}
		for _, t := range j.Tasks {
			old, known := seen[t.ID]
			seen[t.ID] = t
			if known && old.Status == t.Status && old.Attempt == t.Attempt {
				continue
			}
			if asJSON {
				if err := enc.Encode(watchEvent{At: now, JobID: j.ID, TaskID: t.ID, Platform: t.Platform, Status: t.Status,
					Builder: t.Builder, Attempt: t.Attempt, Reason: t.Reason}); err != nil {
					return err
				}
				continue
			}
			line := fmt.Sprintf("%s  %s %s %s", now.Format("15:04:05"), taskRef(t.ID), t.Platform, p.status(t.Status, t.Status))
			switch {
			case t.Status == "building":
				line += fmt.Sprintf(" on %s (attempt %d)", orDash(t.Builder), t.Attempt)
			case t.Reason != nil:
				line += ": " + *t.Reason
			}
			if report.TaskFinal(t.Status) && t.DurationSeconds != nil {
				line += fmt.Sprintf(" after %s", age(*t.DurationSeconds))
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
		if err := enc.Encode(j); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(w)
		printJob(w, p, j, settingsOf(c).get("web-url"))
	}
	if j.Status != "succeeded" {
		return cli.Exit(fmt.Sprintf("job %d %s", j.ID, j.Status), ExitFailure)
	}
	return nil
}

// followJob follows a job with report.FollowJob for kiln watch and kiln
// submit --wait, calling seen with the job as first read and after each
// change. A lost connection is said on stderr while it is made again; the
// errors are the command's: Ctrl-C is ExitInterrupted, a connection that
// cannot be made again ExitConnect.
func followJob(ctx context.Context, c *cli.Context, db *pgxpool.Pool, id int64, seen func(*report.Job) error) (*report.Job, error) {
	j, err := report.FollowJob(ctx, db, id, report.Follow{
		Seen: seen,
		Lost: func(err error) {
			fmt.Fprintf(stderr(c), "kiln: %v; reconnecting\n", err)
		},
	})
	switch {
	case err == nil:
		return j, nil
	case ctx.Err() != nil:
		return nil, cli.Exit("interrupted", ExitInterrupted)
	case errors.Is(err, report.ErrNotFound):
		return nil, notFoundHint(err, "kiln jobs lists jobs")
	case errors.Is(err, report.ErrConnectionLost), errors.As(err, new(*pgconn.ConnectError)):
		return nil, &connectError{err}
	}
	return nil, err
}

func logCommand() *cli.Command {
	return &cli.Command{
		Name:      "log",
		Usage:     "print a task's build log; -f follows it live until the task ends",
		ArgsUsage: "TASK",
		Description: "TASK is t17 or 17 (kiln show JOB lists a job's tasks). The log is the current attempt's " +
			"unless --attempt is given. With -f the exit status says how the task ended: 0 succeeded, 1 not.",
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
	ctx := c.Context
	follow := c.Bool("follow") && !c.IsSet("attempt")
	channels := []string{}
	if follow {
		channels = []string{"kiln_log", "kiln_task"}
	}
	conn, err := listen(c, channels...)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	t, err := report.GetTask(ctx, conn, id)
	if err != nil {
		return notFoundHint(err, "kiln show JOB lists a job's tasks")
	}
	out := &logPrinter{w: stdout(c), json: c.Bool("json"), last: -1}
	if !follow {
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
		chunks, err := report.LogAfter(ctx, conn, id, attempt, -1)
		if err != nil {
			return err
		}
		if out.json {
			return printJSON(out.w, chunks)
		}
		return out.print(chunks)
	}

	// out.attempt starts at 0, so the current attempt gets its header too.
	for {
		// Catch up with the attempt being followed, then move on to a
		// newer one if the janitor requeued the task meanwhile.
		if out.attempt > 0 {
			chunks, err := report.LogAfter(ctx, conn, id, out.attempt, out.last)
			if err != nil {
				return err
			}
			if err := out.print(chunks); err != nil {
				return err
			}
		}
		if t.Attempt > out.attempt {
			out.attempt, out.last = t.Attempt, -1
			if !out.json {
				fmt.Fprintf(out.w, "--- attempt %d on %s ---\n", t.Attempt, attemptBuilder(t, t.Attempt))
			}
			continue
		}
		if report.TaskFinal(t.Status) {
			break
		}
		ch, n, err := wait(ctx, conn)
		if err != nil {
			return err
		}
		if n.Task != id {
			continue
		}
		if ch == "kiln_task" || n.Attempt > out.attempt {
			if t, err = report.GetTask(ctx, conn, id); err != nil {
				return err
			}
		}
	}
	if t.Status != "succeeded" {
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

// logPrinter writes log chunks as text or JSON lines, remembering the last
// seq written.
type logPrinter struct {
	w       io.Writer
	json    bool
	attempt int // the attempt followed
	last    int // the last seq written, -1 for none
}

func (p *logPrinter) print(chunks []report.LogChunk) error {
	for _, ch := range chunks {
		var err error
		if p.json {
			err = json.NewEncoder(p.w).Encode(ch)
		} else {
			_, err = io.WriteString(p.w, ch.Data)
		}
		if err != nil {
			return err
		}
		p.last = ch.Seq
	}
	return nil
}
