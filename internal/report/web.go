package report

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/kiln-build/kiln/internal/task"
)

// This file holds the queries only the web interface uses so far: a
// builder's recent attempts, one artifact, and the figures behind /metrics.

// BuilderAttempt is one attempt a builder made, as its page lists them.
type BuilderAttempt struct {
	TaskID          int64       `json:"task_id"`
	JobID           int64       `json:"job_id"`
	Platform        string      `json:"platform"`
	Attempt         int         `json:"attempt"`
	Status          task.Status `json:"status"`
	StartedAt       time.Time   `json:"started_at"`
	FinishedAt      *time.Time  `json:"finished_at"`
	DurationSeconds float64     `json:"duration_seconds"`
	Reason          *string     `json:"reason"`
}

// BuilderAttempts returns the most recent attempts of a builder, newest
// first, at most limit (DefaultLimit when 0). It reads attempt_builder_idx.
func BuilderAttempts(ctx context.Context, db DB, builder string, limit int) ([]BuilderAttempt, error) {
	if limit <= 0 {
		limit = DefaultLimit
	}
	rows, err := db.Query(ctx, `SELECT a.task_id, t.job_id, t.platform, a.attempt, a.status, a.started_at, a.finished_at,
		extract(epoch FROM coalesce(a.finished_at, now()) - a.started_at)::float8, a.reason
		FROM kiln.attempt a JOIN kiln.task t ON t.id = a.task_id
		WHERE a.builder = $1 ORDER BY a.started_at DESC LIMIT $2`, builder, min(limit, MaxLimit))
	if err != nil {
		return nil, wrap(err, fmt.Sprintf("reading attempts of builder %s", builder))
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[BuilderAttempt])
	if err != nil {
		return nil, wrap(err, fmt.Sprintf("reading attempts of builder %s", builder))
	}
	if out == nil {
		out = []BuilderAttempt{}
	}
	return out, nil
}

// GetArtifact returns one artifact. A missing one wraps ErrNotFound.
func GetArtifact(ctx context.Context, db DB, id int64) (*Artifact, error) {
	arts, err := artifacts(ctx, db, "a.id = $1", id)
	if err != nil {
		return nil, err
	}
	if len(arts) == 0 {
		return nil, notFound("artifact", id)
	}
	return &arts[0], nil
}

// Counts are the farm's unfinished jobs and tasks by status, the jobs that
// finished within a window by final status, and the builders by state.
type Counts struct {
	Jobs         map[string]int `json:"jobs"`
	JobsFinished map[string]int `json:"jobs_finished"`
	Tasks        map[string]int `json:"tasks"`
	Builders     map[string]int `json:"builders"`
}

// GetCounts counts what /metrics reports, reading only what is unfinished or
// recent, so its cost does not grow with the history: unfinished jobs
// (job_status_idx), jobs finished within the window (job_finished_idx, from
// migration 0008), pending and building tasks (task_unfinished_platform_idx)
// and builders. Every status is present, zero when no row has it.
func GetCounts(ctx context.Context, db DB, window time.Duration) (*Counts, error) {
	c := &Counts{Jobs: map[string]int{}, JobsFinished: map[string]int{}, Tasks: map[string]int{"pending": 0, "building": 0},
		Builders: map[string]int{"online": 0, "offline": 0}}
	for _, s := range task.JobStatuses() {
		if s.Final() {
			c.JobsFinished[string(s)] = 0
		} else {
			c.Jobs[string(s)] = 0
		}
	}
	for _, q := range []struct {
		sql  string
		args []any
		m    map[string]int
	}{
		{"SELECT status, count(*) FROM kiln.job WHERE status IN ('submitted', 'queued', 'building') GROUP BY status", nil, c.Jobs},
		{"SELECT status, count(*) FROM kiln.job WHERE finished_at > now() - $1::interval GROUP BY status", []any{window}, c.JobsFinished},
		{"SELECT status, count(*) FROM kiln.task WHERE status IN ('pending', 'building') GROUP BY status", nil, c.Tasks},
		{"SELECT state, count(*) FROM kiln.builder GROUP BY state", nil, c.Builders},
	} {
		rows, err := db.Query(ctx, q.sql, q.args...)
		if err != nil {
			return nil, wrap(err, "counting jobs, tasks and builders")
		}
		var k string
		var n int
		if _, err := pgx.ForEachRow(rows, []any{&k, &n}, func() error { q.m[k] = n; return nil }); err != nil {
			return nil, wrap(err, "counting jobs, tasks and builders")
		}
	}
	return c, nil
}

