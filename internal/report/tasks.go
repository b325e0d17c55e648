package report

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/kiln-build/kiln/internal/task"
)

// Task is a job on one platform, with its attempts and artifacts.
type Task struct {
	ID        int64       `json:"id"`
	JobID     int64       `json:"job_id"`
	Submitter string      `json:"submitter"`
	Platform  string      `json:"platform"`
	Status    task.Status `json:"status"`
	Builder   *string     `json:"builder"`
	// Attempt is the number of the current (or last) attempt, 0 before the
	// first.
	Attempt     int        `json:"attempt"`
	LostCount   int        `json:"lost_count"`
	CreatedAt   time.Time  `json:"created_at"`
	StartedAt   *time.Time `json:"started_at"`
	FinishedAt  *time.Time `json:"finished_at"`
	HeartbeatAt *time.Time `json:"heartbeat_at"`
	// DurationSeconds is how long the current attempt ran (or has been
	// running); null before the first.
	DurationSeconds *float64 `json:"duration_seconds"`
	// WaitSeconds is how long the task waited for a builder: from creation
	// to the start of its current attempt, or to now while it waits; null
	// for a task that ended without being built (skipped, cancelled).
	WaitSeconds *float64 `json:"wait_seconds"`
	Reason      *string  `json:"reason"`
	// FailureStage is where its last failed attempt failed
	// (kiln.failure_stage); InfraRetries how often it was retried for the
	// farm's faults.
	FailureStage *string    `json:"failure_stage"`
	InfraRetries int        `json:"infra_retries"`
	Attempts     []Attempt  `json:"attempts"`
	Artifacts    []Artifact `json:"artifacts"`
	// ETA is where a pending task stands and when it should start and
	// end, or when a building one should end (kiln.task_eta); null for
	// the others.
	ETA *ETA `json:"eta"`
	// Why says, for a pending task, why it waits joined to its estimate
	// (what kiln queue says); "" for the others.
	Why string `json:"why"`
}

// Attempt is one try of a task by one builder.
type Attempt struct {
	Attempt         int         `json:"attempt"`
	Builder         string      `json:"builder"`
	Status          task.Status `json:"status"`
	StartedAt       time.Time   `json:"started_at"`
	FinishedAt      *time.Time  `json:"finished_at"`
	DurationSeconds float64     `json:"duration_seconds"`
	Reason          *string     `json:"reason"`
	// FailureStage is where a failed attempt failed; Retried whether the
	// task was retried after it (the farm's fault).
	FailureStage *string `json:"failure_stage"`
	Retried      bool    `json:"retried"`
	LogBytes     int64   `json:"log_bytes"`
	LogTruncated bool    `json:"log_truncated"`
}

// Artifact is a file a task attempt produced.
type Artifact struct {
	ID       int64  `json:"id"`
	TaskID   int64  `json:"task_id"`
	Platform string `json:"platform"`
	Attempt  int    `json:"attempt"`
	Kind     string `json:"kind"`
	FileName string `json:"file_name"`
	Size     int64  `json:"size"`
	// SHA256 is the content's digest in hex; null once retention pruned it.
	SHA256    *string    `json:"sha256"`
	CreatedAt time.Time  `json:"created_at"`
	PrunedAt  *time.Time `json:"pruned_at"`
}

// GetTask returns one task with its attempts and artifacts. A missing task
// is an error wrapping ErrNotFound.
func GetTask(ctx context.Context, db DB, id int64) (*Task, error) {
	ts, err := tasks(ctx, db, "t.id = $1", id)
	if err != nil {
		return nil, err
	}
	if len(ts) == 0 {
		return nil, notFound("task", id)
	}
	return &ts[0], nil
}

