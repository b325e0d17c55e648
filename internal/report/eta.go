package report

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/internal/format"
	"github.com/kiln-build/kiln/internal/task"
)

// Where an estimated build time comes from (ETA.Basis, kiln.task_eta).
const (
	BasisPackage  = "package"  // the last builds of the same source packages on the platform
	BasisPlatform = "platform" // the median of the platform's last builds
)

// ETA is where a pending or building task stands and when it should build:
// a row of kiln.task_eta (docs/queueing.md, "Estimates").
type ETA struct {
	// Position is a pending task's place in its platform's queue in
	// River's order, 1 next; Ahead how many tasks, anyone's, come before
	// it. Both null while building.
	Position *int64 `json:"position"`
	Ahead    *int64 `json:"ahead"`
	// Slots of the platform's usable builders, and how many are free.
	Slots     int64 `json:"slots"`
	FreeSlots int64 `json:"free_slots"`
	// EstimatedSeconds is the expected build time, from Basis (BasisPackage
	// or BasisPlatform); both null when the platform has built nothing yet.
	EstimatedSeconds *float64 `json:"estimated_seconds"`
	Basis            *string  `json:"basis"`
	// EstimatedStart is when a pending task should start (null when no
	// usable builder builds the platform or no build time is known), or
	// when a building task started; EstimatedEnd when it should end.
	EstimatedStart *time.Time `json:"estimated_start"`
	EstimatedEnd   *time.Time `json:"estimated_end"`
	// StartInSeconds and EndInSeconds are the same from the database's
	// now (negative: in the past).
	StartInSeconds *float64 `json:"start_in_seconds"`
	EndInSeconds   *float64 `json:"end_in_seconds"`
}

// etaColumns are the columns of kiln.task_eta e that scanETA reads, after
// the task id.
const etaColumns = `e.queue_position, e.ahead, e.slots, e.free_slots,
	extract(epoch FROM e.estimated_duration)::float8, e.duration_basis, e.estimated_start, e.estimated_end,
	extract(epoch FROM e.estimated_start - now())::float8, extract(epoch FROM e.estimated_end - now())::float8`

func (e *ETA) dest() []any {
	return []any{&e.Position, &e.Ahead, &e.Slots, &e.FreeSlots, &e.EstimatedSeconds, &e.Basis,
		&e.EstimatedStart, &e.EstimatedEnd, &e.StartInSeconds, &e.EndInSeconds}
}

// taskETAs reads the estimates of kiln.task_eta for the given tasks,
// computing only their platforms' queues (kiln.task_eta_on); tasks neither
// pending nor building have none.
func taskETAs(ctx context.Context, db DB, ids []int64) (map[int64]*ETA, error) {
	rows, err := db.Query(ctx, `SELECT e.task_id, `+etaColumns+`
		FROM kiln.task_eta_on(ARRAY(SELECT DISTINCT t.platform FROM kiln.task t WHERE t.id = ANY($1))) e
		WHERE e.task_id = ANY($1)`, ids)
	if err != nil {
		return nil, wrap(err, "reading the tasks' estimates")
	}
	out := map[int64]*ETA{}
	var id int64
	e := &ETA{}
	_, err = pgx.ForEachRow(rows, append([]any{&id}, e.dest()...), func() error {
		c := *e
		out[id] = &c
		return nil
	})
	if err != nil {
		return nil, wrap(err, "reading the tasks' estimates")
	}
	return out, nil
}

// basisPhrase says where a build time comes from.
func (e *ETA) basisPhrase() string {
	if e.Basis != nil && *e.Basis == BasisPackage {
		return "from its last builds"
	}
	return "from the platform's median build"
}

// Estimate says in words when the task should start and end: for a
// pending task "starts in about 12m, done in about 40m", for a building
// one "should end in about 5m (from its last builds)"; "" when nothing is
// known.
func (e *ETA) Estimate(status task.Status) string {
	if e == nil {
		return ""
	}
	switch status {
	case task.Building:
		if e.EndInSeconds == nil {
			return "no estimate of its end yet (the platform has built nothing)"
		}
		if *e.EndInSeconds < 0 {
			return fmt.Sprintf("running %s past its estimate (%s)", format.Duration(-*e.EndInSeconds), e.basisPhrase())
		}
		return fmt.Sprintf("should end in about %s (%s)", format.Duration(*e.EndInSeconds), e.basisPhrase())
	case task.Pending:
		if e.StartInSeconds == nil {
			return ""
		}
		start := "starts now"
		if *e.StartInSeconds >= 1 {
			start = "starts in about " + format.Duration(*e.StartInSeconds)
		}
		if e.EndInSeconds != nil {
			start += ", done in about " + format.Duration(*e.EndInSeconds)
		}
		return start
	}
	return ""
}

// waitingWhy joins why a pending task waits: its platform's blocking
// reasons (p.Why when p.Blocked is not empty), the tasks ahead of it and
// its estimate, as in "no builder of el9-aarch64 is online; 3 tasks
// ahead" or "3 tasks are ahead of it on el9-x86_64; starts in about 12m".
func waitingWhy(p QueuePlatform, e *ETA) string {
	why := waits(p, e)
	if s := e.Estimate(task.Pending); s != "" {
		why += "; " + s
	}
	return why
}

// waits is waitingWhy without the estimate.
func waits(p QueuePlatform, e *ETA) string {
	var why []string
	ahead := int64(-1)
	if e != nil && e.Ahead != nil {
		ahead = *e.Ahead
	}
	switch {
	case len(p.Blocked) > 0:
		why = append(why, p.Why)
		switch {
		case ahead == 0:
			why = append(why, "next in line")
		case ahead == 1:
			why = append(why, "1 task ahead")
		case ahead > 1:
			why = append(why, fmt.Sprintf("%d tasks ahead", ahead))
		}
	case ahead == 1:
		why = append(why, fmt.Sprintf("1 task is ahead of it on %s", p.Platform))
	case ahead > 1:
		why = append(why, fmt.Sprintf("%d tasks are ahead of it on %s", ahead, p.Platform))
	case ahead == 0:
		why = append(why, "next in line")
	default:
		why = append(why, p.Why)
	}
	return strings.Join(why, "; ")
}
