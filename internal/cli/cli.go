// Package cli defines the kiln command line: every command, its flags and how
// it prints. cmd/kiln only runs it.
package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/dbconn"
	"github.com/kiln-build/kiln/internal/termtext"
)

// Version is set at build time (-ldflags "-X .../internal/cli.Version=...").
var Version = "dev"

// App builds the kiln command line application. Errors come back from
// RunContext unprinted; ExitCode says how to exit for them.
func App() *cli.App {
	app := &cli.App{
		Name:  "kiln",
		Usage: "submit and follow jobs on the kiln build farm",
		Description: "kiln talks to the farm's PostgreSQL database as your own database role. " +
			"Settings come from flags, KILN_* and libpq's PG* environment variables, and kiln.conf files (see kiln config).",
		Version: Version,
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "db", Usage: "PostgreSQL connection string or URL (env KILN_DB; default: libpq's PG* environment variables)"},
			&cli.StringFlag{Name: "read-db", Usage: "a hot standby for kiln jobs, show and queue (env KILN_READ_DB; default: read from --db); your own changes are read from it only once it has them"},
			&cli.StringFlag{Name: "web-url", Usage: "base address of kiln-web, used to print links to jobs (env KILN_WEB_URL)", DefaultText: defaultOf("web-url")},
			&cli.StringFlag{Name: "color", Usage: "colour output: auto, always or never (env KILN_COLOR; auto honours NO_COLOR)", DefaultText: defaultOf("color")},
			&cli.StringFlag{Name: "config", Usage: "read settings from this file instead of ~/.config/kiln/kiln.conf and /etc/kiln/kiln.conf (env KILN_CONFIG)"},
		}, dbconn.KerberosFlags()...),
		Before: loadConfig,
		Commands: []*cli.Command{
			jobsCommand(),
			showCommand(),
			watchCommand(),
			logCommand(),
			downloadCommand(),
			cancelCommand(),
			resubmitCommand(),
			buildersCommand(),
			platformsCommand(),
			queueCommand(),
			checkCommand(),
			configCommand(),
			completionCommand(),
			manCommand(),
			adminCommand(),
			submitCommand(),
			repoCommand(),
			promoteCommand(),
			reportCommand(),
		},
		EnableBashCompletion: true,
		// Errors are returned to the caller (cmd/kiln), which prints them
		// and exits with ExitCode.
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError:   onUsageError,
	}
	for _, c := range app.Commands {
		setUsageErrors(c)
	}
	setCompletions(app.Commands, "")
	app.BashComplete = completeFlagValue(nil, cli.DefaultAppComplete) // kiln --color <TAB>
	return app
}

func onUsageError(_ *cli.Context, err error, _ bool) error {
	return usageError("%v (see kiln help)", err)
}

// setUsageErrors gives c and its subcommands onUsageError, unless one has
// its own (kiln check).
// ownArgs are the commands without arguments that refuse them with a
// message of their own.
var ownArgs = map[string]bool{"check": true, "jobs": true}

func setUsageErrors(c *cli.Command) {
	if c.OnUsageError == nil {
		c.OnUsageError = onUsageError
	}
	// A command that takes no arguments refuses them rather than ignoring
	// them (kiln check says so itself, in its plugin convention).
	if action := c.Action; action != nil && c.ArgsUsage == "" && !ownArgs[c.Name] {
		c.Action = func(ctx *cli.Context) error {
			if ctx.NArg() > 0 {
				return usageError("%s takes no arguments, got %q (%s --help shows its usage)", commandLine(ctx), ctx.Args().First(), commandLine(ctx))
			}
			return action(ctx)
		}
	}
	for _, s := range c.Subcommands {
		setUsageErrors(s)
	}
}

// commandLine is the command c runs as a person types it, "kiln admin
// roles apply" (urfave's FullName has only the last word when the command
// was reached through its parents).
func commandLine(c *cli.Context) string {
	var names []string
	for _, l := range c.Lineage() {
		if l.Command != nil && l.Command.Name != "" && l.Command.Name != c.App.Name {
			names = append(names, l.Command.Name)
		}
	}
	slices.Reverse(names)
	return strings.Join(append([]string{"kiln"}, names...), " ")
}

// connect opens the database named by the settings in effect.
func connect(c *cli.Context) (*pgxpool.Pool, error) {
	pool, err := dbconn.Open(c.Context, dbconn.WithFlags(c, dbconn.Config{URL: settingsOf(c).get("db"), AppName: "kiln"}))
	if err != nil {
		return nil, &connectError{err}
	}
	return pool, nil
}

