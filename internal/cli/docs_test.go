package cli

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
)

// placeholders stand in for the upper-case words of the docs' synopses.
var placeholders = strings.NewReplacer(
	"JOB", "42", "TASK", "t17", "ID", "42", "DIR", "out", "FILE", "x.src.rpm", "BUCKET", "devel",
	"PLATFORM", "el9-x86_64", "PERSON", "alice", "ROLE", "alice", "HOST", "build01.example.org",
	"NAME", "el9-x86_64", "URL", "https://kiln.example.org", "PROCESS", "janitor", "SNAPSHOT", "3",
	"PACKAGE", "hello", "COMMAND", "submit",
)

// docCommands are the kiln command lines quoted in a Markdown file: code
// spans and code-block lines that start with "kiln ", cut at a pipe,
// redirection, comment or "&&", with one-letter placeholders (N, D, P, U,
// S, T) and the upper-case words of placeholders filled in. Synopses with
// alternatives or options in brackets are left out.
func docCommands(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	spans := regexp.MustCompile("`(kiln [^`]+)`").FindAllStringSubmatch(string(b), -1)
	var lines [][]string
	fenced := false
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "```") {
			fenced = !fenced
			continue
		}
		if l = strings.TrimPrefix(strings.TrimSpace(l), "$ "); fenced && strings.HasPrefix(l, "kiln ") {
			lines = append(lines, []string{l, l})
		}
	}
	letters := regexp.MustCompile(`\b[NDPUST]\b`)
	fill := map[string]string{"N": "3", "D": "1h", "P": "el9-x86_64", "U": "alice", "S": "failed", "T": "2026-01-01"}
	for _, m := range append(spans, lines...) {
		line := strings.ReplaceAll(m[1], "\n", " ")
		for _, cut := range []string{" | ", " #", " && ", " > ", " 2>", "  ("} {
			if i := strings.Index(line, cut); i >= 0 {
				line = line[:i]
			}
		}
		line = strings.TrimSpace(line)
		if strings.ContainsAny(line, "[]|<>$…") || strings.Contains(line, "...") || strings.HasSuffix(line, "-") {
			continue
		}
		line = letters.ReplaceAllStringFunc(placeholders.Replace(line), func(s string) string { return fill[s] })
		out = append(out, line)
	}
	return out
}

// words splits a command line as a shell does for the simple quoting the
// docs use ('...' and "...").
func words(line string) []string {
	var out []string
	var cur strings.Builder
	quote, in := rune(0), false
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote, in = r, true
		case r == ' ':
			if in {
				out = append(out, cur.String())
				cur.Reset()
				in = false
			}
		default:
			cur.WriteRune(r)
			in = true
		}
	}
	if in {
		out = append(out, cur.String())
	}
	return out
}

// asksForHelp says whether a command line asks urfave for help.
func asksForHelp(args []string) bool {
	for _, a := range args {
		if a == "help" || a == "h" || a == "--help" || a == "-h" {
			return true
		}
	}
	return false
}

// parseOnly makes app check a command line's grammar and do nothing: every
// action is a no-op and the config is not read.
func parseOnly(app *cli.App) {
	app.Before = nil
	noop := func(*cli.Context) error { return nil }
	var walk func([]*cli.Command)
	walk = func(cs []*cli.Command) {
		for _, c := range cs {
			if c.Action != nil {
				c.Action = noop
			}
			c.Before = nil
			walk(c.Subcommands)
		}
	}
	walk(app.Commands)
}

// TestDocsCommandsParse runs every kiln command line quoted in docs/cli.md
// and README.md through the CLI's grammar (options anywhere, as kiln's main
// does, then urfave's parse with no-op actions): the docs cannot show a
// form that does not parse.
func TestDocsCommandsParse(t *testing.T) {
	t.Setenv("KILN_BUCKET", "") // a submit line must name its bucket itself
	n := 0
	for _, path := range []string{"../../docs/cli.md", "../../README.md"} {
		for _, line := range docCommands(t, path) {
			if asksForHelp(words(line)) {
				// urfave's help command is one package-level value that
				// running help appends to itself; running it here makes a
				// cycle that later man-page output never leaves.
				continue
			}
			n++
			app := App()
			parseOnly(app)
			var sink strings.Builder
			app.Writer, app.ErrWriter = &sink, &sink
			args, err := Interspersed(app, words(line))
			if err == nil {
				err = app.Run(args)
			}
			if err != nil {
				t.Errorf("%s: %q does not parse: %v", path, line, err)
			}
		}
	}
	t.Logf("%d command lines parsed", n)
	if n < 40 {
		t.Errorf("only %d command lines found in the docs", n)
	}
}
