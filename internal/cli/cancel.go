package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/submit"
	"github.com/kiln-build/kiln/internal/task"
)

func cancelCommand() *cli.Command {
	return &cli.Command{
		Name:      "cancel",
		Usage:     "cancel jobs (42) or single tasks (t17)",
		ArgsUsage: "JOB|tTASK...",
		Description: "A number is a job: all its unfinished tasks are cancelled. A number with a t in front (t17), " +
			"or one given with --task, is a single task. Only the submitter or a kiln_admin member may cancel; " +
			"builders stop within seconds.",
		Flags: []cli.Flag{
			&cli.Int64SliceFlag{Name: "task", Usage: "cancel this task (repeatable)"},
			jsonFlag,
		},
		Action: withDB(runCancel),
	}
}

// cancelled is one line of kiln cancel --json.
type cancelled struct {
	JobID  int64  `json:"job_id"`
	TaskID int64  `json:"task_id"`
	Status string `json:"status"`
}

func runCancel(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	type target struct {
		id   int64
		task bool
	}
	var targets []target
	for _, a := range c.Args().Slice() {
		if strings.HasPrefix(a, "t") {
			id, err := parseTaskID(a)
			if err != nil {
				return err
			}
			targets = append(targets, target{id, true})
			continue
		}
		id, err := parseJobID(a)
		if err != nil {
			return err
		}
		targets = append(targets, target{id, false})
	}
	for _, id := range c.Int64Slice("task") {
		targets = append(targets, target{id, true})
	}
	if len(targets) == 0 {
		return usageError("kiln cancel: name a job (42) or a task (t17)")
	}
	var out []cancelled
	w := stdout(c)
	for _, t := range targets {
		var r cancelled
		var err error
		if t.task {
			r.TaskID = t.id
			r.Status, r.JobID, err = task.CancelTask(ctx, db, t.id)
			err = explainDB(err, "cancelling task "+taskRef(t.id))
		} else {
			r.JobID = t.id
			r.Status, err = task.CancelJob(ctx, db, t.id)
			err = explainDB(err, fmt.Sprintf("cancelling job %d", t.id))
		}
		if err != nil {
			return err
		}
		out = append(out, r)
		if !c.Bool("json") {
			if t.task {
				fmt.Fprintf(w, "task %s of job %d cancelled\n", taskRef(t.id), r.JobID)
			} else {
				fmt.Fprintf(w, "job %d cancelled (now %s)\n", t.id, r.Status)
			}
		}
	}
	if c.Bool("json") {
		return printJSON(w, out)
	}
	return nil
}

func resubmitCommand() *cli.Command {
	return &cli.Command{
		Name:      "resubmit",
		Usage:     "submit a job again with the same packages (nothing is uploaded again)",
		ArgsUsage: "JOB",
		Description: "The new job has the old one's packages, bucket, priority, policy, note and options, and its " +
			"platforms unless --platform is given. It belongs to you and is validated like any submitted job.",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "platform", Usage: "build for these platforms instead (repeatable; all and !name work as for submit)"},
			jsonFlag,
		},
		Action: withDB(runResubmit),
	}
}

// resubmitted is the output of kiln resubmit --json.
type resubmitted struct {
	JobID      int64  `json:"job_id"`
	ResubmitOf int64  `json:"resubmit_of"`
	WebURL     string `json:"web_url"`
}

func runResubmit(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	old, err := oneID(c, "job id", parseJobID)
	if err != nil {
		return err
	}
	newID, err := Resubmit(ctx, db, old, c.StringSlice("platform"))
	if err != nil {
		return err
	}
	r := resubmitted{JobID: newID, ResubmitOf: old, WebURL: jobURL(webURL(ctx, c, db), newID)}
	if c.Bool("json") {
		return printJSON(stdout(c), r)
	}
	fmt.Fprintf(stdout(c), "job %d submitted (resubmit of job %d)\n%s\n", r.JobID, old, r.WebURL)
	return nil
}

// Resubmit submits job old again (submit.Client.Resubmit) and explains
// a refusal. platforms replaces the old job's platform selection when not
// empty. It returns the new job's id.
func Resubmit(ctx context.Context, db *pgxpool.Pool, old int64, platforms []string) (int64, error) {
	client, err := submit.New(db)
	if err != nil {
		return 0, err
	}
	id, err := client.Resubmit(ctx, old, platforms)
	if err != nil {
		return 0, explainDB(err, fmt.Sprintf("resubmitting job %d", old))
	}
	return id, nil
}
