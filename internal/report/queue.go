package report

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// Reasons a platform's pending tasks are not being built (QueuePlatform.Blocked).
const (
	BlockedPlatformInactive = "platform_inactive" // no new jobs may target it
	BlockedNoBuilder        = "no_builder"        // no builder builds the platform
	BlockedBuildersOffline  = "builders_offline"  // every builder of the platform is offline
	BlockedBuildersDisabled = "builders_disabled" // the online builders are disabled by an admin
	BlockedBuildersDraining = "builders_draining" // the online builders are draining before a stop
	BlockedBuildersFull     = "builders_full"     // every slot of the usable builders is busy
)

// QueuePlatform is one platform's queue and what keeps it from moving.
type QueuePlatform struct {
	Platform          string     `json:"platform"`
	Active            bool       `json:"active"`
	Pending           int        `json:"pending"`
	Building          int        `json:"building"`
	OldestPendingAt   *time.Time `json:"oldest_pending_at"`
	OldestWaitSeconds *float64   `json:"oldest_wait_seconds"`
	// Builders of the platform: all registered, online, online but
	// disabled, online but draining, and usable (online, enabled, not
	// draining).
	BuildersTotal    int `json:"builders_total"`
	BuildersOnline   int `json:"builders_online"`
	BuildersDisabled int `json:"builders_disabled"`
	BuildersDraining int `json:"builders_draining"`
	BuildersUsable   int `json:"builders_usable"`
	// SlotsUsable is the slots of the usable builders; SlotsBusy how many of
	// them hold a task (of any platform: a builder's slots are shared).
	SlotsUsable int `json:"slots_usable"`
	SlotsBusy   int `json:"slots_busy"`
	// Blocked lists the reasons (Blocked* constants) pending tasks are not
	// being built; empty when a builder can take one now.
	Blocked []string `json:"blocked"`
	// Why says the same in a sentence, with what to do.
	Why string `json:"why"`
}

// QueueTask is one pending task and where it stands.
type QueueTask struct {
	TaskID      int64     `json:"task_id"`
	JobID       int64     `json:"job_id"`
	Submitter   string    `json:"submitter"`
	Platform    string    `json:"platform"`
	Priority    int       `json:"priority"`
	CreatedAt   time.Time `json:"created_at"`
	WaitSeconds float64   `json:"wait_seconds"`
	// Ahead is how many pending tasks of the platform, anyone's, builders
	// take first in River's order (priority, then fair-share turn).
	Ahead   int      `json:"ahead"`
	Blocked []string `json:"blocked"`
	// Why joins the platform's blocking reasons, the tasks ahead and the
	// estimate in a sentence.
	Why string `json:"why"`
	// Waits is Why without the estimate (which changes as time passes).
	Waits string `json:"waits"`
	// ETA is its place in line and estimated start and end.
	ETA *ETA `json:"eta"`
}

// Queue is the state of the farm's queues.
type Queue struct {
	// Validating is the number of jobs waiting for the splitter, and
	// OldestValidatingSeconds how long the oldest has waited (null if none).
	Validating              int             `json:"validating"`
	OldestValidatingSeconds *float64        `json:"oldest_validating_seconds"`
	Platforms               []QueuePlatform `json:"platforms"`
	Tasks                   []QueueTask     `json:"tasks"`
}

// QueueFilter selects the pending tasks Queue lists.
type QueueFilter struct {
	// Mine selects the tasks of the connected role's jobs.
	Mine bool
	// Submitter selects the tasks of one role's jobs.
	Submitter string
	// Platform selects one platform's tasks (platforms are all listed).
	Platform string
	// Limit caps the tasks listed (DefaultLimit when 0, at most MaxLimit).
	Limit int
}

