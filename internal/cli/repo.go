package cli

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/format"
	"github.com/kiln-build/kiln/internal/repo"
)

func repoCommand() *cli.Command {
	return &cli.Command{
		Name:  "repo",
		Usage: "the buckets' package repositories: list, show, snapshots, rollback, rm, export, token",
		Description: "Every bucket publishes one signed repository per platform (APT or rpm-md), served by kiln-web " +
			"under /repos/BUCKET/PLATFORM/ (docs/repositories.md).",
		Subcommands: []*cli.Command{
			{Name: "ls", Usage: "list the published repositories", Flags: []cli.Flag{jsonFlag}, Action: withDB(runRepoList)},
			{Name: "show", Usage: "list the binary packages a bucket serves", ArgsUsage: "BUCKET",
				Flags:  []cli.Flag{&cli.StringFlag{Name: "platform", Usage: "only this platform's repository"}, jsonFlag},
				Action: withDB(runRepoShow)},
			{Name: "snapshots", Usage: "list a bucket's snapshots", ArgsUsage: "BUCKET", Flags: []cli.Flag{jsonFlag}, Action: withDB(runRepoSnapshots)},
			{Name: "rollback", Usage: "serve an earlier snapshot again (needs a grant on the bucket)", ArgsUsage: "BUCKET SNAPSHOT", Action: withDB(runRepoRollback)},
			{Name: "rm", Usage: "take a binary package out of a bucket (needs a grant on the bucket)", ArgsUsage: "BUCKET PACKAGE",
				Flags:  []cli.Flag{&cli.StringFlag{Name: "platform", Usage: "only from this platform's repository"}},
				Action: withDB(runRepoRemove)},
			{Name: "export", Usage: "write a bucket's served repositories to a directory, for any web server or mirror", ArgsUsage: "BUCKET DIR", Action: withDB(runRepoExport)},
			{Name: "token", Usage: "make a token for reading private repositories with apt or dnf", Action: withDB(runRepoToken)},
		},
	}
}

func promoteCommand() *cli.Command {
	return &cli.Command{
		Name:      "promote",
		Usage:     "copy a job's published packages into another bucket, with no rebuild",
		ArgsUsage: "JOB",
		Description: "The very files the job's own bucket serves are published into the --to bucket by kiln-publisher. " +
			"You need a grant on the target bucket.",
		Flags:  []cli.Flag{&cli.StringFlag{Name: "to", Usage: "the target bucket", Required: true}},
		Action: withDB(runPromote),
	}
}

func args(c *cli.Context, n int, usage string) error {
	if c.NArg() != n {
		return usageError("usage: %s %s", commandLine(c), usage)
	}
	return nil
}

// repoRow is one line of kiln repo ls --json.
type repoRow struct {
	Bucket       string    `json:"bucket"`
	Platform     string    `json:"platform"`
	Packages     int64     `json:"packages"`
	PackageBytes int64     `json:"package_bytes"`
	Snapshot     int32     `json:"snapshot"`
	PublishedAt  time.Time `json:"published_at"`
}

func runRepoList(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	rows, err := db.Query(ctx, `SELECT bucket, platform, packages, coalesce(package_bytes, 0), snapshot_seq, published_at
		FROM kiln.repository_summary ORDER BY bucket, platform`)
	if err != nil {
		return err
	}
	rs, err := pgx.CollectRows(rows, pgx.RowToStructByPos[repoRow])
	if err != nil {
		return err
	}
	w := stdout(c)
	if c.Bool("json") {
		return printJSON(w, rs)
	}
	if len(rs) == 0 {
		fmt.Fprintln(w, "no published repositories (kiln-publisher publishes a bucket when its first job ends)")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUCKET\tPLATFORM\tPACKAGES\tSIZE\tSNAPSHOT\tPUBLISHED")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\n", r.Bucket, r.Platform, r.Packages, format.Size(r.PackageBytes), r.Snapshot, format.Time(r.PublishedAt.Local()))
	}
	return tw.Flush()
}

