package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/format"
	"github.com/kiln-build/kiln/internal/report"
)

func buildersCommand() *cli.Command {
	return &cli.Command{
		Name:   "builders",
		Usage:  "list builders: state, slots in use, platforms, heartbeat",
		Flags:  []cli.Flag{jsonFlag},
		Action: withDB(runBuilders),
	}
}

func runBuilders(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	bs, err := report.ListBuilders(ctx, db)
	if err != nil {
		return err
	}
	w := stdout(c)
	if c.Bool("json") {
		return printJSON(w, bs)
	}
	if len(bs) == 0 {
		fmt.Fprintln(w, "no builders have registered")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUILDER\tHOST\tSTATE\tBUSY\tHEARTBEAT\tTASKS\tPLATFORMS")
	for _, b := range bs {
		state := b.State
		if !b.Enabled {
			state += ",disabled"
		}
		if b.Draining {
			state += ",draining"
		}
		var tasks []string
		for _, t := range b.Tasks {
			tasks = append(tasks, taskRef(t))
		}
		hb := "never"
		if b.HeartbeatAgeSeconds != nil {
			hb = format.Duration(*b.HeartbeatAgeSeconds) + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", b.Name, b.Host, state, b.Busy, b.Slots, hb,
			dashIfEmpty(strings.Join(tasks, ",")), strings.Join(b.Platforms, ","))
	}
	return tw.Flush()
}

func platformsCommand() *cli.Command {
	return &cli.Command{
		Name:   "platforms",
		Usage:  "list platforms: format, backend, timeout, tasks waiting and building, builders online",
		Flags:  []cli.Flag{jsonFlag},
		Action: withDB(runPlatforms),
	}
}

func runPlatforms(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	ps, err := report.ListPlatforms(ctx, db)
	if err != nil {
		return err
	}
	w := stdout(c)
	if c.Bool("json") {
		return printJSON(w, ps)
	}
	if len(ps) == 0 {
		fmt.Fprintln(w, "no platforms (an admin adds them: kiln admin platform add)")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLATFORM\tARCH\tFORMAT\tBACKEND\tTIMEOUT\tACTIVE\tWAITING\tBUILDING\tOLDEST\tBUILDERS\tDESCRIPTION")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%d\t%s\n", p.Name, p.Arch, p.PackageFormat, p.Backend,
			format.Duration(p.TimeoutSeconds), yesNo(p.Active), p.Pending, p.Building, ageOf(p.OldestWaitSeconds), p.BuildersOnline, p.Description)
	}
	return tw.Flush()
}

func queueCommand() *cli.Command {
	return &cli.Command{
		Name:  "queue",
		Usage: "show the queue of each platform, where pending tasks stand and why they are not being built",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "mine", Usage: "list only your pending tasks"},
			&cli.StringFlag{Name: "user", Usage: "list only this role's pending tasks"},
			&cli.StringFlag{Name: "platform", Usage: "list only this platform's pending tasks"},
			&cli.IntFlag{Name: "limit", Usage: "list at most this many pending tasks", Value: report.DefaultLimit},
			jsonFlag,
		},
		Action: withReadDB(runQueue),
	}
}

func runQueue(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	q, err := report.GetQueue(ctx, db, report.QueueFilter{Mine: c.Bool("mine"), Submitter: c.String("user"),
		Platform: c.String("platform"), Limit: c.Int("limit")})
	if err != nil {
		return err
	}
	w := stdout(c)
	if c.Bool("json") {
		return printJSON(w, q)
	}
	p := painter(useColor(c, w))
	if q.Validating > 0 {
		fmt.Fprintf(w, "%d %s for validation, the oldest for %s\n\n", q.Validating,
			map[bool]string{true: "job waits", false: "jobs wait"}[q.Validating == 1], ageOf(q.OldestValidatingSeconds))
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLATFORM\tWAITING\tBUILDING\tOLDEST\tBUILDERS\tSLOTS\tSTATE")
	for _, qp := range q.Platforms {
		state := p.status("succeeded", "ok")
		if len(qp.Blocked) > 0 {
			state = p.status("failed", qp.Why)
		} else if qp.Pending > 0 {
			state = qp.Why
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d/%d\t%d/%d\t%s\n", qp.Platform, qp.Pending, qp.Building, ageOf(qp.OldestWaitSeconds),
			qp.BuildersUsable, qp.BuildersTotal, qp.SlotsBusy, qp.SlotsUsable, state)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(q.Tasks) == 0 {
		fmt.Fprintln(w, "\nno pending tasks")
		return nil
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TASK\tJOB\tSUBMITTER\tPLATFORM\tPRIORITY\tWAITING\tAHEAD\tWHY")
	for _, t := range q.Tasks {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\t%d\t%s\n", taskRef(t.TaskID), t.JobID, t.Submitter, t.Platform, t.Priority,
			format.Duration(t.WaitSeconds), t.Ahead, t.Why)
	}
	return tw.Flush()
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
