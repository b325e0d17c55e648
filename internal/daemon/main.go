package daemon

import (
	"context"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"
)

// App is a kiln daemon's command line: its name and one-line usage, kiln's
// version (--version prints it), the daemon's own flags followed by the
// shared Flags, and its action. Every cmd/kiln-* daemon is built by it, so
// that they all take the same --db, --log-level, --version and Kerberos
// flags with the same environment variables.
func App(name, usage, version string, own []cli.Flag, action cli.ActionFunc) *cli.App {
	return &cli.App{
		Name:    name,
		Usage:   usage,
		Version: version,
		Flags:   append(own, Flags()...),
		Action:  action,
	}
}

// Main runs app with the program's arguments under a context that SIGTERM
// and SIGINT cancel (SignalContext); an error is printed as "NAME: error"
// and the program exits with status 1.
func Main(app *cli.App) {
	ctx, stop := SignalContext(context.Background())
	err := app.RunContext(ctx, os.Args)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", app.Name, err)
		os.Exit(1)
	}
}
