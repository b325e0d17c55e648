// Package notify tells people that their jobs ended: one mail per job and
// signed webhooks (docs/reports.md). kiln.job_request_reports writes a
// kiln.report_delivery row per recipient and the report River jobs when a
// job reaches its final status; kiln-reporter works them through a
// Reporter, which reads the job, renders the report, sends it and records
// each delivery.
package notify

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/termtext"
)

// LogLines is how many of the last lines of each failed log a report quotes.
const LogLines = 30

// Report is what a report says about one ended job. It is also the JSON
// body of a webhook.
type Report struct {
	Job       int64     `json:"job"`
	Bucket    string    `json:"bucket"`
	Submitter string    `json:"submitter"`
	Status    string    `json:"status"`
	Reason    string    `json:"reason,omitempty"`
	Note      string    `json:"note,omitempty"`
	Submitted time.Time `json:"submitted_at"`
	Finished  time.Time `json:"finished_at,omitzero"`
	URL       string    `json:"url,omitempty"`
	Packages  []Package `json:"packages"`
	Tasks     []Task    `json:"tasks"`
}

// Package is one source package of the job.
type Package struct {
	File    string `json:"file"`
	Name    string `json:"name,omitempty"`
	Version string `json:"version,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// Task is one task's outcome.
type Task struct {
	ID       int64  `json:"id"`
	Platform string `json:"platform"`
	Status   string `json:"status"`
	Attempts int    `json:"attempts"`
	// Stage is where a failed build stopped (kiln.attempt.failure_stage
	// where the schema has it), else empty.
	Stage     string     `json:"failure_stage,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	LogTail   []string   `json:"log_tail,omitempty"`
	URL       string     `json:"url,omitempty"`
	LogURL    string     `json:"log_url,omitempty"`
	Artifacts []Artifact `json:"artifacts,omitempty"`
}

// Artifact is one file a task produced.
type Artifact struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
	Size int64  `json:"size"`
	URL  string `json:"url,omitempty"`
}

// Failed reports whether the job is told to people who want failures only.
func (r *Report) Failed() bool {
	switch r.Status {
	case "failed", "partially_failed", "invalid":
		return true
	}
	return false
}

// failed is a task status of a build that did not succeed.
func failedTask(status string) bool {
	return status == "failed" || status == "timed_out" || status == "lost"
}

// load reads the report of job id in tx (as kiln_reporter: every job).
// stage says whether kiln.attempt has failure_stage.
func load(ctx context.Context, tx pgx.Tx, id int64, stage bool) (*Report, error) {
	r := &Report{Job: id}
	var reason, note, web *string
	var finished *time.Time
	err := tx.QueryRow(ctx, `SELECT j.bucket, j.submitter, j.status, j.reason, j.note, j.submitted_at, j.finished_at,
		       (SELECT s.value FROM kiln.farm_setting s WHERE s.name = 'web_url')
		  FROM kiln.job j WHERE j.id = $1`, id).
		Scan(&r.Bucket, &r.Submitter, &r.Status, &reason, &note, &r.Submitted, &finished, &web)
	if err != nil {
		return nil, fmt.Errorf("reading job %d: %w", id, err)
	}
	r.Reason, r.Note = deref(reason), deref(note)
	if finished != nil {
		r.Finished = *finished
	}
	base := strings.TrimRight(deref(web), "/")
	if base != "" {
		r.URL = base + "/jobs/" + strconv.FormatInt(id, 10)
	}
	rows, err := tx.Query(ctx, `SELECT file_name, coalesce(name, ''),
		       coalesce(CASE WHEN version IS NULL THEN '' ELSE coalesce(epoch || ':', '') || version || coalesce('-' || release, '') END, ''),
		       coalesce(reason, '')
		  FROM kiln.package WHERE job_id = $1 ORDER BY seq`, id)
	if err != nil {
		return nil, fmt.Errorf("reading the packages of job %d: %w", id, err)
	}
	r.Packages, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Package, error) {
		var p Package
		return p, row.Scan(&p.File, &p.Name, &p.Version, &p.Reason)
	})
	if err != nil {
		return nil, fmt.Errorf("reading the packages of job %d: %w", id, err)
	}
	stageCol := "NULL::text"
	if stage {
		stageCol = "a.failure_stage"
	}
	rows, err = tx.Query(ctx, `SELECT t.id, t.platform, t.status, t.attempt, coalesce(`+stageCol+`, ''),
		       coalesce(t.reason, a.reason, '')
		  FROM kiln.task t
		  LEFT JOIN kiln.attempt a ON a.task_id = t.id AND a.attempt = t.attempt
		 WHERE t.job_id = $1 ORDER BY t.platform`, id)
	if err != nil {
		return nil, fmt.Errorf("reading the tasks of job %d: %w", id, err)
	}
	r.Tasks, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Task, error) {
		var t Task
		return t, row.Scan(&t.ID, &t.Platform, &t.Status, &t.Attempts, &t.Stage, &t.Reason)
	})
	if err != nil {
		return nil, fmt.Errorf("reading the tasks of job %d: %w", id, err)
	}
	for i := range r.Tasks {
		t := &r.Tasks[i]
		if base != "" {
			t.URL = base + "/tasks/" + strconv.FormatInt(t.ID, 10)
			t.LogURL = t.URL + "/log.txt"
		}
		if failedTask(t.Status) && t.Attempts > 0 {
			if t.LogTail, err = logTail(ctx, tx, t.ID, t.Attempts); err != nil {
				return nil, err
			}
		}
		rows, err := tx.Query(ctx, `SELECT id, kind, file_name, size FROM kiln.artifact
			WHERE task_id = $1 AND attempt = $2 AND pruned_at IS NULL ORDER BY kind, file_name`, t.ID, t.Attempts)
		if err != nil {
			return nil, fmt.Errorf("reading the artifacts of task %d: %w", t.ID, err)
		}
		t.Artifacts, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (Artifact, error) {
			var a Artifact
			var aid int64
			err := row.Scan(&aid, &a.Kind, &a.Name, &a.Size)
			if base != "" {
				a.URL = base + "/artifacts/" + strconv.FormatInt(aid, 10) + "/" + a.Name
			}
			return a, err
		})
		if err != nil {
			return nil, fmt.Errorf("reading the artifacts of task %d: %w", t.ID, err)
		}
	}
	return r, nil
}

// logTail returns the last LogLines lines of an attempt's log, with control
// characters escaped (a log is the build's, that is anyone's, text).
func logTail(ctx context.Context, tx pgx.Tx, task int64, attempt int) ([]string, error) {
	// The last chunks hold the last lines; 64 KiB is plenty for 30 lines.
	var data string
	err := tx.QueryRow(ctx, `SELECT coalesce(string_agg(data, '' ORDER BY seq), '') FROM (
		SELECT seq, data FROM kiln.log_chunk WHERE task_id = $1 AND attempt = $2 ORDER BY seq DESC LIMIT 16) c`,
		task, attempt).Scan(&data)
	if err != nil {
		return nil, fmt.Errorf("reading the log of task %d: %w", task, err)
	}
	if len(data) > 64<<10 {
		data = data[len(data)-64<<10:]
	}
	lines := strings.Split(strings.TrimRight(data, "\n"), "\n")
	if len(lines) > LogLines {
		lines = lines[len(lines)-LogLines:]
	}
	if len(lines) == 1 && lines[0] == "" {
		return nil, nil
	}
	for i, l := range lines {
		lines[i] = termtext.Plain(strings.TrimRight(l, "\r"))
	}
	return lines, nil
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}
