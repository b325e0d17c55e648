-- 0008_web.sql: what the web interface needs.
--
-- 1. Actions on behalf of a person. kiln-web authenticates people with
--    Kerberos over HTTP (SPNEGO) and connects to the database as its own
--    login role, a member of kiln_web. session_user is therefore the web's
--    role, not the person's, and kiln.cancel_job (which checks session_user)
--    would refuse or misattribute. The functions below take the person's
--    role name as an argument and are executable by kiln_web only (EXECUTE
--    is revoked from PUBLIC here and granted in roles/kiln_web.sql). kiln-web
--    passes the name it derived from a verified Kerberos ticket, never one
--    the browser sends. Each function checks that the person may do the
--    action exactly as the direct path checks session_user, records the
--    person where the direct path records session_user (cancelled_by, the
--    reason, the new job's submitter) and writes a web.* event naming the
--    person; kiln.event.actor stays session_user (the web's role), so the
--    history says truthfully that kiln-web acted and for whom.
--    See docs/web.md for why this was chosen over logging in as the person.
--
-- 2. Indexes for the page queries at a million jobs.

------------------------------------------------------------------------------
-- Acting for a person
------------------------------------------------------------------------------

CREATE FUNCTION kiln.web_check_person(p_person name, p_group name) RETURNS void
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = pg_catalog, kiln AS $$
BEGIN
    IF NOT pg_has_role(session_user, 'kiln_web', 'MEMBER') THEN
        RAISE EXCEPTION 'only the web interface (a member of kiln_web) may act for a person'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = p_person AND rolcanlogin AND NOT rolsuper) THEN
        RAISE EXCEPTION '% has no login role here (superusers cannot act through the web)', p_person
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF pg_has_role(p_person, 'kiln_web', 'MEMBER') OR NOT pg_has_role(p_person, p_group, 'MEMBER') THEN
        RAISE EXCEPTION '% is not a member of %', p_person, p_group
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $$;
COMMENT ON FUNCTION kiln.web_check_person(name, name) IS 'Raises unless the session is kiln-web (member of kiln_web) and p_person is a login role (not a superuser, not a web role) that is a member of p_group. Used by the kiln.web_* functions.';

CREATE FUNCTION kiln.web_cancel_job(p_person name, p_job_id bigint) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln AS $$
DECLARE
    j kiln.job%ROWTYPE;
    why text := 'cancelled by ' || p_person || ' (web)';
BEGIN
    PERFORM kiln.web_check_person(p_person, 'kiln_submitter');
    SELECT * INTO j FROM kiln.job WHERE id = p_job_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', p_job_id USING ERRCODE = 'no_data_found';
    END IF;
    IF j.submitter <> p_person AND NOT pg_has_role(p_person, 'kiln_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'job % belongs to %; only its submitter or an admin may cancel it', p_job_id, j.submitter
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF j.finished_at IS NOT NULL THEN
        RAISE EXCEPTION 'job % has already finished (%)', p_job_id, j.status USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    -- The same steps as kiln.cancel_job, in the same lock order.
    UPDATE river.river_job SET state = 'cancelled', finalized_at = now()
    WHERE id IN (SELECT river_job_id FROM kiln.task WHERE job_id = p_job_id AND status = 'pending' AND river_job_id IS NOT NULL)
      AND state IN ('available', 'scheduled', 'retryable', 'pending');
    UPDATE kiln.attempt a SET status = 'cancelled', finished_at = now(), reason = why
    FROM kiln.task t
    WHERE t.job_id = p_job_id AND t.status = 'building' AND a.task_id = t.id AND a.attempt = t.attempt AND a.status = 'building';
    UPDATE kiln.task SET status = 'cancelled', builder = NULL, finished_at = now(), reason = why
    WHERE job_id = p_job_id AND status IN ('pending', 'building');
    UPDATE kiln.job SET cancelled_by = p_person WHERE id = p_job_id;
    IF j.status = 'submitted' THEN
        UPDATE kiln.job SET status = 'cancelled', finished_at = now(), reason = why WHERE id = p_job_id;
    END IF;
    INSERT INTO kiln.event (kind, job_id, detail) VALUES ('web.cancel_job', p_job_id, jsonb_build_object('person', p_person));
    RETURN (SELECT status FROM kiln.job WHERE id = p_job_id);
END $$;
COMMENT ON FUNCTION kiln.web_cancel_job(name, bigint) IS 'kiln.cancel_job on behalf of p_person, whom kiln-web authenticated with Kerberos: the submitter or a kiln_admin member only. kiln_web only. Returns the job''s new status.';

CREATE FUNCTION kiln.web_cancel_task(p_person name, p_task_id bigint) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln AS $$
DECLARE
    t kiln.task%ROWTYPE;
    who name;
    why text := 'cancelled by ' || p_person || ' (web)';
BEGIN
    PERFORM kiln.web_check_person(p_person, 'kiln_submitter');
    SELECT * INTO t FROM kiln.task WHERE id = p_task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', p_task_id USING ERRCODE = 'no_data_found';
    END IF;
    SELECT submitter INTO who FROM kiln.job WHERE id = t.job_id FOR UPDATE;
    IF who <> p_person AND NOT pg_has_role(p_person, 'kiln_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'task % belongs to a job of %; only its submitter or an admin may cancel it', p_task_id, who
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT * INTO t FROM kiln.task WHERE id = p_task_id FOR UPDATE;
    IF t.finished_at IS NOT NULL THEN
        RAISE EXCEPTION 'task % has already finished (%)', p_task_id, t.status USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    IF t.river_job_id IS NOT NULL AND t.status = 'pending' THEN
        UPDATE river.river_job SET state = 'cancelled', finalized_at = now()
        WHERE id = t.river_job_id AND state IN ('available', 'scheduled', 'retryable', 'pending');
    END IF;
    UPDATE kiln.attempt SET status = 'cancelled', finished_at = now(), reason = why
    WHERE task_id = p_task_id AND attempt = t.attempt AND status = 'building';
    UPDATE kiln.task SET status = 'cancelled', builder = NULL, finished_at = now(), reason = why
    WHERE id = p_task_id;
    INSERT INTO kiln.event (kind, job_id, task_id, detail)
    VALUES ('web.cancel_task', t.job_id, p_task_id, jsonb_build_object('person', p_person));
    RETURN 'cancelled';
END $$;
COMMENT ON FUNCTION kiln.web_cancel_task(name, bigint) IS 'kiln.cancel_task on behalf of p_person, whom kiln-web authenticated with Kerberos: the job''s submitter or a kiln_admin member only. kiln_web only.';

CREATE FUNCTION kiln.web_resubmit(p_person name, p_job_id bigint, p_submission_key text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln AS $$
DECLARE
    j kiln.job%ROWTYPE;
    new_id bigint;
BEGIN
    PERFORM kiln.web_check_person(p_person, 'kiln_submitter');
    SELECT * INTO j FROM kiln.job WHERE id = p_job_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', p_job_id USING ERRCODE = 'no_data_found';
    END IF;
    IF EXISTS (SELECT 1 FROM kiln.bucket b WHERE b.name = j.bucket AND b.private)
       AND j.submitter <> p_person AND NOT pg_has_role(p_person, 'kiln_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'job % is in private bucket %; only its submitter or an admin may resubmit it through the web', p_job_id, j.bucket
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO kiln.job (bucket, platforms, priority, policy, note, options, submission_key, resubmit_of)
    VALUES (j.bucket, j.platforms, j.priority, j.policy, j.note, j.options, p_submission_key, j.id)
    RETURNING id INTO new_id;
    -- The insert trigger stamped session_user (the web's role); the job is the person's.
    UPDATE kiln.job SET submitter = p_person WHERE id = new_id;
    INSERT INTO kiln.package (job_id, seq, file_name, format, blob_sha256, size)
    SELECT new_id, seq, file_name, format, blob_sha256, size FROM kiln.package WHERE job_id = p_job_id;
    INSERT INTO kiln.package_file (job_id, seq, file_name, blob_sha256, size)
    SELECT new_id, seq, file_name, blob_sha256, size FROM kiln.package_file WHERE job_id = p_job_id;
    INSERT INTO kiln.event (kind, job_id, detail)
    VALUES ('web.resubmit', new_id, jsonb_build_object('person', p_person, 'resubmit_of', p_job_id));
    RETURN new_id;
END $$;
COMMENT ON FUNCTION kiln.web_resubmit(name, bigint, text) IS 'Submits job p_job_id again for p_person (whom kiln-web authenticated with Kerberos) with the same packages; the new job belongs to p_person. kiln_web only; the caller inserts the validate River job in the same transaction.';

CREATE FUNCTION kiln.web_set_builder_enabled(p_person name, p_builder text, p_enabled boolean) RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln AS $$
BEGIN
    PERFORM kiln.web_check_person(p_person, 'kiln_admin');
    UPDATE kiln.builder SET enabled = p_enabled WHERE name = p_builder;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'builder % does not exist', p_builder USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO kiln.event (kind, builder, detail)
    VALUES ('web.builder_enabled', p_builder, jsonb_build_object('person', p_person, 'enabled', p_enabled));
END $$;
COMMENT ON FUNCTION kiln.web_set_builder_enabled(name, text, boolean) IS 'Enables or disables a builder on behalf of p_person, whom kiln-web authenticated with Kerberos; kiln_admin members only. kiln_web only.';

REVOKE EXECUTE ON FUNCTION kiln.web_check_person(name, name), kiln.web_cancel_job(name, bigint),
    kiln.web_cancel_task(name, bigint), kiln.web_resubmit(name, bigint, text),
    kiln.web_set_builder_enabled(name, text, boolean) FROM PUBLIC;

------------------------------------------------------------------------------
-- Indexes for the pages
------------------------------------------------------------------------------

-- kiln.queue_depth (dashboard, platforms page, /metrics) counts the pending
-- and building tasks of each platform; without this it reads every task.
CREATE INDEX task_unfinished_platform_idx ON kiln.task (platform, status, created_at)
    WHERE status IN ('pending', 'building');
COMMENT ON INDEX kiln.task_unfinished_platform_idx IS 'Pending and building tasks per platform (kiln.queue_depth, the web dashboard and /metrics).';

-- /metrics sums up the builds of the last hour (kiln.build_duration).
CREATE INDEX attempt_finished_idx ON kiln.attempt (finished_at) WHERE finished_at IS NOT NULL;
COMMENT ON INDEX kiln.attempt_finished_idx IS 'Attempts by end time: the recent builds /metrics sums up.';

-- /metrics counts the jobs that finished in the last hour by status.
CREATE INDEX job_finished_idx ON kiln.job (finished_at) WHERE finished_at IS NOT NULL;
COMMENT ON INDEX kiln.job_finished_idx IS 'Jobs by end time: the recently finished jobs /metrics counts.';
