-- Current state (docs/schema.md, "Migrations"): applied by schema.Migrate
-- after the numbered migrations, in one transaction, on every migrate.
-- Edit the definition here; never copy it into a numbered migration.
-- Triggers (CREATE OR REPLACE TRIGGER).

-- The owner's functions and triggers (current_user kiln_owner) write events
-- without actor or time, which the columns' defaults stamp (session_user,
-- clock_timestamp()) as the guard would, and with the job of the task they
-- name: the guard is not called for them (a PL/pgSQL call a row), unless an
-- event names a task and no job. Everyone else's events always pass it.
CREATE OR REPLACE TRIGGER event_guard_insert BEFORE INSERT ON kiln.event
    FOR EACH ROW WHEN (CURRENT_USER <> 'kiln_owner' OR NEW.task_id IS NOT NULL AND NEW.job_id IS NULL)
    EXECUTE FUNCTION kiln.event_guard();

CREATE OR REPLACE TRIGGER event_guard_change BEFORE UPDATE OR DELETE ON kiln.event
    FOR EACH ROW EXECUTE FUNCTION kiln.event_guard();

CREATE OR REPLACE TRIGGER event_guard_truncate BEFORE TRUNCATE ON kiln.event
    FOR EACH STATEMENT EXECUTE FUNCTION kiln.event_guard();

CREATE OR REPLACE TRIGGER job_stamp_submitter BEFORE INSERT ON kiln.job
    FOR EACH ROW EXECUTE FUNCTION kiln.job_stamp_submitter();

-- The change triggers of jobs and attempts fire only for the changes they
-- record: an update that leaves the status as it was, such as a River job
-- link or a log batch's byte count, does not even call the function (a
-- WHEN clause costs the executor next to nothing; a PL/pgSQL call with its
-- own search_path costs tens of microseconds). An insert has a trigger of
-- its own, as a WHEN clause of an insert trigger cannot name OLD.
--
-- The task triggers, and the attempts' insert trigger, are statement-level
-- with transition tables: a statement that takes, finishes or cancels many
-- tasks records their events and recomputes their jobs once, set-based,
-- not once per row. A trigger with transition tables can have no WHEN
-- clause, so an update of tasks that changes no status or attempt (a
-- heartbeat, a River job link) calls kiln.task_changed once per statement,
-- which finds nothing to do and stops.
CREATE OR REPLACE TRIGGER task_inserted AFTER INSERT ON kiln.task
    REFERENCING NEW TABLE AS new_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION kiln.task_changed();

CREATE OR REPLACE TRIGGER task_changed AFTER UPDATE ON kiln.task
    REFERENCING OLD TABLE AS old_tasks NEW TABLE AS new_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION kiln.task_changed();

CREATE OR REPLACE TRIGGER job_inserted AFTER INSERT ON kiln.job
    REFERENCING NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION kiln.job_changed();

CREATE OR REPLACE TRIGGER job_changed AFTER UPDATE ON kiln.job
    REFERENCING OLD TABLE AS old_jobs NEW TABLE AS new_jobs
    FOR EACH STATEMENT EXECUTE FUNCTION kiln.job_changed();

CREATE OR REPLACE TRIGGER attempt_inserted AFTER INSERT ON kiln.attempt
    REFERENCING NEW TABLE AS new_attempts
    FOR EACH STATEMENT EXECUTE FUNCTION kiln.attempt_inserted();

CREATE OR REPLACE TRIGGER attempt_changed AFTER UPDATE ON kiln.attempt
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION kiln.attempt_changed();

-- A builder's heartbeat (heartbeat_at, and state online again) is the
-- common update of kiln.builder: it does not call the function.
CREATE OR REPLACE TRIGGER builder_inserted AFTER INSERT ON kiln.builder
    FOR EACH ROW EXECUTE FUNCTION kiln.builder_changed();

CREATE OR REPLACE TRIGGER builder_changed AFTER UPDATE ON kiln.builder
    FOR EACH ROW WHEN (OLD.state IS DISTINCT FROM NEW.state OR OLD.enabled IS DISTINCT FROM NEW.enabled
                       OR OLD.draining IS DISTINCT FROM NEW.draining)
    EXECUTE FUNCTION kiln.builder_changed();

CREATE OR REPLACE TRIGGER log_chunk_added AFTER INSERT ON kiln.log_chunk
    FOR EACH ROW EXECUTE FUNCTION kiln.log_chunk_added();

CREATE OR REPLACE TRIGGER blob_stamp BEFORE INSERT ON kiln.blob
    FOR EACH ROW EXECUTE FUNCTION kiln.blob_stamp();

CREATE OR REPLACE TRIGGER blob_chunk_guard BEFORE INSERT ON kiln.blob_chunk
    FOR EACH ROW EXECUTE FUNCTION kiln.blob_chunk_guard();

-- The guard lets the owner (the protocol functions) make any move: it is
-- not even called for them.
CREATE OR REPLACE TRIGGER task_transition_guard BEFORE INSERT OR UPDATE ON kiln.task
    FOR EACH ROW WHEN (CURRENT_USER <> 'kiln_owner') EXECUTE FUNCTION kiln.task_transition_guard();

CREATE OR REPLACE TRIGGER quota_guard BEFORE INSERT OR UPDATE OR DELETE ON kiln.quota
    FOR EACH ROW EXECUTE FUNCTION kiln.quota_guard();

CREATE OR REPLACE TRIGGER job_quota BEFORE INSERT ON kiln.job
    FOR EACH ROW EXECUTE FUNCTION kiln.job_quota();

CREATE OR REPLACE TRIGGER job_quota_person BEFORE UPDATE OF submitter ON kiln.job
    FOR EACH ROW WHEN (OLD.submitter IS DISTINCT FROM NEW.submitter) EXECUTE FUNCTION kiln.job_quota();

CREATE OR REPLACE TRIGGER blob_quota AFTER INSERT ON kiln.blob
    REFERENCING NEW TABLE AS new_blobs
    FOR EACH STATEMENT EXECUTE FUNCTION kiln.blob_quota();

CREATE OR REPLACE TRIGGER blob_chunk_within_size BEFORE INSERT ON kiln.blob_chunk
    FOR EACH ROW EXECUTE FUNCTION kiln.blob_chunk_within_size();

CREATE OR REPLACE TRIGGER river_job_quota AFTER INSERT ON river.river_job
    FOR EACH ROW WHEN (NEW.kind = 'validate') EXECUTE FUNCTION kiln.river_job_quota();

