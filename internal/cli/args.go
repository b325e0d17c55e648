package cli

import (
	"context"
	"slices"
	"strings"

	"github.com/urfave/cli/v2"
)

// Run runs the kiln command line on args (os.Args). Options may come
// anywhere, as with koji, copr-cli, git and osc: before or after the
// arguments, and a global option (--db, --config, ...) also after the command
// name. An unknown command is a usage error that suggests the nearest one.
func Run(ctx context.Context, args []string) error {
	app := App()
	ordered, err := Interspersed(app, args)
	if err != nil {
		return err
	}
	return app.RunContext(ctx, ordered)
}

// level is one command on the way from the program to the command run: the
// flags it knows, where its own options go and what follows it.
type level struct {
	name     string
	flags    []cli.Flag
	commands []*cli.Command
	action   bool // runs something itself, so words after it are arguments
	options  []string
}

// Interspersed reorders args (args[0] is the program) into the order urfave/cli
// parses: each command's options right after its name, then its arguments.
// Each option goes to the nearest command on the path that knows it; one no
// command knows stays with the last command, whose parser then reports it. Everything
// after "--" is an argument. Bash completion's trailing flag stays last.
func Interspersed(app *cli.App, args []string) ([]string, error) {
	if len(args) == 0 {
		return args, nil
	}
	rest := args[1:]
	var complete []string
	if n := len(rest); n > 0 && rest[n-1] == "--generate-bash-completion" {
		rest, complete = rest[:n-1], rest[n-1:]
	}
	path := []*level{{name: args[0], flags: app.Flags, commands: app.Commands, action: app.Action != nil}}
	var positional []string
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			positional = append(positional, rest[i:]...)
			break
		}
		if len(a) > 1 && strings.HasPrefix(a, "-") {
			owner, takesValue := flagOwner(path, a)
			owner.options = append(owner.options, a)
			if takesValue && i+1 < len(rest) {
				i++
				owner.options = append(owner.options, rest[i])
			}
			continue
		}
		cur := path[len(path)-1]
		if len(positional) == 0 && len(cur.commands) > 0 {
			if sub := findCommand(cur.commands, a); sub != nil {
				path = append(path, &level{name: a, flags: sub.Flags, commands: sub.Subcommands, action: sub.Action != nil})
				continue
			}
			if !cur.action && a != "help" {
				return nil, unknownCommand(path, a)
			}
		}
		positional = append(positional, a)
	}
	out := make([]string, 0, len(args)+1)
	for _, l := range path {
		out = append(out, l.name)
		out = append(out, l.options...)
	}
	out = append(out, positional...)
	return append(out, complete...), nil
}

// flagOwner finds the innermost command on path that knows option a (-x,
// --name or --name=value) and whether the option takes the next word as its
// value. An option nobody knows belongs to the innermost command.
func flagOwner(path []*level, a string) (*level, bool) {
	name := strings.TrimLeft(a, "-")
	name, _, hasValue := strings.Cut(name, "=")
	for i := len(path) - 1; i >= 0; i-- {
		for _, f := range path[i].flags {
			if slices.Contains(f.Names(), name) {
				return path[i], !hasValue && takesValue(f)
			}
		}
		if name == "help" || name == "h" {
			return path[i], false
		}
	}
	return path[len(path)-1], false
}

func takesValue(f cli.Flag) bool {
	_, isBool := f.(*cli.BoolFlag)
	return !isBool
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		if c.HasName(name) {
			return c
		}
	}
	return nil
}

// unknownCommand is the usage error for a word that names no command of
// the last level of path, with the nearest command's name when one is close.
func unknownCommand(path []*level, word string) error {
	names := []string{"kiln"} // not args[0], which may be a whole path
	for _, l := range path[1:] {
		names = append(names, l.name)
	}
	where := strings.Join(names, " ")
	best, bestDist := "", 3 // suggest only close matches
	for _, c := range path[len(path)-1].commands {
		for _, n := range c.Names() {
			if d := editDistance(word, n); d < bestDist {
				best, bestDist = n, d
			}
		}
	}
	if best != "" {
		return usageError("%q is not a command of %s; did you mean %q? (%s help lists them)", word, where, best, where)
	}
	return usageError("%q is not a command of %s (%s help lists them)", word, where, where)
}

// editDistance is the Damerau-Levenshtein distance (with adjacent
// transpositions, so "sumbit" is one step from "submit").
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