// tasks reads the tasks selected by cond (a WHERE clause over kiln.task t,
// with its ORDER BY) with their attempts and artifacts.
func tasks(ctx context.Context, db DB, cond string, args ...any) ([]Task, error) {
	rows, err := db.Query(ctx, `SELECT t.id, t.job_id, j.submitter, t.platform, t.status, t.builder, t.attempt, t.lost_count,
		t.created_at, t.started_at, t.finished_at, t.heartbeat_at,
		extract(epoch FROM coalesce(t.finished_at, now()) - t.started_at)::float8,
		extract(epoch FROM CASE WHEN t.status = 'pending' THEN now() ELSE t.started_at END - t.created_at)::float8,
		t.reason, t.failure_stage, t.infra_retries
		FROM kiln.task t JOIN kiln.job j ON j.id = t.job_id WHERE `+cond, args...)
	if err != nil {
		return nil, wrap(err, "reading tasks")
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Task, error) {
		var t Task
		err := r.Scan(&t.ID, &t.JobID, &t.Submitter, &t.Platform, &t.Status, &t.Builder, &t.Attempt, &t.LostCount,
			&t.CreatedAt, &t.StartedAt, &t.FinishedAt, &t.HeartbeatAt, &t.DurationSeconds, &t.WaitSeconds, &t.Reason, &t.FailureStage, &t.InfraRetries)
		t.Attempts, t.Artifacts = []Attempt{}, []Artifact{}
		return t, err
	})
	if err != nil {
		return nil, wrap(err, "reading tasks")
	}
	if len(ts) == 0 {
		return []Task{}, nil
	}
	ids := make([]int64, len(ts))
	byID := make(map[int64]*Task, len(ts))
	var live []int64
	for i := range ts {
		ids[i] = ts[i].ID
		byID[ts[i].ID] = &ts[i]
		if ts[i].Status == task.Pending || ts[i].Status == task.Building {
			live = append(live, ts[i].ID)
		}
	}
	if err := estimate(ctx, db, byID, live); err != nil {
		return nil, err
	}

	rows, err = db.Query(ctx, `SELECT task_id, attempt, builder, status, started_at, finished_at,
		extract(epoch FROM coalesce(finished_at, now()) - started_at)::float8, reason, failure_stage, retried, log_bytes, log_truncated
		FROM kiln.attempt WHERE task_id = ANY($1) ORDER BY task_id, attempt`, ids)
	if err != nil {
		return nil, wrap(err, "reading attempts")
	}
	var taskID int64
	var a Attempt
	_, err = pgx.ForEachRow(rows, []any{&taskID, &a.Attempt, &a.Builder, &a.Status, &a.StartedAt, &a.FinishedAt,
		&a.DurationSeconds, &a.Reason, &a.FailureStage, &a.Retried, &a.LogBytes, &a.LogTruncated}, func() error {
		t := byID[taskID]
		t.Attempts = append(t.Attempts, a)
		// A finished task no longer names a builder (kiln.task.builder
		// is whose it is now); it was built by its current attempt's.
		if t.Builder == nil && t.FinishedAt != nil && a.Attempt == t.Attempt && a.Builder != "" {
			b := a.Builder
			t.Builder = &b
		}
		return nil
	})
	if err != nil {
		return nil, wrap(err, "reading attempts")
	}

	arts, err := artifacts(ctx, db, "a.task_id = ANY($1)", ids)
	if err != nil {
		return nil, err
	}
	for _, art := range arts {
		t := byID[art.TaskID]
		t.Artifacts = append(t.Artifacts, art)
	}
	return ts, nil
}

// artifacts reads the artifacts selected by cond over kiln.artifact a (joined
// with its task t).
func artifacts(ctx context.Context, db DB, cond string, args ...any) ([]Artifact, error) {
	rows, err := db.Query(ctx, `SELECT a.id, a.task_id, t.platform, a.attempt, a.kind, a.file_name, a.size,
		encode(a.blob_sha256, 'hex'), a.created_at, a.pruned_at
		FROM kiln.artifact a JOIN kiln.task t ON t.id = a.task_id
		WHERE `+cond+` ORDER BY t.platform, a.attempt, a.kind, a.file_name`, args...)
	if err != nil {
		return nil, wrap(err, "reading artifacts")
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (Artifact, error) {
		var a Artifact
		err := r.Scan(&a.ID, &a.TaskID, &a.Platform, &a.Attempt, &a.Kind, &a.FileName, &a.Size, &a.SHA256, &a.CreatedAt, &a.PrunedAt)
		return a, err
	})
	if err != nil {
		return nil, wrap(err, "reading artifacts")
	}
	return out, nil
}

// Downloadable returns the artifacts of a job that can be fetched: those of
// each task's current attempt whose content is still stored, optionally of
// one platform only ("" for all). A missing job wraps ErrNotFound.
func Downloadable(ctx context.Context, db DB, jobID int64, platform string) ([]Artifact, error) {
	var exists bool
	if err := db.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM kiln.job WHERE id = $1)", jobID).Scan(&exists); err != nil {
		return nil, wrap(err, fmt.Sprintf("reading job %d", jobID))
	}
	if !exists {
		return nil, notFound("job", jobID)
	}
	cond := "t.job_id = $1 AND a.attempt = t.attempt AND a.blob_sha256 IS NOT NULL"
	args := []any{jobID}
	if platform != "" {
		cond += " AND t.platform = $2"
		args = append(args, platform)
	}
	return artifacts(ctx, db, cond, args...)
}

// estimate gives the pending and building tasks among byID (ids live)
// their estimates and the pending ones why they wait.
func estimate(ctx context.Context, db DB, byID map[int64]*Task, live []int64) error {
	if len(live) == 0 {
		return nil
	}
	etas, err := taskETAs(ctx, db, live)
	if err != nil {
		return err
	}
	var platforms map[string]QueuePlatform
	for _, id := range live {
		t := byID[id]
		t.ETA = etas[id]
		if t.Status != task.Pending {
			continue
		}
		if platforms == nil {
			ps, err := queuePlatforms(ctx, db)
			if err != nil {
				return err
			}
			platforms = make(map[string]QueuePlatform, len(ps))
			for _, p := range ps {
				platforms[p.Platform] = p
			}
		}
		t.Why = waitingWhy(platforms[t.Platform], t.ETA)
	}
	return nil
}
