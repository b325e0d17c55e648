package janitor

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/jobs"
)

// scheduleEnvironmentRefreshes queues an environment River job for every
// platform with an environment spec (kiln.platform_environment) that has no
// environment yet, or whose environment is older than the spec's max_age.
// A platform whose environment job already waits or runs gets no second one
// (jobs.EnvironmentArgs is unique by platform).
func (j *Janitor) scheduleEnvironmentRefreshes(ctx context.Context, c *Counts) error {
	rows, err := j.db.Query(ctx, `SELECT pe.platform FROM kiln.platform_environment pe
		LEFT JOIN kiln.environment e ON e.id = pe.environment
		WHERE e.id IS NULL OR e.created_at + pe.max_age < now() ORDER BY pe.platform`)
	if err != nil {
		return fmt.Errorf("finding environments to refresh: %w", err)
	}
	platforms, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return fmt.Errorf("finding environments to refresh: %w", err)
	}
	for _, p := range platforms {
		res, err := j.river.Insert(ctx, jobs.EnvironmentArgs{Platform: p}, nil)
		if err != nil {
			return fmt.Errorf("queueing the environment of platform %s: %w", p, err)
		}
		if !res.UniqueSkippedAsDuplicate {
			c.EnvironmentsQueued++
			j.log.Info("queued a new environment", "platform", p, "river_job_id", res.Job.ID)
		}
	}
	return nil
}
