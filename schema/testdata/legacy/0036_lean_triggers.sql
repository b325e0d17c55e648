-- 0036_lean_triggers.sql: the lean data path's triggers (docs/scaling.md,
-- "The data path"). No table changes: the change triggers of tasks, jobs
-- and attempts fire only for the changes they record (WHEN clauses in
-- schema/current/30_triggers.sql; an insert has a trigger of its own), the
-- report and publication triggers only for a job's final status, and
-- kiln.job_status_from_tasks is PL/pgSQL, planned once per session.
SELECT 1;

-- What 0036 changed in schema/current, as it was when 0036 landed (the
-- legacy layout kept every function and trigger in a numbered migration).

CREATE OR REPLACE FUNCTION kiln.job_status_from_tasks(p_job_id bigint)
 RETURNS text
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    RETURN (SELECT CASE
        WHEN count(*) = 0 THEN NULL
        WHEN count(*) FILTER (WHERE status = 'building') > 0 THEN 'building'
        WHEN count(*) FILTER (WHERE status = 'pending') > 0 THEN
            CASE WHEN count(*) FILTER (WHERE status NOT IN ('pending', 'skipped')) > 0
                 THEN 'building' ELSE 'queued' END
        WHEN count(*) FILTER (WHERE status NOT IN ('succeeded', 'skipped')) = 0 THEN 'succeeded'
        WHEN count(*) FILTER (WHERE status IN ('failed', 'timed_out', 'lost')) = 0
             AND count(*) FILTER (WHERE status = 'succeeded') = 0 THEN 'cancelled'
        WHEN count(*) FILTER (WHERE status = 'succeeded') = 0 THEN 'failed'
        ELSE 'partially_failed'
    END
    FROM kiln.task WHERE job_id = p_job_id);
END $function$;
COMMENT ON FUNCTION kiln.job_status_from_tasks(bigint) IS 'The job status its tasks imply: building while any builds (or some finished and some wait), queued while all wait, succeeded when all succeeded or were skipped, cancelled when all that did not succeed or skip were cancelled and none succeeded, failed when none succeeded, else partially_failed. NULL without tasks.';

CREATE OR REPLACE TRIGGER task_inserted AFTER INSERT ON kiln.task
    FOR EACH ROW EXECUTE FUNCTION kiln.task_changed();

CREATE OR REPLACE TRIGGER task_changed AFTER UPDATE ON kiln.task
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status OR OLD.attempt IS DISTINCT FROM NEW.attempt)
    EXECUTE FUNCTION kiln.task_changed();

CREATE OR REPLACE TRIGGER job_inserted AFTER INSERT ON kiln.job
    FOR EACH ROW EXECUTE FUNCTION kiln.job_changed();

CREATE OR REPLACE TRIGGER job_changed AFTER UPDATE ON kiln.job
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION kiln.job_changed();

CREATE OR REPLACE TRIGGER attempt_inserted AFTER INSERT ON kiln.attempt
    FOR EACH ROW EXECUTE FUNCTION kiln.attempt_changed();

CREATE OR REPLACE TRIGGER attempt_changed AFTER UPDATE ON kiln.attempt
    FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status) EXECUTE FUNCTION kiln.attempt_changed();

