// Package cli defines the kiln command line: every command, its flags and how
// it prints. cmd/kiln only runs it.
package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/dbconn"
)

// Version is set at build time (-ldflags "-X .../internal/cli.Version=...").
var Version = "dev"

// App builds the kiln command line application.
func App() *cli.App {
	return &cli.App{
		Name:    "kiln",
		Usage:   "submit and follow jobs on the kiln build farm",
		Version: Version,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "db", Usage: "PostgreSQL connection string or URL (default: libpq's PG* environment variables)", EnvVars: []string{"KILN_DB"}},
			&cli.StringFlag{Name: "web-url", Usage: "base address of kiln-web, used to print links to jobs", EnvVars: []string{"KILN_WEB_URL"}, Value: "http://localhost:8080"},
		},
		Commands: []*cli.Command{
			adminCommand(),
			submitCommand(),
		},
		EnableBashCompletion: true,
	}
}

// connect opens the database named by the global flags.
func connect(c *cli.Context) (*pgxpool.Pool, error) {
	return dbconn.Open(c.Context, dbconn.Config{URL: c.String("db"), AppName: "kiln"})
}

// withDB runs fn with a connected pool.
func withDB(fn func(ctx context.Context, c *cli.Context, db *pgxpool.Pool) error) cli.ActionFunc {
	return func(c *cli.Context) error {
		db, err := connect(c)
		if err != nil {
			return err
		}
		defer db.Close()
		return fn(c.Context, c, db)
	}
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func stdout(c *cli.Context) io.Writer {
	if c.App.Writer != nil {
		return c.App.Writer
	}
	return os.Stdout
}

func usageError(format string, args ...any) error {
	return cli.Exit(fmt.Sprintf(format, args...), ExitUsage)
}

// Exit codes, documented in docs/cli.md.
const (
	ExitOK      = 0
	ExitFailure = 1 // the command ran and the outcome is a failure (job failed, ...)
	ExitUsage   = 2 // bad arguments
)
