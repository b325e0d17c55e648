package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/admin"
	fmtpkg "github.com/kiln-build/kiln/internal/format"
	"github.com/kiln-build/kiln/internal/platform"
	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/schema"
)

var jsonFlag = &cli.BoolFlag{Name: "json", Usage: "print JSON (field names are stable, see docs/cli.md)"}

func adminCommand() *cli.Command {
	return &cli.Command{
		Name:  "admin",
		Usage: "run the farm: migrations, platforms, buckets, builders, people's quotas",
		Subcommands: []*cli.Command{
			{
				Name:   "setup",
				Usage:  "set up a farm database from nothing: group roles, migrations, grants (idempotent)",
				Action: withDB(runSetup),
			},
			{
				Name:   "migrate",
				Usage:  "apply kiln's and River's schema migrations (idempotent)",
				Action: withDB(runMigrate),
			},
			{
				Name:  "platform",
				Usage: "manage build platforms",
				Subcommands: []*cli.Command{
					{
						Name:      "add",
						Usage:     "add a platform",
						ArgsUsage: "NAME",
						Flags: []cli.Flag{
							&cli.StringFlag{Name: "arch", Usage: "architecture (x86_64, aarch64, amd64, ...)", Required: true},
							&cli.StringFlag{Name: "backend", Usage: "rpmbuild, dpkg, mock, sbuild or noop", Required: true},
							&cli.StringFlag{Name: "format", Usage: "package format, rpm or deb (default: the backend's)"},
							&cli.StringFlag{Name: "settings", Usage: "backend settings as a JSON object", Value: "{}"},
							&cli.DurationFlag{Name: "timeout", Usage: "build timeout", Value: admin.DefaultTimeout},
							&cli.BoolFlag{Name: "inactive", Usage: "add it inactive (no new jobs)"},
							&cli.StringFlag{Name: "description", Usage: "free text"},
						},
						Action: withDB(runPlatformAdd),
					},
					{Name: "list", Usage: "list platforms", Flags: []cli.Flag{jsonFlag}, Action: withDB(runPlatformList)},
					{Name: "enable", Usage: "let new jobs target a platform", ArgsUsage: "NAME", Action: withDB(platformActive(true))},
					{Name: "disable", Usage: "stop new jobs targeting a platform", ArgsUsage: "NAME", Action: withDB(platformActive(false))},
					{
						Name:      "set",
						Usage:     "change a platform's settings",
						ArgsUsage: "NAME",
						Flags: []cli.Flag{
							&cli.StringFlag{Name: "arch"},
							&cli.StringFlag{Name: "backend"},
							&cli.StringFlag{Name: "format"},
							&cli.StringFlag{Name: "settings", Usage: "backend settings as a JSON object"},
							&cli.DurationFlag{Name: "timeout"},
							&cli.StringFlag{Name: "description"},
							&cli.IntFlag{Name: "max-infra-retries", Usage: "how often a task is retried after the farm's faults, 0 (none) to 100 (docs/protocol.md)"},
							&cli.DurationFlag{Name: "infra-retry-backoff", Usage: "wait before the first retry of a farm's fault, doubling after (0s to 24h)"},
						},
						Action: withDB(runPlatformSet),
					},
				},
			},
			{
				Name:  "bucket",
				Usage: "manage buckets and who may submit to them",
				Subcommands: []*cli.Command{
					{
						Name:      "add",
						Usage:     "add a bucket",
						ArgsUsage: "NAME",
						Flags: append([]cli.Flag{
							&cli.StringFlag{Name: "description"},
							&cli.BoolFlag{Name: "private", Usage: "only submitter, grantees and admins may read its jobs"},
							&cli.BoolFlag{Name: "open", Usage: "every submitter may submit without a grant"},
							&cli.DurationFlag{Name: "retention", Usage: "keep logs and artifacts of finished jobs this long (default: the janitor's)"},
						}, bucketSettingFlags...),
						Action: withDB(runBucketAdd),
					},
					{
						Name:      "set",
						Usage:     "change a bucket's repository settings",
						ArgsUsage: "NAME",
						Flags:     bucketSettingFlags,
						Action:    withDB(runBucketSet),
					},
					{Name: "list", Usage: "list buckets", Flags: []cli.Flag{jsonFlag}, Action: withDB(runBucketList)},
					{Name: "grant", Usage: "let a role submit to a bucket", ArgsUsage: "BUCKET ROLE", Action: withDB(runBucketGrant)},
					{Name: "revoke", Usage: "withdraw a bucket grant", ArgsUsage: "BUCKET ROLE", Action: withDB(runBucketRevoke)},
				},
			},
			{
				Name:  "builder",
				Usage: "manage builders",
				Subcommands: []*cli.Command{
					{Name: "list", Usage: "list builders", Flags: []cli.Flag{jsonFlag}, Action: withDB(runBuilderList)},
					{Name: "enable", Usage: "let a builder take new tasks", ArgsUsage: "NAME", Action: withDB(builderEnabled(true))},
					{Name: "disable", Usage: "stop a builder taking new tasks (running ones finish)", ArgsUsage: "NAME", Action: withDB(builderEnabled(false))},
				},
			},
			{
				Name:  "person",
				Usage: "manage people's login roles",
				Subcommands: []*cli.Command{
					{
						Name:      "add",
						Usage:     "create a person's login role (member of kiln_submitter) and grant buckets",
						ArgsUsage: "NAME",
						Flags: []cli.Flag{
							&cli.StringSliceFlag{Name: "bucket", Usage: "a bucket the person may submit to (repeat for more)"},
							&cli.BoolFlag{Name: "admin", Usage: "make the person an admin (member of kiln_admin)"},
						},
						Action: withDB(runPersonAdd),
					},
				},
			},
			{
				Name:  "builder-host",
				Usage: "manage builder hosts' login roles",
				Subcommands: []*cli.Command{
					{Name: "add", Usage: "create login role builder_HOST (member of kiln_builder)", ArgsUsage: "HOST", Action: withDB(runDaemonHostAdd("builder"))},
				},
			},
			{
				Name:  "daemon-host",
				Usage: "manage the login roles of daemons on a host",
				Subcommands: []*cli.Command{
					{
						Name:      "add",
						Usage:     "create login role PROCESS_HOST (member of kiln_PROCESS); PROCESS is " + orList(admin.Processes),
						ArgsUsage: "PROCESS HOST",
						Action: withDB(func(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
							process, host, err := twoArgs(c, "PROCESS", "HOST")
							if err != nil {
								return err
							}
							return addDaemonHost(ctx, c, db, process, host)
						}),
					},
					{Name: "list", Usage: "list the daemons' login roles (login members of kiln_PROCESS) and the principals mapped to them", Flags: []cli.Flag{jsonFlag}, Action: withDB(runDaemonHostList)},
					{Name: "rm", Usage: "drop login role PROCESS_HOST (a host taken out of the farm)", ArgsUsage: "PROCESS HOST", Action: withDB(runDaemonHostRm)},
				},
			},
			quotaCommand(),
			webURLCommand(),
			adminReportCommand(),
			{
				Name:  "roles",
				Usage: "the database roles and grants in roles/",
				Subcommands: []*cli.Command{
					{Name: "apply", Usage: "create the group roles and apply every role's grants (idempotent; after migrate)", Action: withDB(runRolesApply)},
				},
			},
			environmentCommand(),
		},
	}
}

