package cli

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/report"
)

// bashCompletion asks kiln itself for the words that may come next (urfave's
// --generate-bash-completion).
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
  COMPREPLY=($(compgen -W "$("${words[@]}" --generate-bash-completion 2>/dev/null)" -- "$cur"))
}
complete -o bashdefault -o default -F _kiln_complete kiln
`

const zshCompletion = `#compdef kiln
# kiln zsh completion: source <(kiln completion zsh)
_kiln() {
  local -a opts
  local cur=${words[-1]}
  if [[ "$cur" == "-"* ]]; then
    opts=("${(@f)$(${words[@]:0:#words[@]-1} ${cur} --generate-bash-completion)}")
  else
    opts=("${(@f)$(${words[@]:0:#words[@]-1} --generate-bash-completion)}")
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

// setCompletions gives the commands whose first argument is a job or a
// platform a completion of the values the farm has: the person's most
// recent visible job ids, or the platform names. parent is the name of the
// command cmds belong to ("" for the top level).
func setCompletions(cmds []*cli.Command, parent string) {
	for _, c := range cmds {
		usage := strings.Fields(c.ArgsUsage)
		switch {
		case len(usage) > 0 && strings.HasPrefix(usage[0], "JOB"):
			c.BashComplete = completeArg(c, jobIDs)
		case len(usage) > 0 && strings.Trim(usage[0], "[]") == "PLATFORM",
			parent == "platform" && c.Name != "add" && c.ArgsUsage == "NAME":
			c.BashComplete = completeArg(c, platformNames)
		}
		setCompletions(c.Subcommands, c.Name)
	}
}

// completeArg completes cmd's first argument (every one for a command that
// takes several, JOB...) with the words values reads, and flags as urfave
// does when the word being completed starts with "-". It prints nothing
// when the farm cannot be reached: completion never shows an error.
func completeArg(cmd *cli.Command, values func(context.Context, *pgxpool.Pool) ([]string, error)) cli.BashCompleteFunc {
	return func(c *cli.Context) {
		if n := len(os.Args); n > 2 && strings.HasPrefix(os.Args[n-2], "-") {
			cli.DefaultCompleteWithFlags(cmd)(c)
			return
		}
		if c.NArg() > 0 && !strings.Contains(cmd.ArgsUsage, "...") {
			return
		}
		// urfave skips the app's Before (loadConfig) when completing.
		if _, ok := c.App.Metadata[metadataKey].(settings); !ok && loadConfig(c) != nil {
			return
		}
		db, err := connect(c)
		if err != nil {
			return
		}
		defer db.Close()
		words, err := values(c.Context, db)
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
