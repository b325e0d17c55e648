-- 0017_hardening.sql: closes, by construction, the holes an attack on the
-- database found (docs/security.md).
--
-- 1. Name resolution. A function with SET search_path = pg_catalog, kiln
--    still searches pg_temp *first* for relations and types, because
--    PostgreSQL puts the session's temporary schema in front of a path that
--    does not name it. A person could create pg_temp.name (a domain whose
--    CHECK calls their own function) and have kiln.cancel_task_for, which
--    declares `who name`, run that function as kiln_owner. Every function
--    in schema kiln now runs with
--        search_path = pg_catalog, kiln, pg_temp
--    pg_catalog first (built-ins cannot be shadowed), kiln next, pg_temp
--    last (and PostgreSQL never searches pg_temp for functions or
--    operators). The bodies name kiln's and River's objects schema-
--    qualified, so nothing they use can resolve to pg_temp.
--
--    Left without SET, on purpose: the five SQL-language helpers with
--    SQL-standard bodies (RETURN ...), which PostgreSQL parses when the
--    function is created and stores resolved to object ids (prosqlbody): a
--    call looks up no name at all, whatever the caller's search_path, so a
--    SET would only add a configuration change and a search-path
--    recomputation to every call, and they are called for every row a
--    policy or CHECK constraint looks at. (Inlining is not at stake:
--    PostgreSQL inlines none of them, SET or not: valid_name and
--    safe_file_name are STRICT with bodies that are not, and the other
--    three hold EXISTS subqueries. The comment in 0005 expected otherwise.)
--    None is SECURITY DEFINER. schema/search_path_test.go
--    enumerates every function and knows each exception and why;
--    docs/security.md has the measurement.
--
-- 2. Private data. Every event that names a task names its job too (the
--    event trigger takes it from the task), and people read an event only
--    with its job; attempt.status events used to carry no job id, so any
--    reader saw the reasons of tasks in private buckets. NOTIFY payloads
--    (anyone may LISTEN) carry ids only, no status: listeners re-read what
--    they follow with their own rights. Cancelling or resubmitting a job or
--    task a person may not see answers "does not exist or is not yours",
--    the same as for one that does not exist.

------------------------------------------------------------------------------
-- Name resolution: every function's search_path ends in pg_temp
------------------------------------------------------------------------------

ALTER FUNCTION kiln.job_stamp_submitter() SET search_path = pg_catalog, kiln, pg_temp;
ALTER FUNCTION kiln.job_status_from_tasks(bigint) SET search_path = pg_catalog, kiln, pg_temp;
ALTER FUNCTION kiln.refresh_job_status(bigint) SET search_path = pg_catalog, kiln, pg_temp;
ALTER FUNCTION kiln.builder_changed() SET search_path = pg_catalog, kiln, pg_temp;
ALTER FUNCTION kiln.log_chunk_added() SET search_path = pg_catalog, kiln, pg_temp;
ALTER FUNCTION kiln.cancel_job(bigint) SET search_path = pg_catalog, kiln, pg_temp;
ALTER FUNCTION kiln.cancel_task(bigint) SET search_path = pg_catalog, kiln, pg_temp;
ALTER FUNCTION kiln.lock_job(bigint) SET search_path = pg_catalog, kiln, pg_temp;
ALTER FUNCTION kiln.own_builders() SET search_path = pg_catalog, kiln, pg_temp;
ALTER FUNCTION kiln.web_cancel_job(name, bigint) SET search_path = pg_catalog, kiln, pg_temp;
ALTER FUNCTION kiln.web_cancel_task(name, bigint) SET search_path = pg_catalog, kiln, pg_temp;
ALTER FUNCTION kiln.web_set_builder_enabled(name, text, boolean) SET search_path = pg_catalog, kiln, pg_temp;
ALTER FUNCTION kiln.blob_stamp() SET search_path = pg_catalog, kiln, pg_temp;
ALTER FUNCTION kiln.blob_chunk_guard() SET search_path = pg_catalog, kiln, pg_temp;
ALTER FUNCTION kiln.blob_stored_here(bytea) SET search_path = pg_catalog, kiln, pg_temp;
-- Its body read pg_roles unqualified, so a builder with a temporary view
-- named pg_roles could pose as the owner and skip the task protocol. The
-- guard is rewritten from its current definition with that one name
-- qualified, rather than re-created from a copy here, so that whatever an
-- earlier migration made of the guard stays as it is.
ALTER FUNCTION kiln.task_transition_guard() SET search_path = pg_catalog, kiln, pg_temp;
DO $$
DECLARE
    def text := pg_catalog.pg_get_functiondef('kiln.task_transition_guard()'::pg_catalog.regprocedure);