func runPersonAdd(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	if err := admin.CheckPersonName(name); err != nil {
		return usageError("%v", err)
	}
	buckets := c.StringSlice("bucket")
	if err := admin.AddPerson(ctx, db, name, buckets, c.Bool("admin")); err != nil {
		return err
	}
	group := "kiln_submitter"
	if c.Bool("admin") {
		group = "kiln_admin"
	}
	w := stdout(c)
	fmt.Fprintf(w, "created login role %s (member of %s)\n", name, group)
	if len(buckets) > 0 {
		fmt.Fprintf(w, "%s may submit to: %s\n", name, strings.Join(buckets, ", "))
	}
	fmt.Fprintf(w, "Kerberos: pg_ident.conf maps %s@REALM to %s (see roles/pg_ident.conf.example)\n", name, name)
	return nil
}

func runDaemonHostAdd(process string) func(context.Context, *cli.Context, *pgxpool.Pool) error {
	return func(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
		host, err := oneArg(c, "HOST")
		if err != nil {
			return err
		}
		return addDaemonHost(ctx, c, db, process, host)
	}
}

func addDaemonHost(ctx context.Context, c *cli.Context, db *pgxpool.Pool, process, host string) error {
	if _, err := admin.DaemonRole(process, host); err != nil {
		return usageError("%v", err)
	}
	role, err := admin.AddDaemonHost(ctx, db, process, host)
	if err != nil {
		return err
	}
	w := stdout(c)
	fmt.Fprintf(w, "created login role %s (member of kiln_%s)\n", role, process)
	fmt.Fprintf(w, "Kerberos: give kiln-%s on %s a keytab for kiln-%s/%s@REALM; pg_ident.conf maps it to %s\n", process, host, process, host, role)
	return nil
}

