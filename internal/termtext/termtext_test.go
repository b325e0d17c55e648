package termtext_test

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/kiln-build/kiln/internal/termtext"
)

// The output of a hostile build: what each sequence would do in a terminal,
// and what kiln must show instead.
var cases = []struct{ name, in, terminal, plain string }{
	{"plain text", "gcc -O2 -c a.c\n\tok\n", "gcc -O2 -c a.c\n\tok\n", "gcc -O2 -c a.c\n\tok\n"},
	{"UTF-8", "größe ✓ 構築\n", "größe ✓ 構築\n", "größe ✓ 構築\n"},
	{"OSC 0 window title", "\x1b]0;you have been pwned\x07", `\x1b]0;you have been pwned\x07`, `\x1b]0;you have been pwned\x07`},
	{"OSC 52 clipboard", "\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x1b\\", `\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x1b\`, `\x1b]52;c;Y3VybCBldmlsIHwgc2g=\x1b\`},
	{"CSI clear screen and home", "\x1b[2J\x1b[H", `\x1b[2J\x1b[H`, `\x1b[2J\x1b[H`},
	{"CSI cursor up and erase line", "build FAILED\x1b[1A\x1b[2Kbuild ok", `build FAILED\x1b[1A\x1b[2Kbuild ok`, `build FAILED\x1b[1A\x1b[2Kbuild ok`},
	{"carriage return overwrite", "FAILED\rok    \n", `FAILED\rok    ` + "\n", `FAILED\rok    ` + "\n"},
	{"bare ESC", "a\x1bb\x1b", `a\x1bb\x1b`, `a\x1bb\x1b`},
	{"C1 CSI byte 0x9b", "\x9b2J", `\x9b2J`, `\x9b2J`},
	{"C1 CSI as UTF-8 (U+009B)", "\u009b2J\u009d0;t\u009c", `\u009b2J\u009d0;t\u009c`, `\u009b2J\u009d0;t\u009c`},
	{"invalid UTF-8", "a\xff\xfeb\xc3", `a\xff\xfeb\xc3`, `a\xff\xfeb\xc3`},
	{"NUL, BEL, backspace, DEL", "\x00\x07\x08\x7f", `\x00\x07\x08\x7f`, `\x00\x07\x08\x7f`},
	{"SGR colours kept", "\x1b[31merror\x1b[0m \x1b[1;38;5;196mbold\x1b[m \x1b[38:2::255:0:0mrgb\x1b[0m",
		"\x1b[31merror\x1b[0m \x1b[1;38;5;196mbold\x1b[m \x1b[38:2::255:0:0mrgb\x1b[0m",
		`\x1b[31merror\x1b[0m \x1b[1;38;5;196mbold\x1b[m \x1b[38:2::255:0:0mrgb\x1b[0m`},
	{"SGR-looking with other final byte", "\x1b[31;1H", `\x1b[31;1H`, `\x1b[31;1H`},
	{"private-mode CSI", "\x1b[?1049h", `\x1b[?1049h`, `\x1b[?1049h`},
	{"overlong SGR", "\x1b[" + strings.Repeat("1;", 20) + "m", `\x1b[` + strings.Repeat("1;", 20) + "m", `\x1b[` + strings.Repeat("1;", 20) + "m"},
}

func TestTerminalAndPlain(t *testing.T) {
	for _, c := range cases {
		if got := termtext.Terminal(c.in); got != c.terminal {
			t.Errorf("%s: Terminal(%q) = %q, want %q", c.name, c.in, got, c.terminal)
		}
		if got := termtext.Plain(c.in); got != c.plain {
			t.Errorf("%s: Plain(%q) = %q, want %q", c.name, c.in, got, c.plain)
		}
		checkSafe(t, termtext.Terminal(c.in), true)
		checkSafe(t, termtext.Plain(c.in), false)
	}
}

func TestWriter(t *testing.T) {
	var out bytes.Buffer
	w := termtext.NewWriter(&out)
	// A sequence split across two writes is shown, not joined up.
	for _, p := range []string{"line\n", "\x1b", "]0;title\x07", "\x1b[32mok\x1b[0m\n"} {
		if n, err := w.Write([]byte(p)); err != nil || n != len(p) {
			t.Fatalf("Write(%q) = %d, %v", p, n, err)
		}
	}
	if want := "line\n" + `\x1b]0;title\x07` + "\x1b[32mok\x1b[0m\n"; out.String() != want {
		t.Errorf("wrote %q, want %q", out.String(), want)
	}
	if w.Unwrap() != &out {
		t.Errorf("Unwrap does not return the underlying writer")
	}
}

// checkSafe fails unless s is valid UTF-8 without C0 controls other than
// newline and tab, without DEL and C1 controls, and (when sgr) with ESC
// only at the start of an SGR sequence, never otherwise.
func checkSafe(t *testing.T, s string, sgr bool) {
	t.Helper()
	if !utf8.ValidString(s) {
		t.Fatalf("output %q is not UTF-8", s)
	}
	for i, r := range s {
		switch {
		case r == 0x1b:
			rest := s[i:]
			end := strings.IndexByte(rest, 'm')
			if !sgr || !strings.HasPrefix(rest, "\x1b[") || end < 0 || strings.Trim(rest[2:end], "0123456789;:") != "" {
				t.Fatalf("output %q has an ESC that is not a plain SGR sequence at %d", s, i)
			}
		case r < 0x20 && r != '\n' && r != '\t', r >= 0x7f && r <= 0x9f:
			t.Fatalf("output %q has control character %U at %d", s, r, i)
		}
	}
}

func FuzzTerminal(f *testing.F) {
	for _, c := range cases {
		f.Add(c.in)
	}
	f.Fuzz(func(t *testing.T, s string) {
		checkSafe(t, termtext.Terminal(s), true)
		checkSafe(t, termtext.Plain(s), false)
		if termtext.Terminal(termtext.Terminal(s)) != termtext.Terminal(s) {
			t.Fatalf("escaping %q twice changes it again", s)
		}
	})
}
