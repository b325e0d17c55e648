package cli

import (
	"context"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/admin"
	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/task"
)

// bashCompletion asks kiln itself for the words that may come next (urfave's
// --generate-bash-completion). KILN_COMPLETE_WORD is the word being
// completed: urfave sees only the words before it, so without it kiln
// could not tell "--platform <TAB>" (a value) from "--platform<TAB>".
const bashCompletion = `# kiln bash completion: source <(kiln completion bash)
_kiln_complete() {
  local cur words
  COMPREPLY=()
  cur="${COMP_WORDS[COMP_CWORD]}"
  words=("${COMP_WORDS[@]:0:$COMP_CWORD}")
  if [[ "$cur" == "-"* ]]; then
    words+=("$cur")
  fi
  local IFS=$'\n'
  COMPREPLY=($(compgen -W "$(KILN_COMPLETE_WORD="$cur" "${words[@]}" --generate-bash-completion 2>/dev/null)" -- "$cur"))
}
complete -o bashdefault -o default -F _kiln_complete kiln
`

const zshCompletion = `#compdef kiln
# kiln zsh completion: source <(kiln completion zsh)
_kiln() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(KILN_COMPLETE_WORD=$cur ${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion)}")
  else
    opts=("${(@f)$(KILN_COMPLETE_WORD=$cur ${words[@]:0:#words[@]-1} --generate-bash-completion)}")
  fi
  if [[ "${opts[1]}" != "" ]]; then
    _describe 'values' opts
  else
    _files
  fi
}
compdef _kiln kiln
`

func completionCommand() *cli.Command {
	return &cli.Command{
		Name:      "completion",
		Usage:     "print a shell completion script: source <(kiln completion bash)",
		ArgsUsage: "bash|zsh",
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return usageError("kiln completion takes one shell, bash or zsh, got %q", c.Args().Slice())
			}
			switch c.Args().First() {
			case "bash":
				_, err := fmt.Fprint(stdout(c), bashCompletion)
				return err
			case "zsh":
				_, err := fmt.Fprint(stdout(c), zshCompletion)
				return err
			}
			return usageError("kiln completion: name the shell, bash or zsh")
		},
	}
}

func manCommand() *cli.Command {
	return &cli.Command{
		Name:   "man",
		Usage:  "print the manual page (troff), generated from the command definitions",
		Hidden: true,
		Action: func(c *cli.Context) error {
			page, err := manPage()
			if err != nil {
				return err
			}
			_, err = fmt.Fprint(stdout(c), page)
			return err
		},
	}
}

// manPage is the manual page (docs/kiln.1, make man). It is made from a
// fresh App, not the one running: that one's flags hold what this run's
// environment set (KRB5CCNAME, KILN_BUCKET, ...), which would show as
// defaults.
func manPage() (string, error) {
	app := App()
	app.Setup() // adds --help, --version and the help command, as a run does
	page, err := app.ToManWithSection(1)
	if err != nil {
		return "", fmt.Errorf("generating the manual page: %w", err)
	}
	return page + manExtra, nil
}

// manExtra ends the manual page with what the command definitions do not
// say: exit statuses, files and environment (docs/cli.md has the same).
const manExtra = `
.SH EXIT STATUS
0 success; 1 the job or task watched (watch, log -f) did not succeed; 2 bad usage;
3 no such job, task or artifact; 4 permission denied; 5 cannot connect or authenticate
(server down, no Kerberos ticket: run kinit); 6 refused because of the state things are in
(cancelling a finished job); 7 integrity (an artifact does not match its SHA-256, an unsafe
file name, a file in the way); 8 any other error; 130 interrupted.
.B kiln check
exits 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (also for its usage errors).

.SH FILES
.TP
.I ~/.config/kiln/kiln.conf
.TQ
.I /etc/kiln/kiln.conf
Settings as key = value lines (db, web-url, color); the first file that sets a key wins,
flags and environment override both.

.SH ENVIRONMENT
KILN_DB, KILN_WEB_URL, KILN_COLOR, KILN_CONFIG; libpq's PGHOST, PGPORT, PGDATABASE, PGUSER
and friends when no connection string is given; NO_COLOR turns colours off.

.SH SEE ALSO
psql(1); docs/cli.md and docs/reporting.md in kiln's sources.
`