func runDaemonHostList(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	if c.NArg() > 0 {
		return usageError("%s takes no arguments, got %q", commandLine(c), c.Args().Slice())
	}
	logins, err := admin.ListDaemonHosts(ctx, db)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(stdout(c), logins)
	}
	tw := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROCESS\tROLE\tPRINCIPAL")
	for _, l := range logins {
		principal := l.Principal
		if principal == "" {
			principal = "- (not <process>_<host>: pg_ident.conf.example maps no principal to it)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", l.Process, l.Role, principal)
	}
	return tw.Flush()
}

func runDaemonHostRm(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	process, host, err := twoArgs(c, "PROCESS", "HOST")
	if err != nil {
		return err
	}
	if _, err := admin.DaemonRole(process, host); err != nil {
		return usageError("%v", err)
	}
	role, err := admin.RemoveDaemonHost(ctx, db, process, host)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout(c), "dropped login role %s; connections it has open stay until they end: stop kiln-%s on %s, and delete its principal kiln-%s/%s@REALM\n",
		role, process, host, process, host)
	return nil
}

// orList joins words as "a, b or c".
func orList(words []string) string {
	if len(words) < 2 {
		return strings.Join(words, "")
	}
	return strings.Join(words[:len(words)-1], ", ") + " or " + words[len(words)-1]
}

func runRolesApply(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	if err := admin.ApplyRoles(ctx, db); err != nil {
		return err
	}
	fmt.Fprintln(stdout(c), "group roles and grants applied (roles/*.sql)")
	return nil
}

func oneArg(c *cli.Context, what string) (string, error) {
	if c.NArg() != 1 {
		return "", usageError("%s: expected one %s, got %d arguments", commandLine(c), what, c.NArg())
	}
	return c.Args().First(), nil
}

// runSetup sets up a farm database from nothing, each step in the order
// it needs: the group roles the migrations grant to, the migrations, then
// every role's grants on the tables they made.
func runSetup(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	w := stdout(c)
	if err := admin.CreateGroups(ctx, db); err != nil {
		return err
	}
	fmt.Fprintln(w, "group roles are there (roles/00-groups.sql)")
	if err := runMigrate(ctx, c, db); err != nil {
		return err
	}
	if err := admin.ApplyRoles(ctx, db); err != nil {
		return err
	}
	fmt.Fprintln(w, "grants applied (roles/*.sql); next: kiln admin person add, platform add, bucket add")
	return nil
}