// withDB runs fn with a connected pool. With a read-db, it remembers
// afterwards how far the primary had got (rememberWritten), so that the
// person's next reads from the standby wait for what fn wrote.
func withDB(fn func(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		db, err := connect(c)
		if err != nil {
			return err
		}
		defer db.Close()
		if err := fn(c.Context, c, db); err != nil {
			return err
		}
		if settingsOf(c).get("read-db") != "" {
			return rememberWritten(c, db)
		}
		return nil
	}
}

// withReadDB runs a read-only fn with the standby of the read-db setting
// once it has replayed the person's last write (dbconn.Reads), or with the
// primary: without a read-db, when it lags behind for too long, when it
// cannot be reached, or when it cancels the read for a recovery conflict
// (dbconn.RecoveryConflict; the read is made again on the primary).
func withReadDB(fn func(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		primary, err := connect(c)
		if err != nil {
			return err
		}
		defer primary.Close()
		reads := dbconn.Reads{Primary: primary}
		if url := settingsOf(c).get("read-db"); url != "" {
			replica, err := dbconn.Open(c.Context, dbconn.WithFlags(c, dbconn.Config{URL: url, AppName: "kiln"}))
			if err == nil {
				defer replica.Close()
				reads.Replica = replica
			}
		}
		written, err := lastWritten(c)
		if err != nil {
			return err
		}
		db := reads.For(c.Context, written)
		err = fn(c.Context, c, db)
		if err != nil && db != primary && dbconn.RecoveryConflict(err) {
			// The standby cancelled the read to replay past it: the
			// primary answers instead.
			return fn(c.Context, c, primary)
		}
		return err
	}
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := w.Write(jsonControls(b.Bytes()))
	return err
}

// printJSONLine writes v as JSON on one line.
func printJSONLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(jsonControls(b), '\n'))
	return err
}

// jsonControls escapes in JSON text what encoding/json leaves raw but a
// terminal may act on: DEL and the C1 controls (U+007F to U+009F), as
// \u00XX, which is the same JSON. They occur only inside strings. (Other
// controls encoding/json escapes itself, and it replaces invalid UTF-8.)
func jsonControls(b []byte) []byte {
	if !bytes.ContainsFunc(b, func(r rune) bool { return r >= 0x7f && r <= 0x9f }) {
		return b
	}
	var out bytes.Buffer
	for _, r := range string(b) {
		if r >= 0x7f && r <= 0x9f {
			fmt.Fprintf(&out, `\u%04x`, r)
			continue
		}
		out.WriteRune(r)
	}
	return out.Bytes()
}

// stdout is where a command prints. Everything printed goes through
// termtext, so that text from builds and other people (logs, reasons,
// notes, names) cannot drive the terminal: control characters and escape
// sequences other than colours are shown escaped (docs/security.md).
func stdout(c *cli.Context) io.Writer {
	if c.App.Writer != nil {
		return termtext.NewWriter(c.App.Writer)
	}
	return termtext.NewWriter(os.Stdout)
}

// stderr is where a command prints messages, through termtext as stdout.
func stderr(c *cli.Context) io.Writer {
	return termtext.NewWriter(rawStderr(c))
}

// rawStderr is stderr without escaping, for kiln's own progress line only.
func rawStderr(c *cli.Context) io.Writer {
	if c.App.ErrWriter != nil {
		return c.App.ErrWriter
	}
	return os.Stderr
}

// unwrap returns the writer beneath a termtext.Writer (to ask whether it is
// a terminal).
func unwrap(w io.Writer) io.Writer {
	if u, ok := w.(interface{ Unwrap() io.Writer }); ok {
		return u.Unwrap()
	}
	return w
}

func usageError(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), ExitUsage)
}

// Exit codes, documented in docs/cli.md.
const (
	ExitOK         = 0
	ExitFailure    = 1 // the command ran and the outcome is a failure (the watched job failed, ...)
	ExitUsage      = 2 // bad arguments
	ExitNotFound   = 3 // no such job, task, platform
	ExitPermission = 4 // permission denied
	ExitConnect    = 5 // cannot connect or authenticate
	ExitState      = 6 // refused because of the state things are in
	ExitIntegrity  = 7 // checksum mismatch, unsafe file name, file in the way
	ExitError      = 8 // anything else
)

// ExitCode is the exit status for an error returned by App().RunContext.
func ExitCode(err error) int {
	if err == nil {
		return ExitOK
	}
	var exit cli.ExitCoder
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	return classify(err)
}

// connectError marks a failure to reach or log in to the database.
type connectError struct{ err error }

func (e *connectError) Error() string {
	return e.err.Error() + kerberosHint(e.err)
}

func (e *connectError) Unwrap() error { return e.err }