BEGIN
    IF pg_catalog.strpos(def, 'FROM pg_roles ') > 0 THEN
        EXECUTE pg_catalog.replace(def, 'FROM pg_roles ', 'FROM pg_catalog.pg_roles ');
    END IF;
END $$;

------------------------------------------------------------------------------
-- Events: the job of every event about a task, readable only with the job
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION kiln.event_guard() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    task_job bigint;
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.actor := session_user;
        NEW.at := pg_catalog.clock_timestamp();
        -- An event about a task is an event about its job, whatever the
        -- writer sent: row-level security shows it only with the job.
        IF NEW.task_id IS NOT NULL THEN
            SELECT t.job_id INTO task_job FROM kiln.task t WHERE t.id = NEW.task_id;
            IF FOUND THEN
                NEW.job_id := task_job;
            END IF;
        END IF;
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'kiln.event is append-only: % is not allowed', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END $$;
COMMENT ON FUNCTION kiln.event_guard() IS 'Keeps kiln.event append-only, stamps the real actor (session_user) and time on every insert, and sets job_id from task_id when the event names a task (so that row-level security shows it only with its job).';

-- The events written before this migration: attempt.status events named no
-- job. Filling in a fact they lacked is the one change ever made to stored
-- events (the guard refuses updates, so it is set aside for this statement).
ALTER TABLE kiln.event DISABLE TRIGGER event_guard_change;
UPDATE kiln.event e SET job_id = t.job_id
FROM kiln.task t
WHERE e.task_id = t.id AND e.job_id IS DISTINCT FROM t.job_id;
ALTER TABLE kiln.event ENABLE TRIGGER event_guard_change;

ALTER POLICY event_read ON kiln.event
    USING ((job_id IS NULL AND task_id IS NULL) OR EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job_id));
COMMENT ON POLICY event_read ON kiln.event IS 'Events of a job (every event naming a task names its job) are readable with the job, while it exists; events about no job or task (builders, janitor rounds) by everyone.';

CREATE OR REPLACE FUNCTION kiln.attempt_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.status IS NOT DISTINCT FROM OLD.status THEN
        RETURN NULL;
    END IF;
    INSERT INTO kiln.event (kind, job_id, task_id, attempt, builder, old_status, new_status, detail)
    VALUES ('attempt.status', (SELECT t.job_id FROM kiln.task t WHERE t.id = NEW.task_id), NEW.task_id, NEW.attempt, NEW.builder,
            CASE WHEN TG_OP = 'UPDATE' THEN OLD.status END, NEW.status,
            coalesce(pg_catalog.jsonb_build_object('reason', NEW.reason), '{}'));
    RETURN NULL;
END $$;
COMMENT ON FUNCTION kiln.attempt_changed() IS 'After an attempt starts or changes status: records an attempt.status event, which names the job (so it is readable only with the job).';

-- NOTIFY payloads: ids only. LISTEN needs no privilege, so a payload is
-- readable by anyone logged in; it says which job or task to read again,
-- never what happened to it.
CREATE OR REPLACE FUNCTION kiln.task_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO kiln.event (kind, job_id, task_id, new_status, detail)
        VALUES ('task.status', NEW.job_id, NEW.id, NEW.status,
                pg_catalog.jsonb_build_object('platform', NEW.platform) || coalesce(pg_catalog.jsonb_build_object('reason', NEW.reason), '{}'));
    ELSIF NEW.status IS DISTINCT FROM OLD.status OR NEW.attempt IS DISTINCT FROM OLD.attempt THEN
        INSERT INTO kiln.event (kind, job_id, task_id, attempt, builder, old_status, new_status, detail)
        VALUES ('task.status', NEW.job_id, NEW.id, NEW.attempt, coalesce(NEW.builder, OLD.builder), OLD.status, NEW.status,
                pg_catalog.jsonb_build_object('platform', NEW.platform) || coalesce(pg_catalog.jsonb_build_object('reason', NEW.reason), '{}'));
    ELSE
        RETURN NULL;
    END IF;
    PERFORM kiln.refresh_job_status(NEW.job_id);
    PERFORM pg_catalog.pg_notify('kiln_task', pg_catalog.json_build_object('job', NEW.job_id, 'task', NEW.id)::text);
    RETURN NULL;