// GetQueue returns every platform's queue with the reasons it does not move,
// and the pending tasks selected by f with their place in line.
func GetQueue(ctx context.Context, db DB, f QueueFilter) (*Queue, error) {
	q := &Queue{}
	err := db.QueryRow(ctx, `SELECT count(*), extract(epoch FROM now() - min(submitted_at))::float8
		FROM kiln.job WHERE status = 'submitted'`).Scan(&q.Validating, &q.OldestValidatingSeconds)
	if err != nil {
		return nil, wrap(err, "reading jobs waiting for validation")
	}

	if q.Platforms, err = queuePlatforms(ctx, db); err != nil {
		return nil, err
	}
	byName := map[string]QueuePlatform{}
	for _, p := range q.Platforms {
		byName[p.Platform] = p
	}

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
	if f.Platform != "" {
		where = append(where, "t.platform = "+arg(f.Platform))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	// The place in line is kiln.task_eta's: River's order, counting every
	// task ahead, private buckets' too (anonymously), computed for the
	// platform asked for only (kiln.task_eta_on).
	var platforms []string
	if f.Platform != "" {
		platforms = []string{f.Platform}
	}
	sql := `SELECT t.id, t.job_id, j.submitter, t.platform, j.priority, t.created_at,
		extract(epoch FROM now() - t.created_at)::float8, e.task_id IS NOT NULL, ` + etaColumns + `
		FROM kiln.task t JOIN kiln.job j ON j.id = t.job_id
		LEFT JOIN kiln.task_eta_on(` + arg(platforms) + `::text[]) e ON e.task_id = t.id
		WHERE t.status = 'pending'`
	for _, w := range where {
		sql += " AND " + w
	}
	sql += " ORDER BY t.platform, e.queue_position NULLS LAST, t.id LIMIT " + arg(min(limit, MaxLimit))
	rows, err := db.Query(ctx, sql, args...)
	if err != nil {
		return nil, wrap(err, "reading pending tasks")
	}
	q.Tasks, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (QueueTask, error) {
		var t QueueTask
		var hasETA bool
		e := &ETA{}
		err := r.Scan(append([]any{&t.TaskID, &t.JobID, &t.Submitter, &t.Platform, &t.Priority, &t.CreatedAt, &t.WaitSeconds, &hasETA},
			e.dest()...)...)
		if hasETA {
			t.ETA = e
			if e.Ahead != nil {
				t.Ahead = int(*e.Ahead)
			}
		}
		p := byName[t.Platform]
		t.Blocked = p.Blocked
		t.Why, t.Waits = waitingWhy(p, t.ETA), waits(p, t.ETA)
		return t, err
	})
	if err != nil {
		return nil, wrap(err, "reading pending tasks")
	}
	if q.Tasks == nil {
		q.Tasks = []QueueTask{}
	}
	return q, nil
}

// queuePlatforms reads every platform's queue with the reasons it does not
// move.
func queuePlatforms(ctx context.Context, db DB) ([]QueuePlatform, error) {
	rows, err := db.Query(ctx, `SELECT q.platform, q.active, q.pending, q.building, q.oldest_pending_at,
		extract(epoch FROM q.oldest_wait)::float8,
		count(b.name), count(b.name) FILTER (WHERE b.state = 'online'),
		count(b.name) FILTER (WHERE b.state = 'online' AND NOT b.enabled),
		count(b.name) FILTER (WHERE b.state = 'online' AND b.enabled AND b.draining),
		count(b.name) FILTER (WHERE b.state = 'online' AND b.enabled AND NOT b.draining),
		coalesce(sum(b.slots) FILTER (WHERE b.state = 'online' AND b.enabled AND NOT b.draining), 0),
		coalesce(sum((SELECT count(*) FROM kiln.task t WHERE t.builder = b.name))
		         FILTER (WHERE b.state = 'online' AND b.enabled AND NOT b.draining), 0)
		FROM kiln.queue_depth q
		LEFT JOIN kiln.builder_platform bp ON bp.platform = q.platform
		LEFT JOIN kiln.builder b ON b.name = bp.builder
		GROUP BY q.platform, q.active, q.pending, q.building, q.oldest_pending_at, q.oldest_wait
		ORDER BY q.platform`)
	if err != nil {
		return nil, wrap(err, "reading the queues")
	}
	ps, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (QueuePlatform, error) {
		var p QueuePlatform
		err := r.Scan(&p.Platform, &p.Active, &p.Pending, &p.Building, &p.OldestPendingAt, &p.OldestWaitSeconds,
			&p.BuildersTotal, &p.BuildersOnline, &p.BuildersDisabled, &p.BuildersDraining, &p.BuildersUsable,
			&p.SlotsUsable, &p.SlotsBusy)
		p.Blocked, p.Why = p.blocked()
		return p, err
	})
	if err != nil {
		return nil, wrap(err, "reading the queues")
	}
	if ps == nil {
		ps = []QueuePlatform{}
	}
	return ps, nil
}

// blocked says why the platform's pending tasks are not being built.
func (p QueuePlatform) blocked() ([]string, string) {
	codes := []string{}
	var why []string
	if !p.Active {
		codes = append(codes, BlockedPlatformInactive)
		why = append(why, fmt.Sprintf("platform %s is inactive (an admin can run: kiln admin platform enable %s)", p.Platform, p.Platform))
	}
	switch {
	case p.BuildersTotal == 0:
		codes = append(codes, BlockedNoBuilder)
		why = append(why, fmt.Sprintf("no builder builds %s (start a kiln-builder for it)", p.Platform))
	case p.BuildersUsable == 0 && p.BuildersOnline == 0:
		codes = append(codes, BlockedBuildersOffline)
		why = append(why, fmt.Sprintf("%s of %s %s offline", all(p.BuildersTotal, "builder"), p.Platform, isAre(p.BuildersTotal)))
	case p.BuildersUsable == 0:
		if p.BuildersDisabled > 0 {
			codes = append(codes, BlockedBuildersDisabled)
			why = append(why, fmt.Sprintf("%s of %s %s disabled (kiln admin builder enable NAME)", count(p.BuildersDisabled, "online builder"), p.Platform, isAre(p.BuildersDisabled)))
		}
		if p.BuildersDraining > 0 {
			codes = append(codes, BlockedBuildersDraining)
			why = append(why, fmt.Sprintf("%s of %s %s draining before a stop", count(p.BuildersDraining, "online builder"), p.Platform, isAre(p.BuildersDraining)))
		}
	case p.SlotsBusy >= p.SlotsUsable:
		codes = append(codes, BlockedBuildersFull)
		why = append(why, fmt.Sprintf("%s of the %s of %s %s busy", all(p.SlotsUsable, "slot"), count(p.BuildersUsable, "usable builder"), p.Platform, isAre(p.SlotsUsable)))
	}
	if len(why) == 0 {
		if p.Pending == 0 {
			return codes, "nothing waits"
		}
		return codes, fmt.Sprintf("%d of %d slots free on %s; a builder should take the next task shortly", p.SlotsUsable-p.SlotsBusy, p.SlotsUsable, p.Platform)
	}
	return codes, strings.Join(why, "; ")
}

