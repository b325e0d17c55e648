package cli

import (
	"fmt"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/kiln-build/kiln/internal/format"
	"github.com/kiln-build/kiln/internal/report"
)

// Monitoring plugin exit codes (Nagios, Icinga, Sensu, ...).
const (
	checkOK       = 0
	checkWarning  = 1
	checkCritical = 2
	checkUnknown  = 3
)

var checkStates = []string{"OK", "WARNING", "CRITICAL", "UNKNOWN"}

func checkCommand() *cli.Command {
	return &cli.Command{
		Name:  "check",
		Usage: "monitoring probe (Nagios/Icinga plugin): queue wait, offline builders, janitor rounds",
		Description: "Prints one status line with performance data and exits 0 (OK), 1 (WARNING), 2 (CRITICAL) " +
			"or 3 (UNKNOWN, when the database cannot be reached or read, or the command line is wrong). " +
			"A threshold of 0 switches that check off.",
		Flags: []cli.Flag{
			&cli.DurationFlag{Name: "warn-queue", Usage: "WARNING when a task (or a job waiting for validation) has waited this long", Value: time.Hour},
			&cli.DurationFlag{Name: "crit-queue", Usage: "CRITICAL when a task (or a job waiting for validation) has waited this long", Value: 6 * time.Hour},
			&cli.IntFlag{Name: "warn-offline", Usage: "WARNING when this many enabled builders are offline", Value: 1},
			&cli.IntFlag{Name: "crit-offline", Usage: "CRITICAL when this many enabled builders are offline", Value: 3},
			&cli.DurationFlag{Name: "warn-janitor", Usage: "WARNING when the janitor's last round is this old", Value: 10 * time.Minute},
			&cli.DurationFlag{Name: "crit-janitor", Usage: "CRITICAL when the janitor's last round is this old (or it never ran)", Value: 30 * time.Minute},
			jsonFlag,
		},
		Action: runCheck,
		OnUsageError: func(c *cli.Context, err error, _ bool) error {
			return checkUsage(c, err.Error())
		},
	}
}

// checkUsage refuses a bad kiln check command line. In the plugin
// convention that is UNKNOWN (3): exit 2, kiln's usual usage error, would
// read as CRITICAL. The status line goes to stdout, where the monitoring
// system reads it.
func checkUsage(c *cli.Context, msg string) error {
	fmt.Fprintf(stdout(c), "KILN UNKNOWN - usage: %s (see kiln help check)\n", strings.ReplaceAll(msg, "\n", " "))
	return cli.Exit("", checkUnknown)
}

// checkResult is kiln check --json.
type checkResult struct {
	*report.Health
	State   string `json:"state"`
	Summary string `json:"summary"`
}

// thresholds are kiln check's limits; zero switches a check off.
type thresholds struct {
	warnQueue, critQueue     time.Duration
	warnOffline, critOffline int
	warnJanitor, critJanitor time.Duration
}

func runCheck(c *cli.Context) error {
	if c.NArg() > 0 {
		return checkUsage(c, fmt.Sprintf("kiln check takes no arguments, got %q", c.Args().First()))
	}
	th := thresholds{
		warnQueue: c.Duration("warn-queue"), critQueue: c.Duration("crit-queue"),
		warnOffline: c.Int("warn-offline"), critOffline: c.Int("crit-offline"),
		warnJanitor: c.Duration("warn-janitor"), critJanitor: c.Duration("crit-janitor"),
	}
	w := stdout(c)
	fail := func(err error) error {
		line := "KILN UNKNOWN - " + strings.ReplaceAll(err.Error(), "\n", " ")
		if c.Bool("json") {
			_ = printJSON(w, checkResult{Health: &report.Health{}, State: "UNKNOWN", Summary: line})
		} else {
			fmt.Fprintln(w, line)
		}
		return cli.Exit("", checkUnknown)
	}
	db, err := connect(c)
	if err != nil {
		return fail(err)
	}
	defer db.Close()
	h, err := report.GetHealth(c.Context, db)
	if err != nil {
		return fail(err)
	}
	state, line := evaluate(h, th)
	if c.Bool("json") {
		if err := printJSON(w, checkResult{Health: h, State: checkStates[state], Summary: line}); err != nil {
			return err
		}
	} else {
		fmt.Fprintln(w, line)
	}
	if state != checkOK {
		return cli.Exit("", state)
	}
	return nil
}