// completionLimit is how many recent job ids completion offers.
const completionLimit = 20

// setCompletions gives every command completion of its flags' values
// (--platform NAME, --bucket NAME, --status, ...: flagValues), and the
// commands whose first argument is a job or a platform a completion of the
// values the farm has: the person's most recent visible job ids, or the
// platform names. parent is the name of the command cmds belong to (""
// for the top level).
func setCompletions(cmds []*cli.Command, parent string) {
	for _, c := range cmds {
		usage := strings.Fields(c.ArgsUsage)
		args := cli.DefaultCompleteWithFlags(c)
		switch {
		case len(usage) > 0 && strings.HasPrefix(usage[0], "JOB"):
			args = completeArg(c, jobIDs)
		case len(usage) > 0 && strings.Trim(usage[0], "[]") == "PLATFORM",
			parent == "platform" && c.Name != "add" && c.ArgsUsage == "NAME":
			args = completeArg(c, platformNames)
		}
		c.BashComplete = completeFlagValue(c, args)
		setCompletions(c.Subcommands, c.Name)
	}
}

// completion is what is being completed, as urfave and kiln's completion
// scripts tell: the word before it (urfave puts it last in os.Args, before
// --generate-bash-completion) and, when the script says (KILN_COMPLETE_WORD),
// the word itself.
type completion struct {
	prev  string
	word  string
	known bool // word is known
}

func completing() completion {
	var w completion
	if n := len(os.Args); n > 2 {
		w.prev = os.Args[n-2]
	}
	w.word, w.known = os.LookupEnv("KILN_COMPLETE_WORD")
	return w
}

// flagName reports whether the word being completed is a flag's name: it
// starts with "-" (kiln's scripts then pass it as the last word), or,
// without word from the script, the last word does.
func (w completion) flagName() bool {
	if w.known {
		return strings.HasPrefix(w.word, "-")
	}
	return strings.HasPrefix(w.prev, "-")
}

// valueOf is the flag whose value is being completed ("" if none): the
// word before is a flag of cmd, or of a command it belongs to, that takes
// a value, and the word being completed is not itself a flag.
func (w completion) valueOf(c *cli.Context, cmd *cli.Command) string {
	if !strings.HasPrefix(w.prev, "-") || strings.Contains(w.prev, "=") || (w.known && strings.HasPrefix(w.word, "-")) {
		return ""
	}
	name := strings.TrimLeft(w.prev, "-")
	flags := slices.Clone(c.App.Flags)
	if cmd != nil {
		flags = append(flags, cmd.Flags...)
	}
	for _, l := range c.Lineage() {
		if l.Command != nil {
			flags = append(flags, l.Command.Flags...)
		}
	}
	for _, f := range flags {
		if slices.Contains(f.Names(), name) && takesValue(f) {
			return f.Names()[0]
		}
	}
	return ""
}

// completeFlagValue completes the value of the flag before the word being
// completed with flagValues, and hands everything else to args. Values of
// list flags (--platform a,b) are offered after what the word has up to
// its last "," or "!".
func completeFlagValue(cmd *cli.Command, args cli.BashCompleteFunc) cli.BashCompleteFunc {
	return func(c *cli.Context) {
		w := completing()
		flag := w.valueOf(c, cmd)
		if flag == "" {
			args(c)
			return
		}
		words, err := flagValues(c, cmd, flag)
		if err != nil {
			return
		}
		prefix := ""
		if i := strings.LastIndexAny(w.word, ",!"); i >= 0 {
			prefix = w.word[:i+1]
		}
		out := stdout(c)
		for _, word := range words {
			fmt.Fprintln(out, prefix+word)
		}
	}
}

