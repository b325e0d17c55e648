package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/environment"
	"github.com/kiln-build/kiln/internal/format"
	kplatform "github.com/kiln-build/kiln/internal/platform"
	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/riverjob"
)

// environmentCommand is `kiln admin environment`: the clean build
// environments of sbuild platforms (internal/environment).
func environmentCommand() *cli.Command {
	return &cli.Command{
		Name:  "environment",
		Usage: "manage the build environments of sbuild platforms (made by a builder of the platform)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "say what a platform's environment is made from and have a builder of the platform make it",
				ArgsUsage: "PLATFORM",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "dist", Usage: "distribution (default: the platform's backend setting dist)"},
					&cli.StringFlag{Name: "arch", Usage: "Debian architecture (default: the platform's)"},
					&cli.StringFlag{Name: "mirror", Usage: "Debian mirror", Value: "http://deb.debian.org/debian"},
					&cli.StringSliceFlag{Name: "component", Usage: "archive component (repeatable)", Value: cli.NewStringSlice("main")},
					&cli.StringSliceFlag{Name: "package", Usage: "extra package to install (repeatable)"},
					&cli.DurationFlag{Name: "max-age", Usage: "age at which the janitor has it refreshed", Value: 7 * 24 * time.Hour},
				},
				Action: withDB(runEnvironmentCreate),
			},
			{
				Name:      "refresh",
				Usage:     "have a builder of the platform make its environment again (the current one stays until the new one is in place)",
				ArgsUsage: "PLATFORM",
				Action:    withDB(runEnvironmentRefresh),
			},
			{Name: "list", Usage: "list environments", ArgsUsage: "[PLATFORM]", Flags: []cli.Flag{jsonFlag}, Action: withDB(runEnvironmentList)},
			{Name: "show", Usage: "show an environment and its packages", ArgsUsage: "ID", Flags: []cli.Flag{jsonFlag}, Action: withDB(runEnvironmentShow)},
			{Name: "rm", Usage: "remove an environment that no platform uses now", ArgsUsage: "ID", Action: withDB(runEnvironmentRm)},
		},
	}
}

func onePlatform(c *cli.Context) (string, error) {
	if c.NArg() != 1 {
		return "", fmt.Errorf("%s needs one PLATFORM", commandLine(c))
	}
	return c.Args().First(), nil
}