// evaluate turns the health facts into a plugin state and its status line.
func evaluate(h *report.Health, th thresholds) (int, string) {
	state := checkOK
	raise := func(s int) {
		if s > state {
			state = s
		}
	}
	level := func(v, warn, crit float64) int {
		switch {
		case crit > 0 && v >= crit:
			return checkCritical
		case warn > 0 && v >= warn:
			return checkWarning
		}
		return checkOK
	}
	var parts []string

	queued, where := 0.0, ""
	if h.OldestPendingSeconds != nil {
		queued, where = *h.OldestPendingSeconds, " ("+*h.OldestPendingOn+")"
	}
	if h.OldestValidatingSeconds != nil && *h.OldestValidatingSeconds > queued {
		queued, where = *h.OldestValidatingSeconds, " (waiting for validation)"
	}
	raise(level(queued, th.warnQueue.Seconds(), th.critQueue.Seconds()))
	if h.Pending+h.Validating == 0 {
		parts = append(parts, "nothing queued")
	} else {
		parts = append(parts, fmt.Sprintf("oldest queued task waited %s%s", format.Duration(queued), where))
	}

	if len(h.Stuck) > 0 {
		// Their tasks wait for ever, however short the wait is so far.
		raise(checkCritical)
		parts = append(parts, "no usable builder (online, enabled, not draining) for "+strings.Join(h.Stuck, ", "))
	}

	raise(level(float64(h.BuildersOffline), float64(th.warnOffline), float64(th.critOffline)))
	parts = append(parts, fmt.Sprintf("%d of %d builders offline", h.BuildersOffline, h.BuildersTotal))

	janitor := -1.0
	if h.JanitorAgeSeconds != nil {
		janitor = *h.JanitorAgeSeconds
		raise(level(janitor, th.warnJanitor.Seconds(), th.critJanitor.Seconds()))
		parts = append(parts, fmt.Sprintf("janitor ran %s ago", format.Duration(janitor)))
	} else {
		if th.critJanitor > 0 {
			raise(checkCritical)
		} else if th.warnJanitor > 0 {
			raise(checkWarning)
		}
		parts = append(parts, "janitor never ran")
	}

	perf := []string{
		fmt.Sprintf("oldest_queued=%.0fs;%s;%s;0", queued, limit(th.warnQueue.Seconds()), limit(th.critQueue.Seconds())),
		fmt.Sprintf("pending=%d;;;0", h.Pending),
		fmt.Sprintf("validating=%d;;;0", h.Validating),
		fmt.Sprintf("builders_offline=%d;%s;%s;0;%d", h.BuildersOffline, limit(float64(th.warnOffline)), limit(float64(th.critOffline)), h.BuildersTotal),
		fmt.Sprintf("builders_online=%d;;;0;%d", h.BuildersOnline, h.BuildersTotal),
		fmt.Sprintf("stuck_platforms=%d;;1;0", len(h.Stuck)),
	}
	if janitor >= 0 {
		perf = append(perf, fmt.Sprintf("janitor_age=%.0fs;%s;%s;0", janitor, limit(th.warnJanitor.Seconds()), limit(th.critJanitor.Seconds())))
	}
	return state, fmt.Sprintf("KILN %s - %s | %s", checkStates[state], strings.Join(parts, "; "), strings.Join(perf, " "))
}

// limit formats a threshold for perfdata; a switched-off one is left empty.
func limit(v float64) string {
	if v <= 0 {
		return ""
	}
	return fmt.Sprintf("%.0f", v)
}
