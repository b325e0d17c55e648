package janitor

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/kiln-build/kiln/riverjob"
)

// takeOverValidations makes the validate River jobs of splitters that died
// in the middle of a validation available again, so that a surviving or
// restarted splitter validates the job within a round instead of after
// ValidateHorizon. A splitter is dead when no session of a kiln_splitter
// member holds the lock of its River client ID (riverjob.RescueOrphanedTx;
// docs/reliability.md). A validate River job that had used its last
// attempt is discarded instead, and repairStuckValidation deals with its
// job. Each is recorded as a janitor.takeover event.
func (j *Janitor) takeOverValidations(ctx context.Context, c *Counts) error {
	return j.inTx(ctx, c, func(tx pgx.Tx, d *Counts) error {
		taken, err := riverjob.RescueOrphanedTx(ctx, tx, riverjob.KindValidate, riverjob.SplitterIDPrefix, "kiln_splitter",
			"its kiln-splitter died in the middle of the validation")
		if err != nil {
			return err
		}
		for _, o := range taken {
			if err := record(ctx, tx, event{Kind: "janitor.takeover", JobID: o.JobID, Detail: map[string]any{
				"river_job_id": o.ID, "river_job_state": o.State, "client": o.Client, "attempt": o.Attempt,
				"reason": "the splitter working the validation holds no lock: it died"}}); err != nil {
				return err
			}
			j.log.Info("took over the validation of a dead splitter", "job", o.JobID, "river_job", o.ID, "client", o.Client, "state", o.State)
		}
		d.ValidationsTakenOver += len(taken)
		return nil
	})
}
