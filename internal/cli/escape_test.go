package cli

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kiln-build/kiln/internal/report"
	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
)

// hostile is what a build (or another person's note) prints to take over
// the terminal of whoever reads it: a window title (OSC 0), a clipboard
// write (OSC 52), the cursor moved up over an earlier line and the line
// erased, a carriage return, a bare ESC, the C1 CSI (as UTF-8: PostgreSQL
// stores no invalid UTF-8, and the builder replaces it; termtext's own tests
// cover raw bytes), and a colour, which may stay.
const hostile = "\x1b]0;pwned\x07 \x1b]52;c;cm0gLXJmIH4=\x07 \x1b[1A\x1b[2K FAILED\rok \x1b bare \u009b2J \u009d0;t\u009c \x1b[31mred\x1b[0m\n"

// TestBuildOutputCannotDriveTheTerminal: the attacker is a build (its log
// and failure reason) and a person (a job's note); the victim runs kiln
// log, kiln log -f, kiln watch, kiln show and kiln jobs. Whatever they
// print shows the sequences escaped, keeps the colour, and as JSON carries
// the text unchanged.
func TestBuildOutputCannotDriveTheTerminal(t *testing.T) {
	t.Parallel()
	f, url := seed(t)
	p := f.DB.Pool
	job := farmtest.Submit(t, p, f.Bob, "devel", []string{farmtest.EL9}, farmtest.File{Name: "evil-1-1.src.rpm", Data: []byte("evil")})
	if _, err := p.Exec(t.Context(), `UPDATE kiln.job SET note = $2 WHERE id = $1`, job, strings.TrimSuffix(hostile, "\n")); err != nil {
		t.Fatal(err)
	}
	task := farmtest.Split(t, p, job, farmtest.EL9)[0]
	a := farmtest.Take(t, p, task, "b1")
	farmtest.Log(t, p, task, a, 0, hostile)
	farmtest.Finish(t, p, task, a, "failed", "rpmbuild said: "+strings.TrimSuffix(hostile, "\n"))
	ref := fmt.Sprintf("t%d", task)

	for _, c := range []struct {
		args []string // kiln jobs shows no note or reason: only its safety is checked
		exit int
	}{
		{[]string{"log", ref}, 0},
		{[]string{"log", "-f", ref}, ExitFailure},
		{[]string{"watch", fmt.Sprint(job)}, ExitFailure},
		{[]string{"show", fmt.Sprint(job)}, 0},
		{[]string{"jobs", "--user", f.Bob}, 0},
		{[]string{"--color", "always", "show", fmt.Sprint(job)}, 0},
	} {
		out := must(t, url, c.exit, c.args)
		// The test's own "error: ..." line is not kiln's output (cmd/kiln
		// escapes it with termtext too).
		if i := strings.LastIndex(out, "error: "); i >= 0 {
			out = out[:i]
		}
		if c.args[0] != "jobs" && !strings.Contains(out, `\x1b]0;pwn`) {
			t.Errorf("kiln %s: the title sequence is not shown escaped:\n%s", strings.Join(c.args, " "), out)
		}
		terminalSafe(t, strings.Join(c.args, " "), out)
	}
	if out := must(t, url, 0, []string{"log", ref}); !strings.Contains(out, "\x1b[31mred\x1b[0m") || !strings.Contains(out, `\u009b2J \u009d0;t\u009c`) {
		t.Errorf("kiln log: colour not kept or C1 and invalid UTF-8 not shown:\n%q", out)
	}

	// JSON: the same text, escaped the JSON way.
	var chunks []report.LogChunk
	mustJSON(t, url, &chunks, "log", ref)
	if len(chunks) != 1 || chunks[0].Data != hostile {
		t.Errorf("kiln log --json: %+v, want the stored text %q", chunks, hostile)
	}
	terminalSafe(t, "log --json", must(t, url, 0, []string{"log", "--json", ref}))
	terminalSafe(t, "show --json", must(t, url, 0, []string{"show", "--json", fmt.Sprint(job)}))
}

// terminalSafe fails unless out is UTF-8 without control characters other
// than newline and tab, and has ESC only in plain SGR colour sequences.
func terminalSafe(t *testing.T, what, out string) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Errorf("kiln %s printed invalid UTF-8: %q", what, out)
		return
	}
	for i, r := range out {
		switch {
		case r == 0x1b:
			rest := out[i:]
			end := strings.IndexByte(rest, 'm')
			if !strings.HasPrefix(rest, "\x1b[") || end < 0 || strings.Trim(rest[2:end], "0123456789;:") != "" {
				t.Errorf("kiln %s printed an escape sequence: %q", what, rest[:min(len(rest), 20)])
				return
			}
		case r < 0x20 && r != '\n' && r != '\t', r >= 0x7f && r <= 0x9f:
			t.Errorf("kiln %s printed control character %U: %q", what, r, out)
			return
		}
	}
}
