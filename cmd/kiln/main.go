// Command kiln is the farm's command line: submit and follow jobs, and
// administer the farm (kiln admin ...). See docs/cli.md.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	kcli "github.com/kiln-build/kiln/internal/cli"
	"github.com/kiln-build/kiln/internal/termtext"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := kcli.Run(ctx, os.Args)
	stop()
	if err == nil {
		return
	}
	if msg := err.Error(); msg != "" {
		// The message may carry text from builds and other people.
		fmt.Fprintln(os.Stderr, "kiln:", termtext.Terminal(msg))
	}
	os.Exit(kcli.ExitCode(err))
}