CREATE OR REPLACE TRIGGER job_request_publication AFTER UPDATE OF status ON kiln.job
    FOR EACH ROW WHEN (NEW.status IN ('succeeded', 'failed', 'partially_failed', 'cancelled') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION kiln.job_request_publication();

CREATE OR REPLACE TRIGGER job_request_report AFTER UPDATE OF status ON kiln.job
    FOR EACH ROW WHEN (NEW.status IN ('succeeded', 'failed', 'partially_failed', 'cancelled', 'invalid') AND OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION kiln.job_request_report();

-- One implementation of resubmitting (kiln.resubmit_for), as schema/current
-- has it; no table changes.

-- Resubmitting (kiln resubmit and kiln-web): the jobs the person could
-- read under row-level security: not private, their own, in a bucket
-- granted to them, or they are an admin.
CREATE OR REPLACE FUNCTION kiln.resubmit_for(p_job_id bigint, p_person name, p_platforms text[], p_submission_key text)
 RETURNS bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    j kiln.job%ROWTYPE;
    new_id bigint;
BEGIN
    SELECT * INTO j FROM kiln.job WHERE id = p_job_id;
    IF NOT FOUND OR NOT (
        j.submitter = p_person
        OR pg_catalog.pg_has_role(p_person, 'kiln_admin', 'MEMBER')
        OR NOT EXISTS (SELECT 1 FROM kiln.bucket b WHERE b.name = j.bucket AND b.private)
        OR EXISTS (SELECT 1 FROM kiln.bucket_grant g JOIN pg_catalog.pg_roles r ON r.rolname = g.grantee
                   WHERE g.bucket = j.bucket AND pg_catalog.pg_has_role(p_person, r.oid, 'MEMBER'))) THEN
        RAISE EXCEPTION 'job % does not exist or is not visible to you', p_job_id USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO kiln.job (bucket, platforms, priority, policy, note, options, submission_key, resubmit_of)
    VALUES (j.bucket, coalesce(p_platforms, j.platforms), j.priority, j.policy, j.note, j.options, p_submission_key, j.id)
    RETURNING id INTO new_id;
    IF p_person <> session_user THEN
        -- The insert trigger stamped session_user (the web's role); the job is the person's.
        UPDATE kiln.job SET submitter = p_person WHERE id = new_id;
    END IF;
    INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size)
    SELECT new_id, p.seq, p.file_name, p.format, p.blob_sha256, p.size FROM kiln.package p WHERE p.job_id = p_job_id;
    INSERT INTO kiln.package_file (job_id, seq, file_name, blob_sha256, size)
    SELECT new_id, f.seq, f.file_name, f.blob_sha256, f.size FROM kiln.package_file f WHERE f.job_id = p_job_id;
    RETURN new_id;
END $function$;
COMMENT ON FUNCTION kiln.resubmit_for(bigint, name, text[], text) IS 'The one implementation of resubmitting: a new job for p_person with job p_job_id''s packages (the same blobs), bucket, priority, policy, note and options, and its platforms unless p_platforms is given, if p_person may read it (the rule of the policies job_read and job_read_farm); "does not exist or is not visible to you" otherwise. Called only by kiln.resubmit (for session_user) and kiln.web_resubmit (for the person kiln-web authenticated); the caller inserts the validate River job in the same transaction.';
REVOKE EXECUTE ON FUNCTION kiln.resubmit_for(bigint, name, text[], text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION kiln.resubmit(p_job_id bigint, p_platforms text[], p_submission_key text)
 RETURNS bigint
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
RETURN kiln.resubmit_for(p_job_id, SESSION_USER, p_platforms, p_submission_key);
COMMENT ON FUNCTION kiln.resubmit(bigint, text[], text) IS 'kiln resubmit: job p_job_id submitted again by session_user with the same packages (kiln.resubmit_for), for p_platforms when not NULL; returns the new job. The caller inserts the validate River job in the same transaction.';
REVOKE EXECUTE ON FUNCTION kiln.resubmit(bigint, text[], text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION kiln.web_resubmit(p_person name, p_job_id bigint, p_submission_key text)
 RETURNS bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    new_id bigint;
BEGIN
    PERFORM kiln.web_check_person(p_person, 'kiln_submitter');
    new_id := kiln.resubmit_for(p_job_id, p_person, NULL, p_submission_key);
    INSERT INTO kiln.event (kind, job_id, detail)
    VALUES ('web.resubmit', new_id, pg_catalog.jsonb_build_object('person', p_person, 'resubmit_of', p_job_id));
    RETURN new_id;
END $function$;
COMMENT ON FUNCTION kiln.web_resubmit(name, bigint, text) IS 'Submits job p_job_id again for p_person (whom kiln-web authenticated with Kerberos) with the same packages, if p_person may read it (as kiln resubmit); the new job belongs to p_person. "does not exist or is not visible to you" otherwise. kiln_web only; the caller inserts the validate River job in the same transaction.';