// Health is what a monitoring probe checks.
type Health struct {
	// Pending tasks and the longest wait among them (null when none waits),
	// with its platform.
	Pending              int      `json:"pending"`
	OldestPendingSeconds *float64 `json:"oldest_pending_seconds"`
	OldestPendingOn      *string  `json:"oldest_pending_platform"`
	// Jobs waiting for validation and the longest wait among them.
	Validating              int      `json:"validating"`
	OldestValidatingSeconds *float64 `json:"oldest_validating_seconds"`
	// Builders registered, online, and offline although enabled.
	BuildersTotal   int `json:"builders_total"`
	BuildersOnline  int `json:"builders_online"`
	BuildersOffline int `json:"builders_offline"`
	// JanitorLastRun is the time of the janitor's last round (kiln.event of
	// kind janitor.round), null if it never ran.
	JanitorLastRun    *time.Time `json:"janitor_last_run"`
	JanitorAgeSeconds *float64   `json:"janitor_age_seconds"`
	// Stuck are the active platforms whose pending tasks no builder can
	// take: none builds them that is online, enabled and not draining.
	Stuck []string `json:"stuck_platforms"`
}

// healthQuery reads the facts behind kiln check. Each part uses an index:
// task_unfinished_platform_idx for the pending tasks, job_status_idx for
// jobs waiting for validation, event_kind_idx for the janitor's last round
// (a partial index: the kind must be a constant here, not a parameter).
const healthQuery = `SELECT
	(SELECT count(*) FROM kiln.task WHERE status = 'pending'),
	(SELECT extract(epoch FROM now() - created_at)::float8 FROM kiln.task WHERE status = 'pending' ORDER BY created_at LIMIT 1),
	(SELECT platform FROM kiln.task WHERE status = 'pending' ORDER BY created_at LIMIT 1),
	(SELECT count(*) FROM kiln.job WHERE status = 'submitted'),
	(SELECT extract(epoch FROM now() - min(submitted_at))::float8 FROM kiln.job WHERE status = 'submitted'),
	(SELECT count(*) FROM kiln.builder),
	(SELECT count(*) FROM kiln.builder WHERE state = 'online'),
	(SELECT count(*) FROM kiln.builder WHERE state = 'offline' AND enabled),
	j.at, extract(epoch FROM now() - j.at)::float8,
	(SELECT coalesce(array_agg(p.name ORDER BY p.name), '{}') FROM kiln.platform p
	  WHERE p.active AND EXISTS (SELECT 1 FROM kiln.task t WHERE t.platform = p.name AND t.status = 'pending')
	    AND NOT EXISTS (SELECT 1 FROM kiln.builder_platform bp JOIN kiln.builder b ON b.name = bp.builder
	                     WHERE bp.platform = p.name AND b.state = 'online' AND b.enabled AND NOT b.draining))
	FROM (SELECT NULL) AS one
	LEFT JOIN LATERAL (SELECT at FROM kiln.event WHERE kind = 'janitor.round' ORDER BY id DESC LIMIT 1) j ON true`

// GetHealth reads the facts behind kiln check (healthQuery).
func GetHealth(ctx context.Context, db DB) (*Health, error) {
	h := &Health{}
	err := db.QueryRow(ctx, healthQuery).Scan(
		&h.Pending, &h.OldestPendingSeconds, &h.OldestPendingOn, &h.Validating, &h.OldestValidatingSeconds,
		&h.BuildersTotal, &h.BuildersOnline, &h.BuildersOffline, &h.JanitorLastRun, &h.JanitorAgeSeconds, &h.Stuck)
	if err != nil {
		return nil, wrap(err, "reading the farm's health")
	}
	return h, nil
}

// count is "1 thing" or "n things".
func count(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// all is "the only thing" or "all n things".
func all(n int, thing string) string {
	if n == 1 {
		return "the only " + thing
	}
	return fmt.Sprintf("all %d %ss", n, thing)
}

func isAre(n int) string {
	if n == 1 {
		return "is"
	}
	return "are"
}
