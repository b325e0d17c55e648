package report

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/kiln-build/kiln/internal/task"
)

// DefaultLimit is how many jobs ListJobs returns when Filter.Limit is 0;
// MaxLimit is the most it returns.
const (
	DefaultLimit = 50
	MaxLimit     = 1000
)

// Filter selects jobs for ListJobs. Zero fields do not filter.
type Filter struct {
	// Mine selects the jobs of the connected role (session_user).
	Mine bool
	// Submitter selects the jobs of one role.
	Submitter string
	// Status selects jobs in any of these statuses (JobStatuses).
	Status []string
	// Bucket selects jobs for one bucket.
	Bucket string
	// Platform selects jobs with a task on this platform.
	Platform string
	// Since selects jobs submitted at or after this time.
	Since time.Time
	// Before is the pagination cursor: only jobs with a smaller id. Pass
	// JobList.NextBefore to get the next page.
	Before int64
	// Limit caps the number of jobs (DefaultLimit when 0, at most MaxLimit).
	Limit int
}

// ParseSince reads the start of a time window, as kiln jobs --since and the
// web's job filter take it: a duration back from now (Go syntax such as 36h
// or 90m, or a number of days or weeks such as 7d, 1.5d, 2w), a date
// (2025-05-01, midnight in now's location) or an RFC 3339 time. Durations
// are never negative and never reach further back than time.Duration can
// say (about 292 years).
func ParseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.ParseInLocation(time.DateOnly, s, now.Location()); err == nil {
		return t, nil
	}
	if d, ok := sinceDuration(s); ok {
		return now.Add(-d), nil
	}
	return time.Time{}, errors.New("not a duration (36h, 7d, 2w), date (2025-05-01) or RFC 3339 time")
}

// sinceDuration reads a non-negative duration: Go syntax, or a number of
// days (d) or weeks (w).
func sinceDuration(s string) (time.Duration, bool) {
	unit := time.Duration(0)
	switch {
	case strings.HasSuffix(s, "d"):
		unit = 24 * time.Hour
	case strings.HasSuffix(s, "w"):
		unit = 7 * 24 * time.Hour
	}
	if unit == 0 {
		d, err := time.ParseDuration(s)
		return d, err == nil && d >= 0
	}
	n, err := strconv.ParseFloat(s[:len(s)-1], 64)
	// !(x < max) also refuses NaN, which compares false with everything.
	if err != nil || n < 0 || !(n*float64(unit) < math.MaxInt64) {
		return 0, false
	}
	return time.Duration(n * float64(unit)), true
}

// TaskBrief is a task as a job listing shows it.
type TaskBrief struct {
	ID       int64       `json:"id"`
	Platform string      `json:"platform"`
	Status   task.Status `json:"status"`
	// FailureStage is where its last failed attempt failed, if it did.
	FailureStage *string `json:"failure_stage"`
}

// JobSummary is one job in a listing.
type JobSummary struct {
	ID          int64          `json:"id"`
	Submitter   string         `json:"submitter"`
	Bucket      string         `json:"bucket"`
	Status      task.JobStatus `json:"status"`
	Priority    int            `json:"priority"`
	Packages    []string       `json:"packages"`
	Tasks       []TaskBrief    `json:"tasks"`
	SubmittedAt time.Time      `json:"submitted_at"`
	StartedAt   *time.Time     `json:"started_at"`
	FinishedAt  *time.Time     `json:"finished_at"`
	// AgeSeconds is the time since submission.
	AgeSeconds float64 `json:"age_seconds"`
	// DurationSeconds is the time from submission to the end (or to now
	// while the job runs).
	DurationSeconds float64 `json:"duration_seconds"`
	Note            string  `json:"note"`
	Reason          *string `json:"reason"`
	ResubmitOf      *int64  `json:"resubmit_of"`
}

// JobList is a page of jobs, newest first.
type JobList struct {
	Jobs []JobSummary `json:"jobs"`
	// NextBefore is the cursor for the next page (Filter.Before), 0 when
	// this page is the last.
	NextBefore int64 `json:"next_before"`
}