END $$;
COMMENT ON FUNCTION kiln.task_changed() IS 'After a task is inserted or changes status or attempt: records an event, recomputes the job status and sends NOTIFY kiln_task with the job and task ids (no status: listeners read the task with their own rights).';

CREATE OR REPLACE FUNCTION kiln.job_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO kiln.event (kind, job_id, new_status, detail)
        VALUES ('job.status', NEW.id, NEW.status, pg_catalog.jsonb_build_object('bucket', NEW.bucket, 'submitter', NEW.submitter));
    ELSIF NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO kiln.event (kind, job_id, old_status, new_status, detail)
        VALUES ('job.status', NEW.id, OLD.status, NEW.status, coalesce(pg_catalog.jsonb_build_object('reason', NEW.reason), '{}'));
    ELSE
        RETURN NULL;
    END IF;
    PERFORM pg_catalog.pg_notify('kiln_job', pg_catalog.json_build_object('job', NEW.id)::text);
    RETURN NULL;
END $$;
COMMENT ON FUNCTION kiln.job_changed() IS 'After a job is inserted or changes status: records an event and sends NOTIFY kiln_job with the job id (no status: listeners read the job with their own rights).';

------------------------------------------------------------------------------
-- Acting for a person: nothing about what they may not see
------------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION kiln.web_check_person(p_person name, p_group name) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
BEGIN
    IF NOT pg_catalog.pg_has_role(session_user, 'kiln_web', 'MEMBER') THEN
        RAISE EXCEPTION 'only the web interface (a member of kiln_web) may act for a person'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles r WHERE r.rolname = p_person AND r.rolcanlogin AND NOT r.rolsuper) THEN
        RAISE EXCEPTION '% has no login role here (superusers cannot act through the web)', p_person
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF pg_catalog.pg_has_role(p_person, 'kiln_web', 'MEMBER') OR NOT pg_catalog.pg_has_role(p_person, p_group, 'MEMBER') THEN
        RAISE EXCEPTION '% is not a member of %', p_person, p_group
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;