func runMigrate(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	// Without the group roles the first migration fails, after the schemas
	// and River's tables were made by the migrating login rather than by
	// kiln_owner, which then may not use them: refuse before anything.
	missing, err := admin.MissingRoles(ctx, db, admin.GroupRoles())
	if err != nil {
		return err
	}
	if len(missing) > 0 {
		return cli.Exit(fmt.Sprintf("migrating: the group roles are not there yet (%s): run kiln admin setup, which creates them first (or psql -f roles/00-groups.sql, then migrate again); nothing was changed",
			strings.Join(missing, ", ")), ExitState)
	}
	res, err := schema.Migrate(ctx, db)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42704" && strings.Contains(pgErr.Message, `role "kiln_`) {
		return &dbError{fmt.Sprintf("migrating: %s: the group roles are not there yet: run kiln admin setup, which creates them first (or psql -f roles/00-groups.sql, then migrate again)", pgErr.Message), err}
	}
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		var owner string
		if db.QueryRow(ctx, `SELECT nspowner::regrole::text FROM pg_catalog.pg_namespace WHERE nspname = 'kiln'`).Scan(&owner) == nil && owner != "kiln_owner" {
			return &dbError{fmt.Sprintf("migrating: %s: schema kiln belongs to %s, not kiln_owner (an earlier migrate ran before the group roles existed?): if no migration ever succeeded here (kiln.schema_migration is empty), drop schemas kiln and river as the superuser (DROP SCHEMA kiln, river CASCADE) and run kiln admin setup",
				pgErr.Message, owner), err}
		}
	}
	if err != nil {
		return err
	}
	w := stdout(c)
	if len(res.Applied) == 0 && len(res.RiverApplied) == 0 {
		fmt.Fprintf(w, "schema is up to date (kiln version %d)\n", res.To)
		return nil
	}
	if len(res.RiverApplied) > 0 {
		fmt.Fprintf(w, "applied River migrations %v into schema %s\n", res.RiverApplied, schema.RiverSchema)
	}
	for _, m := range res.Applied {
		fmt.Fprintf(w, "applied %s\n", m)
	}
	fmt.Fprintf(w, "kiln schema version %d -> %d\n", res.From, res.To)
	return nil
}

func parseSettings(s string) (map[string]any, error) {
	var m map[string]any
	if err := json.Unmarshal([]byte(s), &m); err != nil || m == nil {
		return nil, usageError("--settings must be a JSON object, for example '{\"root\": \"rocky+epel-9-x86_64\"}'")
	}
	return m, nil
}

func runPlatformAdd(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	name, err := oneArg(c, "platform name")
	if err != nil {
		return err
	}
	settings, err := parseSettings(c.String("settings"))
	if err != nil {
		return err
	}
	format := c.String("format")
	if def, known := admin.Backends[c.String("backend")]; format == "" && known {
		format = def
		if format == "" {
			return usageError("platform %s: give --format rpm or deb", name)
		}
	}
	p := platform.Platform{
		Name: name, Arch: c.String("arch"), Backend: c.String("backend"), PackageFormat: format,
		BackendSettings: settings, Timeout: c.Duration("timeout"), Active: !c.Bool("inactive"),
		Description: c.String("description"),
	}
	if err := admin.AddPlatform(ctx, db, p); err != nil {
		return err
	}
	fmt.Fprintf(stdout(c), "added platform %s (%s, %s, backend %s, timeout %s)\n", p.Name, p.Arch, p.PackageFormat, p.Backend, fmtpkg.Duration(p.Timeout.Seconds()))
	return nil
}

func runPlatformList(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	ps, err := platform.List(ctx, db)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(stdout(c), ps)
	}
	tw := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PLATFORM\tARCH\tFORMAT\tBACKEND\tTIMEOUT\tACTIVE\tDESCRIPTION")
	for _, p := range ps {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", p.Name, p.Arch, p.PackageFormat, p.Backend, fmtpkg.Duration(p.Timeout.Seconds()), yesNo(p.Active), p.Description)
	}
	return tw.Flush()
}

func platformActive(active bool) func(context.Context, *cli.Context, *pgxpool.Pool) error {
	return func(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
		name, err := oneArg(c, "platform name")
		if err != nil {
			return err
		}
		if err := admin.SetPlatformActive(ctx, db, name, active); err != nil {
			return err
		}
		fmt.Fprintf(stdout(c), "platform %s %s\n", name, map[bool]string{true: "enabled", false: "disabled"}[active])
		return nil
	}
}

func runPlatformSet(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	name, err := oneArg(c, "platform name")
	if err != nil {
		return err
	}
	var ch admin.PlatformChange
	str := func(flag string) *string {
		if !c.IsSet(flag) {
			return nil
		}
		v := c.String(flag)
		return &v
	}
	ch.Arch, ch.Backend, ch.PackageFormat, ch.Description = str("arch"), str("backend"), str("format"), str("description")
	if c.IsSet("settings") {
		if ch.BackendSettings, err = parseSettings(c.String("settings")); err != nil {
			return err
		}
	}
	if c.IsSet("timeout") {
		d := c.Duration("timeout")
		ch.Timeout = &d
	}
	if c.IsSet("max-infra-retries") {
		n := c.Int("max-infra-retries")
		ch.MaxInfraRetries = &n
	}
	if c.IsSet("infra-retry-backoff") {
		d := c.Duration("infra-retry-backoff")
		ch.InfraRetryBackoff = &d
	}
	if err := admin.SetPlatform(ctx, db, name, ch); err != nil {
		return err
	}
	fmt.Fprintf(stdout(c), "platform %s updated\n", name)
	return nil
}

// bucketSettingFlags are the repository settings of kiln admin bucket add
// and set (docs/repositories.md).
var bucketSettingFlags = []cli.Flag{
	&cli.StringFlag{Name: "publish-policy", Usage: "what of a finished job is published: whole_job (only a job that fully succeeded), per_task (every succeeded task), none"},
	&cli.BoolFlag{Name: "sign-packages", Usage: "sign each published rpm with the bucket's key (--sign-packages=false: not)"},
	&cli.IntFlag{Name: "keep-snapshots", Usage: "how many snapshots of the repository are kept (1 to 100000)"},
	&cli.StringFlag{Name: "build-against", Usage: "further buckets, comma-separated in order, whose repositories builds install build dependencies from after the bucket's own (\"\": none)"},
}

// bucketSettings reads the bucket setting flags given.
func bucketSettings(c *cli.Context) admin.BucketSettings {
	var s admin.BucketSettings
	if c.IsSet("publish-policy") {
		v := c.String("publish-policy")
		s.PublishPolicy = &v
	}
	if c.IsSet("sign-packages") {
		v := c.Bool("sign-packages")
		s.SignPackages = &v
	}
	if c.IsSet("keep-snapshots") {
		v := c.Int("keep-snapshots")
		s.KeepSnapshots = &v
	}
	if c.IsSet("build-against") {
		list := []string{}
		for _, b := range strings.Split(c.String("build-against"), ",") {
			if b = strings.TrimSpace(b); b != "" {
				list = append(list, b)
			}
		}
		s.BuildAgainst = &list
	}
	return s
}

func runBucketAdd(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	name, err := oneArg(c, "bucket name")
	if err != nil {
		return err
	}
	b := admin.Bucket{Name: name, Description: c.String("description"), Private: c.Bool("private"), Open: c.Bool("open")}
	if err := admin.AddBucket(ctx, db, b, c.Duration("retention"), bucketSettings(c)); err != nil {
		return err
	}
	fmt.Fprintf(stdout(c), "added bucket %s\n", name)
	return nil
}

func runBucketSet(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	name, err := oneArg(c, "bucket name")
	if err != nil {
		return err
	}
	if err := admin.SetBucket(ctx, db, name, bucketSettings(c)); err != nil {
		return err
	}
	fmt.Fprintf(stdout(c), "bucket %s updated\n", name)
	return nil
}

func runBucketList(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	bs, err := admin.ListBuckets(ctx, db)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(stdout(c), bs)
	}
	tw := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUCKET\tPRIVATE\tOPEN\tRETENTION\tGRANTEES\tPUBLISH\tSIGN\tKEEP\tBUILD-AGAINST\tDESCRIPTION")
	for _, b := range bs {
		ret := "default"
		if b.RetentionSeconds != nil {
			ret = (time.Duration(*b.RetentionSeconds) * time.Second).String()
		}
		against := strings.Join(b.BuildAgainst, ",")
		if against == "" {
			against = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\n", b.Name, yesNo(b.Private), yesNo(b.Open), ret,
			strings.Join(b.Grantees, ","), b.PublishPolicy, yesNo(b.SignPackages), b.KeepSnapshots, against, b.Description)
	}
	return tw.Flush()
}

func twoArgs(c *cli.Context, a, b string) (string, string, error) {
	if c.NArg() != 2 {
		return "", "", usageError("%s: expected %s and %s", commandLine(c), a, b)
	}
	return c.Args().Get(0), c.Args().Get(1), nil
}

func runBucketGrant(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	bucket, role, err := twoArgs(c, "BUCKET", "ROLE")
	if err != nil {
		return err
	}
	if err := admin.GrantBucket(ctx, db, bucket, role); err != nil {
		return err
	}
	fmt.Fprintf(stdout(c), "%s may now submit to bucket %s\n", role, bucket)
	return nil
}

func runBucketRevoke(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	bucket, role, err := twoArgs(c, "BUCKET", "ROLE")
	if err != nil {
		return err
	}
	if err := admin.RevokeBucket(ctx, db, bucket, role); err != nil {
		return err
	}
	fmt.Fprintf(stdout(c), "%s may no longer submit to bucket %s\n", role, bucket)
	return nil
}

func runBuilderList(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	bs, err := report.ListBuilders(ctx, db)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return printJSON(stdout(c), bs)
	}
	tw := tabwriter.NewWriter(stdout(c), 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "BUILDER\tHOST\tSTATE\tENABLED\tDRAINING\tBUSY\tPLATFORMS\tHEARTBEAT")
	for _, b := range bs {
		hb := "never"
		if b.HeartbeatAt != nil {
			hb = fmtpkg.Duration(time.Since(*b.HeartbeatAt).Seconds()) + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", b.Name, b.Host, b.State, yesNo(b.Enabled), yesNo(b.Draining), b.Busy, b.Slots, strings.Join(b.Platforms, ","), hb)
	}
	return tw.Flush()
}

func builderEnabled(enabled bool) func(context.Context, *cli.Context, *pgxpool.Pool) error {
	return func(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
		name, err := oneArg(c, "builder name")
		if err != nil {
			return err
		}
		if err := admin.SetBuilderEnabled(ctx, db, name, enabled); err != nil {
			return err
		}
		fmt.Fprintf(stdout(c), "builder %s %s\n", name, map[bool]string{true: "enabled", false: "disabled"}[enabled])
		return nil
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// quotaCommand is kiln admin quota: the per-person quotas (docs/quotas.md).
func quotaCommand() *cli.Command {
	var setFlags []cli.Flag
	for _, q := range admin.Quotas {
		usage := q.Title + ": a whole number"
		if q.Bytes {
			usage += " of bytes, or with KiB, MiB, GiB, TiB"
		}
		setFlags = append(setFlags, &cli.StringFlag{Name: q.Flag(), Usage: usage + "; default drops the person's own limit"})
	}
	return &cli.Command{
		Name:  "quota",
		Usage: "people's quotas: jobs per hour, bytes per day, sizes (docs/quotas.md)",
		Description: "Without PERSON the commands work on the defaults, which apply to everyone without limits of\n" +
			"their own. A submit past a quota is refused with a message naming the quota and when it resets.",
		Subcommands: []*cli.Command{
			{
				Name: "show", Usage: "show the defaults and who has quotas of their own, or one person's quotas and use",
				ArgsUsage: "[PERSON]", Flags: []cli.Flag{jsonFlag}, Action: withDB(runQuotaShow),
			},
			{
				Name: "set", Usage: "set limits of a person (or the defaults)", ArgsUsage: "[PERSON]",
				Flags: setFlags, Action: withDB(runQuotaSet),
			},
			{
				Name: "reset", Usage: "drop a person's own limits (or restore the built-in defaults)",
				ArgsUsage: "[PERSON]", Action: withDB(runQuotaReset),
			},
		},
	}
}

// quotaPerson is the PERSON argument of kiln admin quota, or the defaults.
func quotaPerson(c *cli.Context) (string, error) {
	switch c.NArg() {
	case 0:
		return admin.Defaults, nil
	case 1:
		return c.Args().First(), nil
	}
	return "", usageError("%s: expected at most one PERSON, got %d arguments", commandLine(c), c.NArg())
}

// quotaShown is the output of kiln admin quota show --json without PERSON.
type quotaShown struct {
	Defaults  admin.PersonQuotas   `json:"defaults"`
	Overrides []admin.PersonQuotas `json:"overrides"`
}

func runQuotaShow(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	person, err := quotaPerson(c)
	if err != nil {
		return err
	}
	pq, err := admin.ShowQuotas(ctx, db, person)
	if err != nil {
		return err
	}
	w := stdout(c)
	if person != admin.Defaults {
		if c.Bool("json") {
			return printJSON(w, pq)
		}
		return printQuotas(w, pq)
	}
	shown := quotaShown{Defaults: pq, Overrides: []admin.PersonQuotas{}}
	people, err := admin.QuotaOverrides(ctx, db)
	if err != nil {
		return err
	}
	for _, p := range people {
		o, err := admin.ShowQuotas(ctx, db, p)
		if err != nil {
			return err
		}
		shown.Overrides = append(shown.Overrides, o)
	}
	if c.Bool("json") {
		return printJSON(w, shown)
	}
	if err := printQuotas(w, pq); err != nil {
		return err
	}
	if len(shown.Overrides) == 0 {
		fmt.Fprintln(w, "\nnobody has quotas of their own")
		return nil
	}
	fmt.Fprintln(w, "\nquotas of their own (- is the default):")
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	head := []string{"PERSON"}
	for _, q := range admin.Quotas {
		head = append(head, strings.ToUpper(q.Title))
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, o := range shown.Overrides {
		cells := []string{o.Person}
		for _, l := range o.Limits {
			cell := "-"
			if l.Own {
				cell = quotaValue(l)
			}
			cells = append(cells, cell)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

// printQuotas prints the limits of one person (or the defaults), with
// what they used of the quotas counted over a window.
func printQuotas(w io.Writer, pq admin.PersonQuotas) error {
	if pq.Person == admin.Defaults {
		fmt.Fprint(w, "default quotas")
	} else {
		fmt.Fprintf(w, "quotas of %s", pq.Person)
	}
	fmt.Fprintf(w, " (last set by %s at %s)\n", pq.SetBy, fmtpkg.Minute(pq.SetAt.UTC()))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "QUOTA\tLIMIT\tFROM\tUSED\tRESETS")
	for _, l := range pq.Limits {
		from := "default"
		if l.Own {
			from = "own"
		}
		// Limits on each job or River job never reset; the counted ones
		// at the end of their window.
		used := "-"
		resets := map[string]string{"jobs_per_hour": "each hour", "bytes_per_day": "each day, 00:00 UTC",
			"river_job_bytes": "(each River job)"}[l.Quota]
		if resets == "" {
			resets = "(each job)"
		}
		if l.Used != nil {
			used = quotaValue(admin.QuotaLimit{Quota: l.Quota, Limit: *l.Used})
			resets = fmtpkg.Minute(l.ResetsAt.UTC())
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", l.Title, quotaValue(l), from, used, resets)
	}
	return tw.Flush()
}

// quotaValue shows a limit: sizes in bytes with their binary unit.
func quotaValue(l admin.QuotaLimit) string {
	for _, q := range admin.Quotas {
		if q.Column == l.Quota && q.Bytes {
			return fmt.Sprintf("%d (%s)", l.Limit, fmtpkg.Size(l.Limit))
		}
	}
	return strconv.FormatInt(l.Limit, 10)
}

func runQuotaSet(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	person, err := quotaPerson(c)
	if err != nil {
		return err
	}
	limits := map[string]*int64{}
	for _, q := range admin.Quotas {
		if !c.IsSet(q.Flag()) {
			continue
		}
		v, err := admin.ParseQuotaValue(q, c.String(q.Flag()))
		if err != nil {
			return usageError("%v", err)
		}
		limits[q.Column] = v
	}
	if len(limits) == 0 {
		return usageError("%s: give at least one quota to set (see --help)", commandLine(c))
	}
	if err := admin.SetQuotas(ctx, db, person, limits); err != nil {
		return err
	}
	pq, err := admin.ShowQuotas(ctx, db, person)
	if err != nil {
		return err
	}
	return printQuotas(stdout(c), pq)
}

func runQuotaReset(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error {
	person, err := quotaPerson(c)
	if err != nil {
		return err
	}
	if err := admin.ResetQuotas(ctx, db, person); err != nil {
		return err
	}
	if person == admin.Defaults {
		fmt.Fprintln(stdout(c), "default quotas are the built-in ones again")
	} else {
		fmt.Fprintf(stdout(c), "%s has the default quotas again\n", person)
	}
	return nil
}