// summaryColumns reads a JobSummary from kiln.job j. The packages and tasks
// sub-selects use the primary key of kiln.package and the (job_id, platform)
// unique index of kiln.task, so their cost is per listed job only.
const summaryColumns = `j.id, j.submitter, j.bucket, j.status, j.priority,
	coalesce((SELECT array_agg(coalesce(p.name, p.file_name) ORDER BY p.seq) FROM kiln.package p WHERE p.job_id = j.id), '{}'),
	coalesce((SELECT jsonb_agg(jsonb_build_object('id', t.id, 'platform', t.platform, 'status', t.status, 'failure_stage', t.failure_stage) ORDER BY t.platform)
	          FROM kiln.task t WHERE t.job_id = j.id), '[]'),
	j.submitted_at, j.started_at, j.finished_at,
	extract(epoch FROM now() - j.submitted_at)::float8,
	extract(epoch FROM coalesce(j.finished_at, now()) - j.submitted_at)::float8,
	j.note, j.reason, j.resubmit_of`

func scanSummary(row pgx.Row, s *JobSummary) error {
	return row.Scan(&s.ID, &s.Submitter, &s.Bucket, &s.Status, &s.Priority, &s.Packages, &s.Tasks,
		&s.SubmittedAt, &s.StartedAt, &s.FinishedAt, &s.AgeSeconds, &s.DurationSeconds, &s.Note, &s.Reason, &s.ResubmitOf)
}

// ListJobs returns jobs matching f, newest (highest id) first. The query is
// built from the filters given only, so each combination uses its index
// (job_submitter_idx, job_status_idx, job_bucket_idx, task_platform_job_idx,
// or the primary key scanned backwards) and stops after Limit rows.
func ListJobs(ctx context.Context, db DB, f Filter) (JobList, error) {
	var where []string
	var args []any
	arg := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", len(args))
	}
	if f.Mine {
		where = append(where, "j.submitter = session_user")
	}
	if f.Submitter != "" {
		where = append(where, "j.submitter = "+arg(f.Submitter))
	}
	switch len(f.Status) {
	case 0:
	case 1:
		where = append(where, "j.status = "+arg(f.Status[0]))
	default:
		where = append(where, "j.status = ANY("+arg(f.Status)+"::text[])")
	}
	for _, s := range f.Status {
		if _, err := task.ParseJobStatus(s); err != nil {
			return JobList{}, err
		}
	}
	if f.Bucket != "" {
		where = append(where, "j.bucket = "+arg(f.Bucket))
	}
	if f.Platform != "" {
		where = append(where, "j.id IN (SELECT t.job_id FROM kiln.task t WHERE t.platform = "+arg(f.Platform)+")")
	}
	if !f.Since.IsZero() {
		where = append(where, "j.submitted_at >= "+arg(f.Since))
	}
	if f.Before > 0 {
		where = append(where, "j.id < "+arg(f.Before))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)

	sql := "SELECT " + summaryColumns + " FROM kiln.job j"
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	sql += " ORDER BY j.id DESC LIMIT " + arg(limit+1)
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return JobList{}, wrap(err, "listing jobs")
	}
	jobs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (JobSummary, error) {
		var s JobSummary
		err := scanSummary(r, &s)
		return s, err
	})
	if err != nil {
		return JobList{}, wrap(err, "listing jobs")
	}
	out := JobList{Jobs: jobs}
	if len(jobs) > limit {
		out.Jobs = jobs[:limit]
		out.NextBefore = jobs[limit-1].ID
	}
	if out.Jobs == nil {
		out.Jobs = []JobSummary{}
	}
	return out, nil
}

// Package is one source package of a job.
type Package struct {
	Seq           int      `json:"seq"`
	FileName      string   `json:"file_name"`
	Format        string   `json:"format"`
	Size          int64    `json:"size"`
	SHA256        string   `json:"sha256"`
	Name          *string  `json:"name"`
	Epoch         *int     `json:"epoch"`
	Version       *string  `json:"version"`
	Release       *string  `json:"release"`
	ExclusiveArch []string `json:"exclusive_arch"`
	ExcludeArch   []string `json:"exclude_arch"`
	Reason        *string  `json:"reason"`
	// Files are the further files of a Debian source package.
	Files []PackageFile `json:"files"`
}

// PackageFile is a further file of a Debian source package.
type PackageFile struct {
	FileName string `json:"file_name"`
	Size     int64  `json:"size"`
	SHA256   string `json:"sha256"`
}

