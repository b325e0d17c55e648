package report_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/kiln-build/kiln/internal/testsupport/farmtest"
	"github.com/kiln-build/kiln/internal/testsupport/pgtest"
)

// docQueries reads the named SQL blocks of docs/reporting.md (those whose
// first line is "-- name: X").
func docQueries(t *testing.T) map[string]string {
	t.Helper()
	doc, err := os.ReadFile("../../docs/reporting.md")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, m := range regexp.MustCompile("(?s)```sql\n-- name: (\\w+)\n(.*?)```").FindAllStringSubmatch(string(doc), -1) {
		out[m[1]] = m[2]
	}
	return out
}

// backdate moves the seeded farm's builds into last week and the week
// before (W and W2 are their Mondays), with known waits and durations, as
// if it had been running for a while. b1 is still building one task since an
// hour ago.
func backdate(t *testing.T, f *farmtest.Farm) {
	t.Helper()
	T := f.Tasks
	type build struct {
		task          int64
		attempt       int
		week          string // W or W2
		day           int
		wait, minutes int
		created       bool // also sets the task's created_at and started_at
	}
	builds := []build{
		{T["succeeded/el9-x86_64"], 1, "W", 1, 5, 3, false},
		{T["succeeded/el9-x86_64"], 2, "W", 1, 45, 30, true},
		{T["succeeded/bookworm-amd64"], 1, "W", 1, 5, 10, true},
		{T["failed/el9-x86_64"], 1, "W", 2, 10, 5, true},
		{T["partially_failed/el9-x86_64"], 1, "W2", 1, 20, 20, true},
		{T["partially_failed/bookworm-amd64"], 1, "W2", 1, 15, 120, true},
		{T["cancelled/el9-x86_64"], 1, "W", 3, 30, 15, true},
	}
	ctx := context.Background()
	weeks := `date_trunc('week', now()) - CASE $1 WHEN 'W' THEN interval '1 week' ELSE interval '2 weeks' END + make_interval(days => $2)`
	for _, b := range builds {
		start := weeks + ` + make_interval(mins => $3)`
		if _, err := f.DB.Pool.Exec(ctx, `UPDATE kiln.attempt SET started_at = `+start+`, finished_at = `+start+` + make_interval(mins => $4)
			WHERE task_id = $5 AND attempt = $6`, b.week, b.day, b.wait, b.minutes, b.task, b.attempt); err != nil {
			t.Fatal(err)
		}
		if !b.created {
			continue
		}
		if _, err := f.DB.Pool.Exec(ctx, `UPDATE kiln.task SET created_at = `+weeks+`, started_at = `+start+`,
			finished_at = `+start+` + make_interval(mins => $4) WHERE id = $5`, b.week, b.day, b.wait, b.minutes, b.task); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.DB.Pool.Exec(ctx, `UPDATE kiln.task SET created_at = now() - interval '2 hours', started_at = now() - interval '1 hour' WHERE id = $1;
		`, T["building/el9-x86_64"]); err != nil {
		t.Fatal(err)
	}
	if _, err := f.DB.Pool.Exec(ctx, `UPDATE kiln.attempt SET started_at = now() - interval '1 hour' WHERE task_id = $1`, T["building/el9-x86_64"]); err != nil {
		t.Fatal(err)
	}
	if _, err := f.DB.Pool.Exec(ctx, `UPDATE kiln.task SET finished_at = date_trunc('week', now()) - interval '5 days' WHERE id = $1`, T["failed/bookworm-amd64"]); err != nil {
		t.Fatal(err)
	}
}

// psql runs sql with psql as a person pastes it and returns the rows, one
// line each, columns separated by |.
func psql(t *testing.T, url, sql string) []string {
	t.Helper()
	cmd := exec.Command("psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", url)
	cmd.Stdin = strings.NewReader(sql)
	cmd.Env = append(os.Environ(), "PGTZ=UTC")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s\n%s", err, out, sql)
	}
	s := strings.TrimSpace(string(out))
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

func TestReportingQueries(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("psql"); err != nil {
		t.Fatal("psql is not installed (make setup installs postgresql)")
	}
	db := pgtest.New(t)
	f := farmtest.Seed(t, db)
	backdate(t, f)
	reporter := farmtest.Person(t, db, "reporter", "kiln_reader")
	url := db.URLAs(reporter)

	var w, w2 string
	if err := db.Pool.QueryRow(context.Background(), `SELECT (date_trunc('week', now()) - interval '1 week')::date::text,
		(date_trunc('week', now()) - interval '2 weeks')::date::text`).Scan(&w, &w2); err != nil {
		t.Fatal(err)
	}
	J := f.Jobs
	want := map[string][]string{
		"success_rate": {
			"bookworm-amd64|" + w2 + "|1|0|1|0.0",
			"bookworm-amd64|" + w + "|1|1|0|100.0",
			"el9-x86_64|" + w2 + "|1|1|0|100.0",
			"el9-x86_64|" + w + "|2|1|1|50.0",
		},
		"slowest_packages": {
			"hello lib|el9-x86_64|1|00:30:00|00:30:00",
			"hello|el9-x86_64|1|00:20:00|00:20:00",
			"hello lib|bookworm-amd64|1|00:10:00|00:10:00",
		},
		"builder_utilisation": {
			"b1|2|7|04:20:00|0.32",
			"b2|1|1|00:03:00|0.01",
		},
		"queue_wait": {
			"bookworm-amd64|2|00:10:00|00:14:30|00:15:00",
			"el9-x86_64|5|00:30:00|00:57:00|01:00:00",
		},
		// The seeded queue: bookworm and el9 have a free slot of b1, el8
		// no builder at all.
		"waiting_estimates": {
			"bookworm-amd64|pending|1|0|package|t|",
			"el8-aarch64|pending|1|0||f|",
			"el9-x86_64|building|||package|t|",
			"el9-x86_64|pending|1|0|package|t|",
		},
		"recent_jobs": {
			fmt.Sprintf(`%d|failed|devel|tools|{"el9-x86_64": "failed", "bookworm-amd64": "skipped"}|`, J["failed"]),
			fmt.Sprintf(`%d|queued|devel|tools|{"el9-x86_64": "pending", "el8-aarch64": "pending"}|`, J["queued"]),
		},
		"job_history": {
			"|" + f.Bob + "|job.status|||||submitted|",
			"|task.status|",
			"|job.status||||submitted|queued|",
			"|task.status|",
			"|task.status|",
			"|job.status||||queued|building|",
			"|attempt.status|",
			"|attempt.status|",
			"|task.status|",
			"|job.status||||building|failed|",
		},
	}
	queries := docQueries(t)
	if len(queries) != len(want) {
		t.Errorf("docs/reporting.md has %d named queries, the test knows %d", len(queries), len(want))
	}
	set := map[string]string{"who": f.Bob, "job": fmt.Sprint(J["failed"])}
	for name, sql := range queries {
		for v, val := range set {
			sql = regexp.MustCompile(`(?m)^\\set `+v+` .*$`).ReplaceAllString(sql, `\set `+v+` `+val)
		}
		rows := psql(t, url, sql)
		exp, ok := want[name]
		if !ok {
			t.Errorf("query %s: no expected rows in the test", name)
			continue
		}
		if len(rows) != len(exp) {
			t.Errorf("query %s: %d rows, want %d:\n%s", name, len(rows), len(exp), strings.Join(rows, "\n"))
			continue
		}
		for i := range rows {
			if !strings.Contains(rows[i], exp[i]) {
				t.Errorf("query %s, row %d: %q lacks %q", name, i, rows[i], exp[i])
			}
		}
	}
}