-- The same answer for a job that does not exist and for someone else's:
-- the message names no owner, and the code (no_data_found) is the same, so
-- nothing tells a private job from a missing one.
CREATE OR REPLACE FUNCTION kiln.cancel_job_for(p_job_id bigint, p_person name, p_why text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    j kiln.job%ROWTYPE;
BEGIN
    SELECT * INTO j FROM kiln.job WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND OR (j.submitter <> p_person AND NOT pg_catalog.pg_has_role(p_person, 'kiln_admin', 'MEMBER')) THEN
        RAISE EXCEPTION 'job % does not exist or is not yours', p_job_id USING ERRCODE = 'no_data_found',
            HINT = 'Only its submitter or an admin may cancel a job.';
    END IF;
    IF j.finished_at IS NOT NULL THEN
        RAISE EXCEPTION 'job % has already finished (%)', p_job_id, j.status USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    UPDATE river.river_job SET state = 'cancelled', finalized_at = pg_catalog.now()
    WHERE id IN (SELECT t.river_job_id FROM kiln.task t WHERE t.job_id = p_job_id AND t.status = 'pending' AND t.river_job_id IS NOT NULL)
      AND state IN ('available', 'scheduled', 'retryable', 'pending');
    UPDATE kiln.attempt a SET status = 'cancelled', finished_at = pg_catalog.now(), reason = p_why
    FROM kiln.task t
    WHERE t.job_id = p_job_id AND t.status = 'building' AND a.task_id = t.id AND a.attempt = t.attempt AND a.status = 'building';
    UPDATE kiln.task SET status = 'cancelled', builder = NULL, finished_at = pg_catalog.now(), reason = p_why
    WHERE job_id = p_job_id AND status IN ('pending', 'building');
    UPDATE kiln.job SET cancelled_by = p_person WHERE id = p_job_id;
    IF j.status = 'submitted' THEN
        -- Not split yet: the splitter will find it cancelled and leave it.
        UPDATE kiln.job SET status = 'cancelled', finished_at = pg_catalog.now(), reason = p_why WHERE id = p_job_id;
    END IF;
    RETURN (SELECT j2.status FROM kiln.job j2 WHERE j2.id = p_job_id);
END $$;
COMMENT ON FUNCTION kiln.cancel_job_for(bigint, name, text) IS 'Cancels a job''s unfinished tasks, their open attempts and their River jobs for p_person (its submitter or a kiln_admin member), with p_why as the reason; "does not exist or is not yours" otherwise. Called only by kiln.cancel_job and kiln.web_cancel_job, which establish who p_person is; executable by no role directly.';

CREATE OR REPLACE FUNCTION kiln.cancel_task_for(p_task_id bigint, p_person name, p_why text) RETURNS kiln.task
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    t kiln.task%ROWTYPE;
    who pg_catalog.name;
BEGIN
    SELECT * INTO t FROM kiln.task WHERE id = p_task_id;
    IF FOUND THEN
        -- Lock order: job first, then task (as everywhere).
        SELECT j.submitter INTO who FROM kiln.job j WHERE j.id = t.job_id FOR UPDATE;
    END IF;
    IF NOT FOUND OR (who <> p_person AND NOT pg_catalog.pg_has_role(p_person, 'kiln_admin', 'MEMBER')) THEN
        RAISE EXCEPTION 'task % does not exist or is not yours', p_task_id USING ERRCODE = 'no_data_found',
            HINT = 'Only the job''s submitter or an admin may cancel a task.';
    END IF;
    SELECT * INTO t FROM kiln.task WHERE id = p_task_id FOR UPDATE;
    IF t.finished_at IS NOT NULL THEN
        RAISE EXCEPTION 'task % has already finished (%)', p_task_id, t.status USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF t.river_job_id IS NOT NULL AND t.status = 'pending' THEN
        UPDATE river.river_job SET state = 'cancelled', finalized_at = pg_catalog.now()
        WHERE id = t.river_job_id AND state IN ('available', 'scheduled', 'retryable', 'pending');
    END IF;
    UPDATE kiln.attempt SET status = 'cancelled', finished_at = pg_catalog.now(), reason = p_why
    WHERE task_id = p_task_id AND attempt = t.attempt AND status = 'building';
    UPDATE kiln.task SET status = 'cancelled', builder = NULL, finished_at = pg_catalog.now(), reason = p_why
    WHERE id = p_task_id;
    RETURN t;
END $$;
COMMENT ON FUNCTION kiln.cancel_task_for(bigint, name, text) IS 'Cancels one unfinished task, its open attempt and its River job for p_person (the job''s submitter or a kiln_admin member), with p_why as the reason; returns the task as it was before; "does not exist or is not yours" otherwise. Called only by kiln.cancel_task and kiln.web_cancel_task; executable by no role directly.';

-- Resubmitting through the web: the jobs the person could read, as kiln
-- resubmit (which reads the job under row-level security as the person):
-- not private, their own, in a bucket granted to them, or they are an admin.
CREATE OR REPLACE FUNCTION kiln.web_resubmit(p_person name, p_job_id bigint, p_submission_key text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln, pg_temp AS $$
DECLARE
    j kiln.job%ROWTYPE;
    new_id bigint;
BEGIN
    PERFORM kiln.web_check_person(p_person, 'kiln_submitter');
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
    VALUES (j.bucket, j.platforms, j.priority, j.policy, j.note, j.options, p_submission_key, j.id)
    RETURNING id INTO new_id;
    -- The insert trigger stamped session_user (the web's role); the job is the person's.
    UPDATE kiln.job SET submitter = p_person WHERE id = new_id;
    INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size)
    SELECT new_id, p.seq, p.file_name, p.format, p.blob_sha256, p.size FROM kiln.package p WHERE p.job_id = p_job_id;
    INSERT INTO kiln.package_file (job_id, seq, file_name, blob_sha256, size)
    SELECT new_id, f.seq, f.file_name, f.blob_sha256, f.size FROM kiln.package_file f WHERE f.job_id = p_job_id;
    INSERT INTO kiln.event (kind, job_id, detail)
    VALUES ('web.resubmit', new_id, pg_catalog.jsonb_build_object('person', p_person, 'resubmit_of', p_job_id));
    RETURN new_id;
END $$;
COMMENT ON FUNCTION kiln.web_resubmit(name, bigint, text) IS 'Submits job p_job_id again for p_person (whom kiln-web authenticated with Kerberos) with the same packages, if p_person may read it (as kiln resubmit); the new job belongs to p_person. "does not exist or is not visible to you" otherwise. kiln_web only; the caller inserts the validate River job in the same transaction.';
