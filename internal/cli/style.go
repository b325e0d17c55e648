package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/kiln-build/kiln/internal/format"
	"github.com/kiln-build/kiln/internal/task"
	"github.com/urfave/cli/v2"
)

// useColor decides whether to colour output written to w: never when
// NO_COLOR is set to anything but "" (https://no-color.org), not even with
// --color always; otherwise as --color says, and for auto only on a
// terminal whose TERM is not dumb.
func useColor(c *cli.Context, w io.Writer) bool {
	if os.Getenv("NO_COLOR") != "" {
		return false
	}
	switch settingsOf(c).get("color") {
	case "always":
		return true
	case "never":
		return false
	}
	if os.Getenv("TERM") == "dumb" {
		return false
	}
	return isTerminal(w)
}

// painter colours statuses, or not.
type painter bool

// ANSI colours of the statuses. Every code has the same length, so columns
// of coloured cells stay aligned in a tabwriter.
var statusColor = map[string]string{
	"succeeded": "32", "failed": "31", "partially_failed": "31", "timed_out": "31", "lost": "31", "invalid": "31",
	"pending": "33", "queued": "33", "submitted": "33", "building": "34", "cancelled": "90", "skipped": "90", "returned": "90",
	"OK": "32", "WARNING": "33", "CRITICAL": "31", "UNKNOWN": "35",
}

// status returns s (or its short form) coloured by the status s.
func (p painter) status(s, shown string) string {
	if !p {
		return shown
	}
	code, ok := statusColor[s]
	if !ok {
		code = "39"
	}
	return "\x1b[" + code + "m" + shown + "\x1b[0m"
}

// paintStatus returns the status s coloured by itself.
func paintStatus[S ~string](p painter, s S) string { return p.status(string(s), string(s)) }

// shortStatus is a task status as the jobs listing shows it at a glance.
var shortStatus = map[task.Status]string{
	"pending": "wait", "building": "build", "succeeded": "ok", "failed": "FAIL", "timed_out": "TIMEOUT",
	"cancelled": "cancel", "skipped": "skip", "lost": "LOST",
}

// ageOf formats optional seconds, "-" when absent.
func ageOf(seconds *float64) string {
	if seconds == nil {
		return "-"
	}
	return format.Duration(*seconds)
}

// taskRef is how kiln shows a task id: t17.
func taskRef(id int64) string { return fmt.Sprintf("t%d", id) }

// orDash returns *s, or "-" when it is nil or empty.
func orDash(s *string) string {
	if s == nil || *s == "" {
		return "-"
	}
	return *s
}

// clip shortens s to n runes with an ellipsis.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

// when formats a time for listings, in local time.
func when(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return format.Time(t.Local())
}

// joinTasks formats the per-platform status of a job at a glance.
func joinTasks(p painter, platforms []string, statuses []task.Status) string {
	parts := make([]string, len(platforms))
	for i := range platforms {
		short := shortStatus[statuses[i]]
		if short == "" {
			short = string(statuses[i])
		}
		parts[i] = platforms[i] + ":" + p.status(string(statuses[i]), short)
	}
	return strings.Join(parts, " ")
}