// Job is one job with everything about it.
type Job struct {
	ID            int64          `json:"id"`
	Submitter     string         `json:"submitter"`
	Bucket        string         `json:"bucket"`
	Status        task.JobStatus `json:"status"`
	Priority      int            `json:"priority"`
	Policy        string         `json:"policy"`
	Platforms     []string       `json:"platforms_requested"`
	Options       map[string]any `json:"options"`
	SubmissionKey string         `json:"submission_key"`
	Note          string         `json:"note"`
	Reason        *string        `json:"reason"`
	ResubmitOf    *int64         `json:"resubmit_of"`
	CancelledBy   *string        `json:"cancelled_by"`
	SubmittedAt   time.Time      `json:"submitted_at"`
	ValidatedAt   *time.Time     `json:"validated_at"`
	StartedAt     *time.Time     `json:"started_at"`
	FinishedAt    *time.Time     `json:"finished_at"`
	// AgeSeconds is the time since submission; DurationSeconds the time from
	// submission to the end (or to now while the job runs).
	AgeSeconds      float64   `json:"age_seconds"`
	DurationSeconds float64   `json:"duration_seconds"`
	Packages        []Package `json:"packages"`
	Tasks           []Task    `json:"tasks"`
}

// GetJob returns one job with its packages and its tasks (each with its
// attempts and artifacts). A missing job is an error wrapping ErrNotFound.
func GetJob(ctx context.Context, db DB, id int64) (*Job, error) {
	var j Job
	err := db.QueryRow(ctx, `SELECT id, submitter, bucket, status, priority, policy, platforms, options, submission_key,
		note, reason, resubmit_of, cancelled_by, submitted_at, validated_at, started_at, finished_at,
		extract(epoch FROM now() - submitted_at)::float8,
		extract(epoch FROM coalesce(finished_at, now()) - submitted_at)::float8
		FROM kiln.job WHERE id = $1`, id).Scan(&j.ID, &j.Submitter, &j.Bucket, &j.Status, &j.Priority, &j.Policy,
		&j.Platforms, &j.Options, &j.SubmissionKey, &j.Note, &j.Reason, &j.ResubmitOf, &j.CancelledBy,
		&j.SubmittedAt, &j.ValidatedAt, &j.StartedAt, &j.FinishedAt, &j.AgeSeconds, &j.DurationSeconds)
	if err == pgx.ErrNoRows {
		return nil, notFound("job", id)
	}
	if err != nil {
		return nil, wrap(err, fmt.Sprintf("reading job %d", id))
	}
	if j.Packages, err = packages(ctx, db, id); err != nil {
		return nil, err
	}
	if j.Tasks, err = tasks(ctx, db, "t.job_id = $1 ORDER BY t.platform", id); err != nil {
		return nil, err
	}
	return &j, nil
}

func packages(ctx context.Context, db DB, jobID int64) ([]Package, error) {
	rows, err := db.Query(ctx, `SELECT p.seq, p.file_name, p.format, p.size, encode(p.blob_sha256, 'hex'),
		p.name, p.epoch, p.version, p.release, p.exclusive_arch, p.exclude_arch, p.reason,
		coalesce((SELECT jsonb_agg(jsonb_build_object('file_name', f.file_name, 'size', f.size, 'sha256', encode(f.blob_sha256, 'hex'))
		          ORDER BY f.file_name) FROM kiln.package_file f WHERE f.job_id = p.job_id AND f.seq = p.seq), '[]')
		FROM kiln.package p WHERE p.job_id = $1 ORDER BY p.seq`, jobID)
	if err != nil {
		return nil, wrap(err, fmt.Sprintf("reading packages of job %d", jobID))
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Package, error) {
		var p Package
		err := r.Scan(&p.Seq, &p.FileName, &p.Format, &p.Size, &p.SHA256, &p.Name, &p.Epoch, &p.Version, &p.Release,
			&p.ExclusiveArch, &p.ExcludeArch, &p.Reason, &p.Files)
		return p, err
	})
	if err != nil {
		return nil, wrap(err, fmt.Sprintf("reading packages of job %d", jobID))
	}
	if ps == nil {
		ps = []Package{}
	}
	return ps, nil
}
