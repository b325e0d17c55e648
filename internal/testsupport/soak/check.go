package soak

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/kiln-build/kiln/internal/blob"
)

// Violation is one broken promise found by Check.
type Violation struct {
	// Check names the promise, as Checks lists it.
	Check string
	// Detail says what was found.
	Detail string
}

func (v Violation) String() string { return v.Check + ": " + v.Detail }

// Checks are the promises Check verifies, in the order it reports them.
var Checks = []string{
	"every task final",
	"every job final and agreeing with its tasks",
	"one success record per succeeded task",
	"no attempt still building",
	"artifacts only from attempts their builder finished",
	"no River job left for a finished task",
	"every blob matches its sha256",
	"every blob referenced",
	"no build process left running",
	"every committed submission kept",
	"every log line stored",
	checkAfterFailover,
}

// checkAfterFailover names the check of the daemons after a failover
// (checkDaemonsAfterFailover), which only a run with a failover makes.
const checkAfterFailover = "every daemon working after the failover"

// liveRiverStates are the River job states in which a River job may still
// be worked.
const liveRiverStates = `('available', 'running', 'retryable', 'scheduled', 'pending')`

// sampleLimit caps the offending rows listed per query.
const sampleLimit = 10

// Check verifies a farm at rest: what a soak run must leave behind whatever
// was killed on the way. db must be a superuser pool (it reads River's
// tables and re-reads every blob). workRoots are the directories the
// builders built in; a process still running inside one is a leftover
// build. The violations found are returned; an error means the check itself
// could not run.
func Check(ctx context.Context, db *pgxpool.Pool, workRoots []string) ([]Violation, error) {
	var out []Violation
	add := func(check, format string, args ...any) {
		out = append(out, Violation{Check: check, Detail: fmt.Sprintf(format, args...)})
	}
	queries := []struct {
		check, sql string
	}{
		{"every task final", `SELECT format('task %s is %s', id, status) FROM kiln.task
			WHERE finished_at IS NULL ORDER BY id`},
		{"every job final and agreeing with its tasks", `SELECT format('job %s is %s', id, status) FROM kiln.job
			WHERE finished_at IS NULL ORDER BY id`},
		{"every job final and agreeing with its tasks", `SELECT format('job %s is %s but its tasks say %s', id, status, s) FROM (
			SELECT id, status, kiln.job_status_from_tasks(id) AS s FROM kiln.job) j
			WHERE s IS NOT NULL AND s <> status ORDER BY id`},
		{"one success record per succeeded task", `SELECT format('task %s (%s, attempt %s) has %s succeeded attempts: %s',
				t.id, t.status, t.attempt, count(a.attempt), coalesce(string_agg(a.attempt::text, ', ' ORDER BY a.attempt), 'none'))
			FROM kiln.task t LEFT JOIN kiln.attempt a ON a.task_id = t.id AND a.status = 'succeeded'
			GROUP BY t.id
			HAVING (t.status = 'succeeded') <> (count(a.attempt) = 1) OR count(a.attempt) > 1
			    OR (t.status = 'succeeded' AND max(a.attempt) <> t.attempt)
			ORDER BY t.id`},
		{"no attempt still building", `SELECT format('attempt %s of task %s on %s is still building', attempt, task_id, builder)
			FROM kiln.attempt WHERE status = 'building' ORDER BY task_id, attempt`},
		{"artifacts only from attempts their builder finished", `SELECT format('artifact %s (%s) of task %s belongs to attempt %s, which is %s',
				ar.id, ar.file_name, ar.task_id, ar.attempt, a.status)
			FROM kiln.artifact ar JOIN kiln.attempt a ON a.task_id = ar.task_id AND a.attempt = ar.attempt
			WHERE a.status NOT IN ('succeeded', 'failed', 'timed_out') ORDER BY ar.id`},
		{"no River job left for a finished task", `SELECT format('River job %s (%s) is %s but task %s is %s',
				r.id, r.kind, r.state, t.id, coalesce(t.status, 'gone'))
			FROM river.river_job r LEFT JOIN kiln.task t ON t.id = (r.args->>'task_id')::bigint
			WHERE r.kind = 'build' AND r.state IN ` + liveRiverStates + ` AND (t.id IS NULL OR t.finished_at IS NOT NULL)
			ORDER BY r.id`},
		{"no River job left for a finished task", `SELECT format('River job %s (%s) is %s but job %s is %s',
				r.id, r.kind, r.state, j.id, coalesce(j.status, 'gone'))
			FROM river.river_job r LEFT JOIN kiln.job j ON j.id = (r.args->>'job_id')::bigint
			WHERE r.kind = 'validate' AND r.state IN ` + liveRiverStates + ` AND (j.id IS NULL OR j.status <> 'submitted')
			ORDER BY r.id`},
		// A noop build with the lines setting prints "noop line I of N"
		// for I from 1 to N (internal/backend): the stored log of every
		// attempt that got through its build holds each once, in order,
		// whatever the database did meanwhile.
		{"every log line stored", `SELECT format('attempt %s of task %s (%s) stored %s of the %s lines its build printed, %s distinct%s',
				a.task_id, a.attempt, a.status, l.found, a.lines, l.distinct_found, CASE WHEN l.in_order THEN '' ELSE ', out of order' END)
			FROM (SELECT a.task_id, a.attempt, a.status, (p.backend_settings->>'lines')::int AS lines
			      FROM kiln.attempt a JOIN kiln.task t ON t.id = a.task_id JOIN kiln.platform p ON p.name = t.platform
			      WHERE a.status = 'succeeded' AND p.backend = 'noop' AND p.backend_settings ? 'lines') a
			CROSS JOIN LATERAL (
			    SELECT count(*) AS found, count(DISTINCT n) AS distinct_found,
			           coalesce(bool_and(n = ord), true) AS in_order
			    FROM (SELECT m[1]::int AS n, row_number() OVER () AS ord
			          FROM regexp_matches((SELECT coalesce(string_agg(c.data, '' ORDER BY c.seq), '') FROM kiln.log_chunk c
			                               WHERE c.task_id = a.task_id AND c.attempt = a.attempt),
			                              '^noop line (\d+) of \d+$', 'gn') AS m) x) l
			WHERE l.found <> a.lines OR l.distinct_found <> a.lines OR NOT l.in_order
			ORDER BY a.task_id, a.attempt`},
		{"every blob matches its sha256", `SELECT format('artifact %s (%s) says %s bytes, its blob has %s', ar.id, ar.file_name, ar.size, b.size)
			FROM kiln.artifact ar JOIN kiln.blob b ON b.sha256 = ar.blob_sha256
			WHERE ar.size <> b.size ORDER BY ar.id`},
		{"every blob referenced", `SELECT format('blob %s (%s bytes) is referenced by no package, package file, artifact, repository file or environment', encode(b.sha256, 'hex'), b.size)
			FROM kiln.blob b
			WHERE NOT EXISTS (SELECT 1 FROM kiln.package p WHERE p.blob_sha256 = b.sha256)
			  AND NOT EXISTS (SELECT 1 FROM kiln.package_file f WHERE f.blob_sha256 = b.sha256)
			  AND NOT EXISTS (SELECT 1 FROM kiln.artifact a WHERE a.blob_sha256 = b.sha256)
			  AND NOT EXISTS (SELECT 1 FROM kiln.repository_file r WHERE r.blob_sha256 = b.sha256)
			  AND NOT EXISTS (SELECT 1 FROM kiln.environment e WHERE e.blob_sha256 = b.sha256)
			ORDER BY b.sha256`},
	}
	for _, q := range queries {
		found, total, err := sample(ctx, db, q.sql)
		if err != nil {
			return nil, fmt.Errorf("checking %q: %w", q.check, err)
		}
		for _, f := range found {
			add(q.check, "%s", f)
		}
		if total > len(found) {
			add(q.check, "... and %d more", total-len(found))
		}
	}

	sums, err := blobSums(ctx, db)
	if err != nil {
		return nil, err
	}
	bad := 0
	for _, s := range sums {
		if err := blob.Verify(ctx, db, s); err != nil {
			if bad < sampleLimit {
				add("every blob matches its sha256", "blob %s: %v", s, err)
			}
			bad++
		}
	}
	if bad > sampleLimit {
		add("every blob matches its sha256", "... and %d more", bad-sampleLimit)
	}

	for _, p := range processesIn(workRoots) {
		add("no build process left running", "%s", p)
	}
	return out, nil
}

