package main

import "fmt"

// etaSuite measures how honest kiln.task_eta's estimates are
// (internal/report's BenchmarkETAHonesty, docs/queueing.md "Estimates").
func etaSuite() suite {
	errs := func(what string) func(m metrics) string {
		return func(m metrics) string {
			percent := func(unit string) string {
				if v, ok := m[unit]; ok {
					return fmt.Sprintf("%.0f%%", 100*v)
				}
				return "?"
			}
			return fmt.Sprintf("median %s min (%s), p90 %s min (%s)",
				m.f(what+"-p50-min", "%.1f"), percent(what+"-p50-rel"), m.f(what+"-p90-min", "%.1f"), percent(what+"-p90-rel"))
		}
	}
	how := "a simulated day (24 h, one minute = 100 ms) of mixed builds: 40 packages of typical build times " +
		"from 1 to 60 min (lognormal, median 8), every build that times a noise (sigma 0.25), jobs arriving at random (22 an hour) and a " +
		"40-job mass rebuild at 09:00, on 2 platforms and 3 builders (11 slots) working through real builder River clients and the task " +
		"protocol, seeded; |estimate - actual| in simulated minutes, and relative to the wait (starts) or the build time (ends)"
	return suite{
		title: "estimates", pkg: "./internal/report/", pattern: "^BenchmarkETAHonesty$", benchtime: "1x",
		rows: []row{
			{bench: "BenchmarkETAHonesty", what: "estimated start vs actual (read at submit)", figure: errs("start"), how: how},
			{bench: "BenchmarkETAHonesty", what: "  of the tasks that waited a minute or more", figure: func(m metrics) string {
				return m.f("waited", "%.0f") + " tasks: " + errs("waited-start")(m)
			}, how: "as above, the starts of the tasks that did not find a free slot"},
			{bench: "BenchmarkETAHonesty", what: "estimated end vs actual (read at start)", figure: errs("end"), how: "as above"},
		},
	}
}

// dispatchSuite measures dispatch with a long queue (internal/split's
// BenchmarkDispatchQueued, docs/queueing.md).
func dispatchSuite() suite {
	return suite{
		title: "dispatch at 50,000 queued", pkg: "./internal/split/", pattern: "^BenchmarkDispatchQueued$", benchtime: "1x",
		rows: []row{{bench: "BenchmarkDispatchQueued", what: "dispatch with 0 vs 50,000 queued tasks (fair share on)",
			figure: func(m metrics) string {
				return fmt.Sprintf("hand-off p50 %s vs %s ms (ratio %s); enqueue p50 %s vs %s ms (ratio %s); kiln.task_eta read %s ms",
					m.f("handoff-empty-p50-ms", "%.1f"), m.f("handoff-queued-p50-ms", "%.1f"), m.f("handoff-ratio", "%.2f"),
					m.f("enqueue-empty-p50-ms", "%.1f"), m.f("enqueue-queued-p50-ms", "%.1f"), m.f("enqueue-ratio", "%.2f"),
					m.f("eta-read-ms", "%.0f"))
			},
			how: "one builder River client of one slot; a new task of Bob's (the splitter's transaction, with the fair-share trigger) " +
				"and, when the slot frees, River handing the builder its next task, 40 rounds with nothing else queued, then 40 " +
				"with 50,000 of Alice's tasks waiting on the same platform (seeded in SQL with their fair turns), same database and run; " +
				"Bob's tasks must still start within two freed slots; then one read of every task's estimate"}},
	}
}