// flagValues are the values kiln offers for flag of cmd: names the farm
// has (platforms, buckets) read from the database, or the fixed choices
// the flag's help names. A flag without known values gets none.
func flagValues(c *cli.Context, cmd *cli.Command, flag string) ([]string, error) {
	switch flag {
	case "platform":
		ps, err := withFarm(c, platformNames)
		if cmd != nil && (cmd.Name == "submit" || cmd.Name == "resubmit") {
			ps = append(ps, "all")
		}
		return ps, err
	case "bucket":
		if cmd != nil && cmd.Name == "submit" {
			return withFarm(c, submitBuckets)
		}
		return withFarm(c, bucketNames)
	case "to", "build-against":
		return withFarm(c, bucketNames)
	case "status":
		var out []string
		for _, s := range task.JobStatuses() {
			out = append(out, string(s))
		}
		return out, nil
	case "color":
		return []string{"auto", "always", "never"}, nil
	case "backend":
		return slices.Sorted(maps.Keys(admin.Backends)), nil
	case "format":
		return []string{"rpm", "deb"}, nil
	case "publish-policy":
		return []string{"whole_job", "per_task", "none"}, nil
	case "priority":
		return []string{"1", "2", "3", "4"}, nil
	}
	return nil, nil
}

// withFarm reads words from the farm, connected as the command would be.
func withFarm(c *cli.Context, values func(context.Context, *pgxpool.Pool) ([]string, error)) ([]string, error) {
	// urfave skips the app's Before (loadConfig) when completing.
	if _, ok := c.App.Metadata[metadataKey].(settings); !ok {
		if err := loadConfig(c); err != nil {
			return nil, err
		}
	}
	db, err := connect(c)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	return values(c.Context, db)
}

// completeArg completes cmd's first argument (every one for a command that
// takes several, JOB...) with the words values reads, and flags as urfave
// does when the word being completed is a flag. It prints nothing when the
// farm cannot be reached: completion never shows an error.
func completeArg(cmd *cli.Command, values func(context.Context, *pgxpool.Pool) ([]string, error)) cli.BashCompleteFunc {
	return func(c *cli.Context) {
		if completing().flagName() {
			cli.DefaultCompleteWithFlags(cmd)(c)
			return
		}
		if c.NArg() > 0 && !strings.Contains(cmd.ArgsUsage, "...") {
			return
		}
		words, err := withFarm(c, values)
		if err != nil {
			return
		}
		w := stdout(c)
		for _, word := range words {
			fmt.Fprintln(w, word)
		}
	}
}

// jobIDs are the most recent jobs the connected role may see.
func jobIDs(ctx context.Context, db *pgxpool.Pool) ([]string, error) {
	list, err := report.ListJobs(ctx, db, report.Filter{Limit: completionLimit})
	if err != nil {
		return nil, err
	}
	out := make([]string, len(list.Jobs))
	for i, j := range list.Jobs {
		out[i] = strconv.FormatInt(j.ID, 10)
	}
	return out, nil
}

// platformNames are the farm's platforms.
func platformNames(ctx context.Context, db *pgxpool.Pool) ([]string, error) {
	ps, err := report.ListPlatforms(ctx, db)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.Name
	}
	return out, nil
}

// bucketNames are the buckets the connected role may see.
func bucketNames(ctx context.Context, db *pgxpool.Pool) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT name FROM kiln.bucket ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("listing buckets: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// submitBuckets are the buckets the session may submit to, by the rule
// kiln submit checks before the upload (submit.Precheck): open ones, those
// granted to a role it is a member of, and all of them for an admin.
func submitBuckets(ctx context.Context, db *pgxpool.Pool) ([]string, error) {
	rows, err := db.Query(ctx, `SELECT b.name FROM kiln.bucket b
		WHERE b.open
		   OR pg_catalog.pg_has_role(session_user, 'kiln_admin', 'MEMBER')
		   OR EXISTS (SELECT 1 FROM kiln.bucket_grant g
		                JOIN pg_catalog.pg_roles gr ON gr.rolname = g.grantee
		               WHERE g.bucket = b.name AND pg_catalog.pg_has_role(session_user, gr.oid, 'MEMBER'))
		ORDER BY b.name`)
	if err != nil {
		return nil, fmt.Errorf("listing buckets: %w", err)
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}
