// Package termtext makes text that builds and other people wrote safe to
// show: build logs, failure reasons, notes, package names. A build's output
// may hold escape sequences that a terminal would act on (set the window
// title, write the clipboard with OSC 52, move the cursor to overwrite what
// kiln printed) and bytes that are not UTF-8. Terminal and Plain show every
// such character escaped, as text, so that it is seen and never
// interpreted; kiln's CLI writes everything it prints through Writer, and
// kiln-web passes build output through Plain.
package termtext

import (
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// maxSGR is the longest colour sequence kept (ESC [ params m); longer ones
// are escaped like any other sequence.
const maxSGR = 32

// Terminal returns s with every control character escaped except newline,
// tab and plain SGR colour sequences (ESC [ digits, ';' and ':' m), which
// only change colours: C0 controls and DEL as \xHH (carriage return as \r),
// C1 controls (U+0080 to U+009F) as \uHHHH, bytes that are not UTF-8 as
// \xHH. An escape sequence other than SGR has its ESC escaped, so the rest
// of it shows as ordinary text.
func Terminal(s string) string { return escape(s, true) }

// Plain is Terminal without the colour sequences: every ESC is escaped.
// For output that is not a terminal (kiln-web's pages).
func Plain(s string) string { return escape(s, false) }

func escape(s string, keepSGR bool) string {
	if clean(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s) + 16)
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == '\n' || c == '\t' || (c >= 0x20 && c < 0x7f):
			b.WriteByte(c)
			i++
		case c == 0x1b && keepSGR:
			if n := sgrLen(s[i:]); n > 0 {
				b.WriteString(s[i : i+n])
				i += n
				continue
			}
			b.WriteString(`\x1b`)
			i++
		case c == '\r':
			b.WriteString(`\r`)
			i++
		case c < 0x80:
			fmt.Fprintf(&b, `\x%02x`, c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(s[i:])
			switch {
			case r == utf8.RuneError && size <= 1:
				fmt.Fprintf(&b, `\x%02x`, c)
			case r >= 0x80 && r <= 0x9f:
				fmt.Fprintf(&b, `\u%04x`, r)
			default:
				b.WriteString(s[i : i+size])
			}
			i += size
		}
	}
	return b.String()
}

// clean reports whether s needs no escaping at all (the usual case, kept
// cheap): printable ASCII, newlines, tabs and UTF-8 without C1 controls.
func clean(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x80 {
			return cleanUTF8(s[i:])
		}
		if (c < 0x20 && c != '\n' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

func cleanUTF8(s string) bool {
	for _, r := range s {
		if r == utf8.RuneError || (r < 0x20 && r != '\n' && r != '\t') || (r >= 0x7f && r <= 0x9f) {
			return false
		}
	}
	return true
}

// sgrLen is the length of the SGR sequence s starts with, 0 if it does not
// start with one.
func sgrLen(s string) int {
	if len(s) < 3 || s[0] != 0x1b || s[1] != '[' {
		return 0
	}
	for i := 2; i < len(s) && i < maxSGR; i++ {
		switch c := s[i]; {
		case c == 'm':
			return i + 1
		case (c >= '0' && c <= '9') || c == ';' || c == ':':
		default:
			return 0
		}
	}
	return 0
}

// Writer writes through to w what is written to it, escaped by Terminal.
// Every Write is escaped on its own: a sequence split across two writes is
// escaped (shown), never passed on. Unwrap returns w.
type Writer struct{ w io.Writer }

// NewWriter returns a Writer escaping what it writes to w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Write writes p escaped and reports len(p) written when all of it was.
func (e *Writer) Write(p []byte) (int, error) {
	if _, err := io.WriteString(e.w, Terminal(string(p))); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Unwrap returns the writer written to, so that callers can ask whether
// it is a terminal.
func (e *Writer) Unwrap() io.Writer { return e.w }
