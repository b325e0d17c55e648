// Command kiln is the farm's command line: submit and follow jobs, and
// administer the farm (kiln admin ...). See docs/cli.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/urfave/cli/v2"

	kcli "github.com/kiln-build/kiln/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := kcli.App().RunContext(ctx, os.Args)
	if err == nil {
		return
	}
	var exit cli.ExitCoder
	if errors.As(err, &exit) {
		if msg := err.Error(); msg != "" {
			fmt.Fprintln(os.Stderr, "kiln:", msg)
		}
		os.Exit(exit.ExitCode())
	}
	fmt.Fprintln(os.Stderr, "kiln:", err)
	os.Exit(kcli.ExitFailure)
}