// repoPackage is one line of kiln repo show --json.
type repoPackage struct {
	Platform string `json:"platform"`
	Name     string `json:"name"`
	Version  string `json:"version"`
	Arch     string `json:"arch"`
	Path     string `json:"path"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
	JobID    *int64 `json:"job_id"`
}

func runRepoShow(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	if err := args(c, 1, "BUCKET"); err != nil {
		return err
	}
	var platform *string
	if p := c.String("platform"); p != "" {
		platform = &p
	}
	rows, err := db.Query(ctx, `SELECT platform, name, version, arch, path, size, sha256, job_id FROM kiln.repository_package
		WHERE bucket = $1 AND ($2::text IS NULL OR platform = $2) ORDER BY platform, name, arch`, c.Args().First(), platform)
	if err != nil {
		return err
	}
	ps, err := pgx.CollectRows(rows, pgx.RowToStructByPos[repoPackage])
	if err != nil {
		return err
	}
	w := stdout(c)
	if c.Bool("json") {
		return printJSON(w, ps)
	}
	if len(ps) == 0 {
		fmt.Fprintf(w, "bucket %s serves no packages (or you may not read it)\n", c.Args().First())
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLATFORM\tPACKAGE\tVERSION\tARCH\tSIZE\tJOB\tPATH")
	for _, p := range ps {
		job := "-"
		if p.JobID != nil {
			job = strconv.FormatInt(*p.JobID, 10)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Platform, p.Name, p.Version, p.Arch, format.Size(p.Size), job, p.Path)
	}
	return tw.Flush()
}

// snapshotRow is one line of kiln repo snapshots --json.
type snapshotRow struct {
	Seq       int32     `json:"seq"`
	CreatedAt time.Time `json:"created_at"`
	Packages  int64     `json:"packages"`
	Served    bool      `json:"served"`
	Note      string    `json:"note"`
}

func runRepoSnapshots(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	if err := args(c, 1, "BUCKET"); err != nil {
		return err
	}
	rows, err := db.Query(ctx, `SELECT s.seq, s.created_at,
		       (SELECT count(*) FROM kiln.snapshot_files(s.bucket, s.seq) f WHERE f.package IS NOT NULL),
		       coalesce(s.id = (SELECT current_snapshot FROM kiln.bucket_publication p WHERE p.bucket = s.bucket), false), s.note
		FROM kiln.snapshot s WHERE s.bucket = $1 ORDER BY s.seq DESC`, c.Args().First())
	if err != nil {
		return err
	}
	ss, err := pgx.CollectRows(rows, pgx.RowToStructByPos[snapshotRow])
	if err != nil {
		return err
	}
	w := stdout(c)
	if c.Bool("json") {
		return printJSON(w, ss)
	}
	if len(ss) == 0 {
		fmt.Fprintf(w, "bucket %s has no snapshots (or you may not read it)\n", c.Args().First())
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SNAPSHOT\tPUBLISHED\tPACKAGES\tSERVED\tWHAT")
	for _, s := range ss {
		served := ""
		if s.Served {
			served = "*"
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%s\n", s.Seq, format.Time(s.CreatedAt.Local()), s.Packages, served, s.Note)
	}
	return tw.Flush()
}

func runRepoRollback(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	if err := args(c, 2, "BUCKET SNAPSHOT"); err != nil {
		return err
	}
	seq, err := strconv.Atoi(c.Args().Get(1))
	if err != nil || seq < 1 {
		return usageError("snapshot %q is not a snapshot number (see kiln repo snapshots %s)", c.Args().Get(1), c.Args().First())
	}
	var id int64
	if err := db.QueryRow(ctx, `SELECT kiln.rollback_bucket($1, $2)`, c.Args().First(), seq).Scan(&id); err != nil {
		return err
	}
	fmt.Fprintf(stdout(c), "rollback of %s to snapshot %d queued (request %d); kiln-publisher publishes it as a new snapshot\n", c.Args().First(), seq, id)
	return nil
}

func runRepoRemove(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	if err := args(c, 2, "BUCKET PACKAGE"); err != nil {
		return err
	}
	var platform *string
	if p := c.String("platform"); p != "" {
		platform = &p
	}
	var id int64
	if err := db.QueryRow(ctx, `SELECT kiln.remove_package($1, $2, $3)`, c.Args().First(), c.Args().Get(1), platform).Scan(&id); err != nil {
		return err
	}
	fmt.Fprintf(stdout(c), "removal of %s from %s queued (request %d)\n", c.Args().Get(1), c.Args().First(), id)
	return nil
}

func runRepoExport(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	if err := args(c, 2, "BUCKET DIR"); err != nil {
		return err
	}
	n, err := repo.Export(ctx, db, c.Args().First(), c.Args().Get(1))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout(c), "wrote %d files of bucket %s to %s\n", n, c.Args().First(), c.Args().Get(1))
	return nil
}

func runRepoToken(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	if err := args(c, 0, ""); err != nil {
		return err
	}
	var token, who string
	if err := db.QueryRow(ctx, `SELECT kiln.new_repo_token(), session_user`).Scan(&token, &who); err != nil {
		return err
	}
	w := stdout(c)
	fmt.Fprintf(w, "%s\n\nIt reads the private repositories %s may read. Keep it like a password.\n", token, who)
	fmt.Fprintf(w, "apt: /etc/apt/auth.conf.d/kiln.conf:  machine KILN-WEB-HOST/repos login %s password %s\n", who, token)
	fmt.Fprintf(w, "dnf: in the .repo file:                username=%s  password=%s\n", who, token)
	return nil
}

func runPromote(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	if err := args(c, 1, "JOB --to BUCKET"); err != nil {
		return err
	}
	job, err := parseJobID(c.Args().First())
	if err != nil {
		return err
	}
	var id int64
	if err := db.QueryRow(ctx, `SELECT kiln.promote($1, $2)`, job, c.String("to")).Scan(&id); err != nil {
		return err
	}
	fmt.Fprintf(stdout(c), "promotion of job %d into %s queued (request %d)\n", job, c.String("to"), id)
	return nil
}
