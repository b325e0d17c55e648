package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/task"
	"github.com/kiln-build/kiln/riverjob"
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

// Resubmit creates a new job with the packages of job old, pointing at the
// same blobs, and the River job that asks the splitter to validate it, in
// one transaction. platforms replaces the old job's platform selection when
// not empty. It returns the new job's id.
func Resubmit(ctx context.Context, db *pgxpool.Pool, old int64, platforms []string) (int64, error) {
	client, err := riverjob.NewInserter(db, nil)
	if err != nil {
		return 0, err
	}
	key := make([]byte, 12)
	if _, err := rand.Read(key); err != nil {
		return 0, err
	}
	var newID int64
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		var plat []string
		if len(platforms) > 0 {
			plat = platforms
		}
		err := tx.QueryRow(ctx, `INSERT INTO kiln.job (bucket, platforms, priority, policy, note, options, submission_key, resubmit_of)
			SELECT bucket, coalesce($2, platforms), priority, policy, note, options, $3, id FROM kiln.job WHERE id = $1
			RETURNING id`, old, plat, fmt.Sprintf("resubmit.%d.%s", old, hex.EncodeToString(key))).Scan(&newID)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("job %d does not exist (kiln jobs lists jobs)%.0w", old, report.ErrNotFound)
		}
		if err != nil {
			return explainDB(err, fmt.Sprintf("resubmitting job %d", old))
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size)
			SELECT $2, seq, file_name, format, blob_sha256, size FROM kiln.package WHERE job_id = $1`, old, newID); err != nil {
			return explainDB(err, "copying the packages")
		}
		if _, err := tx.Exec(ctx, `INSERT INTO kiln.package_file (job_id, seq, file_name, blob_sha256, size)
			SELECT $2, seq, file_name, blob_sha256, size FROM kiln.package_file WHERE job_id = $1`, old, newID); err != nil {
			return explainDB(err, "copying the package files")
		}
		if _, err := client.InsertTx(ctx, tx, riverjob.ValidateArgs{JobID: newID}, nil); err != nil {
			return explainDB(err, "queueing the new job for validation")
		}
		return nil
	})
	return newID, err
}
