package janitor

import (
	"strings"
	"testing"

	"github.com/kiln-build/kiln/riverjob"
)

// submitted plays kiln submit for a job submitted age ago (a Postgres
// interval) with its validate River job, and returns both ids.
func (b *bundle) submitted(t *testing.T, age string) (jobID, riverJobID int64) {
	t.Helper()
	b.scan(t, `INSERT INTO kiln.job (bucket, submission_key, submitted_at) VALUES ('devel', gen_random_uuid()::text, now() - $1::interval)
		RETURNING id`, []any{age}, &jobID)
	res, err := b.river.Insert(b.ctx, riverjob.ValidateArgs{JobID: jobID}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return jobID, res.Job.ID
}

// liveValidateJobs counts the job's validate River jobs waiting for the
// splitter.
func (b *bundle) liveValidateJobs(t *testing.T, jobID int64) int {
	t.Helper()
	var n int
	b.scan(t, `SELECT count(*) FROM river.river_job WHERE kind = 'validate' AND args->>'job_id' = $1::bigint::text AND state = 'available'`,
		[]any{jobID}, &n)
	return n
}

func TestStuckValidationIsRequeuedThenGivenUp(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.MaxRevalidate = 2
	b := setup(t, cfg)
	discarded, discardedRJ := b.submitted(t, "1 hour")
	b.exec(t, `UPDATE river.river_job SET state = 'discarded', attempt = 10, finalized_at = now(),
		errors = ARRAY['{"attempt": 10, "error": "connection refused", "at": "2025-01-01T00:00:00Z"}'::jsonb] WHERE id = $1`, discardedRJ)
	dead, deadRJ := b.submitted(t, "1 hour") // its splitter died while validating
	b.exec(t, `UPDATE river.river_job SET state = 'running', attempt = 1, attempted_at = now() - interval '1 hour' WHERE id = $1`, deadRJ)
	missing, missingRJ := b.submitted(t, "1 hour") // River's cleaner deleted it, or psql never made one
	b.exec(t, `DELETE FROM river.river_job WHERE id = $1`, missingRJ)
	waiting, _ := b.submitted(t, "1 hour")       // the splitter is just busy
	fresh, freshRJ := b.submitted(t, "1 second") // too young to judge
	b.exec(t, `UPDATE river.river_job SET state = 'discarded', finalized_at = now() WHERE id = $1`, freshRJ)

	c := b.round(t, Upkeep)
	if c.ValidationsRequeued != 3 || c.JobsInvalidated != 0 {
		t.Fatalf("counts %+v, want 3 validations requeued", c)
	}
	for _, job := range []int64{discarded, dead, missing} {
		if n := b.liveValidateJobs(t, job); n != 1 {
			t.Fatalf("job %d has %d waiting validate River jobs, want 1", job, n)
		}
	}
	var deadState string
	b.scan(t, `SELECT state::text FROM river.river_job WHERE id = $1`, []any{deadRJ}, &deadState)
	if deadState != "cancelled" {
		t.Fatalf("the dead splitter's River job is %s, want cancelled", deadState)
	}
	if n := b.liveValidateJobs(t, waiting); n != 1 {
		t.Fatalf("the waiting job got another River job: %d", n)
	}
	if n := b.liveValidateJobs(t, fresh); n != 0 {
		t.Fatalf("the fresh job got a River job before the horizon: %d", n)
	}
	ev := b.events(t, "janitor.revalidate")
	if len(ev) != 3 {
		t.Fatalf("%d janitor.revalidate events, want 3: %v", len(ev), ev)
	}
	if d := ev[0]["detail"].(map[string]any); ev[0]["actor"] != b.role || d["action"] != "inserted" || d["last_error"] != "connection refused" {
		t.Fatalf("event %v", ev[0])
	}

	// The splitter keeps failing on job discarded: after MaxRevalidate new
	// River jobs it is marked invalid with the last error, not retried
	// forever.
	failAgain := func() {
		t.Helper()
		b.exec(t, `UPDATE river.river_job SET state = 'discarded', finalized_at = now(),
			errors = ARRAY['{"attempt": 10, "error": "parser crashed", "at": "2025-01-01T00:00:00Z"}'::jsonb]
			WHERE kind = 'validate' AND args->>'job_id' = $1::bigint::text AND state = 'available'`, discarded)
	}
	failAgain()
	if c := b.round(t, Upkeep); c.ValidationsRequeued != 1 || c.JobsInvalidated != 0 {
		t.Fatalf("second round %+v, want one more try", c)
	}
	failAgain()
	if c := b.round(t, Upkeep); c.ValidationsRequeued != 0 || c.JobsInvalidated != 1 {
		t.Fatalf("third round %+v, want the job given up", c)
	}
	var status, reason string
	b.scan(t, `SELECT status, reason FROM kiln.job WHERE id = $1`, []any{discarded}, &status, &reason)
	if status != "invalid" || !strings.Contains(reason, "3 validate River jobs") || !strings.Contains(reason, "parser crashed") {
		t.Fatalf("job %d is %s (%q), want invalid with the last error", discarded, status, reason)
	}
	if c := b.round(t, Upkeep); c.ValidationsRequeued != 0 || c.JobsInvalidated != 0 {
		t.Fatalf("a round after everything was handled: %+v", c)
	}
}