// RecentBuild sums up the attempts of one platform that ended with one
// outcome within a window (view kiln.build_duration).
type RecentBuild struct {
	Platform string `json:"platform"`
	Status   string `json:"status"`
	Count    int    `json:"count"`
	// Duration quantiles in seconds: median, 90th and 99th percentile.
	P50Seconds float64 `json:"p50_seconds"`
	P90Seconds float64 `json:"p90_seconds"`
	P99Seconds float64 `json:"p99_seconds"`
	SumSeconds float64 `json:"sum_seconds"`
}

// RecentBuilds returns, per platform and outcome, the attempts that finished
// within the last window and the quantiles of their durations. It reads
// attempt_finished_idx (migration 0008), so its cost follows the number of
// recent builds, not the size of the history.
func RecentBuilds(ctx context.Context, db DB, window time.Duration) ([]RecentBuild, error) {
	rows, err := db.Query(ctx, `SELECT platform, status, count(*)::int,
		percentile_cont(0.5) WITHIN GROUP (ORDER BY d), percentile_cont(0.9) WITHIN GROUP (ORDER BY d),
		percentile_cont(0.99) WITHIN GROUP (ORDER BY d), sum(d)
		FROM (SELECT platform, status, extract(epoch FROM duration)::float8 AS d
		      FROM kiln.build_duration WHERE finished_at > now() - $1::interval) x
		GROUP BY platform, status ORDER BY platform, status`, window)
	if err != nil {
		return nil, wrap(err, "reading recent build durations")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[RecentBuild])
	if err != nil {
		return nil, wrap(err, "reading recent build durations")
	}
	return out, nil
}

// BuildingTask is a task being built, as the dashboard and the builders
// page show what each builder does.
type BuildingTask struct {
	TaskID    int64     `json:"task_id"`
	JobID     int64     `json:"job_id"`
	Platform  string    `json:"platform"`
	Builder   string    `json:"builder"`
	Attempt   int       `json:"attempt"`
	StartedAt time.Time `json:"started_at"`
	Submitter string    `json:"submitter"`
	Packages  []string  `json:"packages"`
}

// BuildingTasks returns every task being built, by builder (the partial
// index task_builder_idx holds exactly these).
func BuildingTasks(ctx context.Context, db DB) ([]BuildingTask, error) {
	rows, err := db.Query(ctx, `SELECT t.id, t.job_id, t.platform, t.builder, t.attempt, t.started_at, j.submitter,
		coalesce((SELECT array_agg(coalesce(p.name, p.file_name) ORDER BY p.seq) FROM kiln.package p WHERE p.job_id = t.job_id), '{}')
		FROM kiln.task t JOIN kiln.job j ON j.id = t.job_id
		WHERE t.builder IS NOT NULL ORDER BY t.builder, t.id`)
	if err != nil {
		return nil, wrap(err, "reading the tasks being built")
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[BuildingTask])
	if err != nil {
		return nil, wrap(err, "reading the tasks being built")
	}
	if out == nil {
		out = []BuildingTask{}
	}
	return out, nil
}

// LogLast returns the last n chunks of the log of one attempt of a task, in
// order, and whether earlier chunks exist; a page shows these and follows
// on from the last seq.
func LogLast(ctx context.Context, db DB, taskID int64, attempt, n int) ([]LogChunk, bool, error) {
	rows, err := db.Query(ctx, `SELECT task_id, attempt, seq, data, created_at FROM kiln.log_chunk
		WHERE task_id = $1 AND attempt = $2 ORDER BY seq DESC LIMIT $3`, taskID, attempt, n+1)
	if err != nil {
		return nil, false, wrap(err, fmt.Sprintf("reading the log of task %d", taskID))
	}
	out, err := pgx.CollectRows(rows, pgx.RowToStructByPos[LogChunk])
	if err != nil {
		return nil, false, wrap(err, fmt.Sprintf("reading the log of task %d", taskID))
	}
	more := len(out) > n
	if more {
		out = out[:n]
	}
	slices.Reverse(out)
	if out == nil {
		out = []LogChunk{}
	}
	return out, more, nil
}