// sample runs a query returning one text column and returns up to
// sampleLimit rows and how many there were.
func sample(ctx context.Context, db *pgxpool.Pool, sql string) ([]string, int, error) {
	rows, err := db.Query(ctx, sql)
	if err != nil {
		return nil, 0, err
	}
	all, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, 0, err
	}
	if len(all) > sampleLimit {
		return all[:sampleLimit], len(all), nil
	}
	return all, len(all), nil
}

// blobSums lists every blob.
func blobSums(ctx context.Context, db *pgxpool.Pool) ([]blob.Sum, error) {
	rows, err := db.Query(ctx, "SELECT sha256 FROM kiln.blob ORDER BY sha256")
	if err != nil {
		return nil, fmt.Errorf("listing blobs: %w", err)
	}
	raw, err := pgx.CollectRows(rows, pgx.RowTo[[]byte])
	if err != nil {
		return nil, fmt.Errorf("listing blobs: %w", err)
	}
	sums := make([]blob.Sum, len(raw))
	for i, r := range raw {
		copy(sums[i][:], r)
	}
	return sums, nil
}

// processesIn describes the processes whose working directory lies in one
// of roots, or whose command line names one: builds (and builders) still
// running.
func processesIn(roots []string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		cwd, _ := os.Readlink(filepath.Join(p, "cwd"))
		raw, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		cmdline := strings.TrimSpace(strings.ReplaceAll(string(raw), "\x00", " "))
		for _, root := range roots {
			if within(cwd, root) || strings.Contains(cmdline, root) {
				out = append(out, fmt.Sprintf("process %s (%s) in %s", filepath.Base(p), cmdline, cwd))
				break
			}
		}
	}
	return out
}

// within reports whether path is root or lies below it.
func within(path, root string) bool {
	return path == root || strings.HasPrefix(path, root+string(filepath.Separator))
}