func runEnvironmentCreate(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	platform, err := onePlatform(c)
	if err != nil {
		return err
	}
	p, err := kplatform.Get(ctx, db, platform, false)
	if errors.Is(err, kplatform.ErrNotFound) {
		return fmt.Errorf("platform %s does not exist (kiln admin platform list)%.0w", platform, report.ErrNotFound)
	}
	if err != nil {
		return explainDB(err, "reading the platform")
	}
	arch, backend, settings := p.Arch, p.Backend, p.BackendSettings
	if backend != "sbuild" {
		return fmt.Errorf("platform %s builds with %s; only sbuild platforms build in environments", platform, backend)
	}
	spec := environment.Spec{Dist: c.String("dist"), Arch: c.String("arch"), Mirror: c.String("mirror"),
		Components: c.StringSlice("component"), Packages: c.StringSlice("package")}
	if spec.Dist == "" {
		spec.Dist, _ = settings["dist"].(string)
	}
	if spec.Arch == "" {
		spec.Arch = arch
	}
	if err := spec.Check(); err != nil {
		return err
	}
	if c.Duration("max-age") <= 0 {
		return fmt.Errorf("--max-age must be positive")
	}
	raw, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	err = queueEnvironment(ctx, db, platform, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO kiln.platform_environment (platform, spec, max_age) VALUES ($1, $2, make_interval(secs => $3))
			ON CONFLICT (platform) DO UPDATE SET spec = EXCLUDED.spec, max_age = EXCLUDED.max_age`,
			platform, raw, c.Duration("max-age").Seconds())
		return explainDB(err, "recording the environment spec")
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout(c), "queued: a builder of %s makes its %s/%s environment from %s\n", platform, spec.Dist, spec.Arch, spec.Mirror)
	return nil
}

func runEnvironmentRefresh(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	platform, err := onePlatform(c)
	if err != nil {
		return err
	}
	err = queueEnvironment(ctx, db, platform, func(tx pgx.Tx) error {
		var one int
		err := tx.QueryRow(ctx, `SELECT 1 FROM kiln.platform_environment WHERE platform = $1`, platform).Scan(&one)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("platform %s has no environment to refresh (kiln admin environment create %s)%.0w", platform, platform, report.ErrNotFound)
		}
		return explainDB(err, "reading the environment spec")
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout(c), "queued: a builder of %s makes its environment again\n", platform)
	return nil
}

// queueEnvironment runs first and queues the environment River job for
// platform in one transaction.
func queueEnvironment(ctx context.Context, db *pgxpool.Pool, platform string, first func(pgx.Tx) error) error {
	client, err := riverjob.NewInserter(db, nil)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if err := first(tx); err != nil {
			return err
		}
		res, err := client.InsertTx(ctx, tx, riverjob.EnvironmentArgs{Platform: platform}, nil)
		if err != nil {
			return explainDB(err, "queueing the environment job")
		}
		if res.UniqueSkippedAsDuplicate {
			return fmt.Errorf("platform %s's environment is already being made (River job %d)", platform, res.Job.ID)
		}
		return nil
	})
}

// environmentJSON is an environment as --json prints it.
type environmentJSON struct {
	ID       int64             `json:"id"`
	Platform string            `json:"platform"`
	SHA256   string            `json:"sha256"`
	Size     int64             `json:"size"`
	Spec     environment.Spec  `json:"spec"`
	Created  time.Time         `json:"created_at"`
	Builder  string            `json:"builder"`
	Current  bool              `json:"current"`
	Retired  *time.Time        `json:"retired_at"`
	Packages map[string]string `json:"packages,omitempty"`
}

func toJSON(e environment.Environment, withPackages bool) environmentJSON {
	j := environmentJSON{ID: e.ID, Platform: e.Platform, SHA256: e.Sum.String(), Size: e.Size, Spec: e.Spec,
		Created: e.Created, Builder: e.Builder, Current: e.Retired.IsZero()}
	if !e.Retired.IsZero() {
		r := e.Retired
		j.Retired = &r
	}
	if withPackages {
		j.Packages = e.Packages
	}
	return j
}

func runEnvironmentList(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	if c.NArg() > 1 {
		return fmt.Errorf("environment list takes at most one PLATFORM")
	}
	list, err := environment.List(ctx, db, c.Args().First())
	if err != nil {
		return explainDB(err, "listing environments")
	}
	if c.Bool("json") {
		out := []environmentJSON{}
		for _, e := range list {
			out = append(out, toJSON(e, false))
		}
		return printJSON(stdout(c), out)
	}
	w := tabwriter.NewWriter(stdout(c), 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "ID\tPLATFORM\tSTATE\tAGE\tSIZE\tPACKAGES\tSHA256")
	for _, e := range list {
		state := "current"
		if !e.Retired.IsZero() {
			state = "retired"
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", e.ID, e.Platform, state, format.Duration(time.Since(e.Created).Seconds()),
			format.Size(e.Size), len(e.Packages), e.Sum.String()[:16])
	}
	return w.Flush()
}

func environmentID(c *cli.Context) (int64, error) {
	if c.NArg() != 1 {
		return 0, fmt.Errorf("%s needs one environment ID (kiln admin environment list)", commandLine(c))
	}
	id, err := strconv.ParseInt(c.Args().First(), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%q is not an environment ID (a number, see kiln admin environment list)", c.Args().First())
	}
	return id, nil
}

func runEnvironmentShow(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	id, err := environmentID(c)
	if err != nil {
		return err
	}
	e, err := environment.Get(ctx, db, id)
	if errors.Is(err, environment.ErrNone) {
		return fmt.Errorf("environment %d does not exist%.0w", id, report.ErrNotFound)
	}
	if err != nil {
		return explainDB(err, "reading the environment")
	}
	if c.Bool("json") {
		return printJSON(stdout(c), toJSON(e, true))
	}
	w := stdout(c)
	state := "current"
	if !e.Retired.IsZero() {
		state = "retired " + format.Time(e.Retired.Local())
	}
	fmt.Fprintf(w, "environment %d of %s (%s)\nsha256:   %s\nsize:     %d bytes\nmade:     %s by %s\nspec:     %s/%s from %s %v, extra packages %v\npackages: %d\n",
		e.ID, e.Platform, state, e.Sum, e.Size, format.Time(e.Created.Local()), e.Builder,
		e.Spec.Dist, e.Spec.Arch, e.Spec.Mirror, e.Spec.Components, e.Spec.Packages, len(e.Packages))
	names := make([]string, 0, len(e.Packages))
	for n := range e.Packages {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %s %s\n", n, e.Packages[n])
	}
	return nil
}

func runEnvironmentRm(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	id, err := environmentID(c)
	if err != nil {
		return err
	}
	tag, err := db.Exec(ctx, `DELETE FROM kiln.environment WHERE id = $1`, id)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "23503" { // foreign_key_violation
			return fmt.Errorf("environment %d is a platform's current environment; refresh the platform first", id)
		}
		return explainDB(err, "removing the environment")
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("environment %d does not exist%.0w", id, report.ErrNotFound)
	}
	fmt.Fprintf(stdout(c), "removed environment %d (its bytes go with the janitor's next prune)\n", id)
	return nil
}
