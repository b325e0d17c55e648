-- 0015_cancel_once.sql: one implementation of cancelling.
--
-- kiln.cancel_job/cancel_task (people, acting as session_user) and
-- kiln.web_cancel_job/web_cancel_task (kiln-web, acting for a person it
-- authenticated) did the same steps in two copies. Both now call the
-- functions below, which take the acting person explicitly. Behaviour is
-- unchanged: the same checks, lock order, messages and writes.

CREATE FUNCTION kiln.cancel_job_for(p_job_id bigint, p_person name, p_why text) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln AS $$
DECLARE
    j kiln.job%ROWTYPE;
BEGIN
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
    UPDATE river.river_job SET state = 'cancelled', finalized_at = now()
    WHERE id IN (SELECT river_job_id FROM kiln.task WHERE job_id = p_job_id AND status = 'pending' AND river_job_id IS NOT NULL)
      AND state IN ('available', 'scheduled', 'retryable', 'pending');
    UPDATE kiln.attempt a SET status = 'cancelled', finished_at = now(), reason = p_why
    FROM kiln.task t
    WHERE t.job_id = p_job_id AND t.status = 'building' AND a.task_id = t.id AND a.attempt = t.attempt AND a.status = 'building';
    UPDATE kiln.task SET status = 'cancelled', builder = NULL, finished_at = now(), reason = p_why
    WHERE job_id = p_job_id AND status IN ('pending', 'building');
    UPDATE kiln.job SET cancelled_by = p_person WHERE id = p_job_id;
    IF j.status = 'submitted' THEN
        -- Not split yet: the splitter will find it cancelled and leave it.
        UPDATE kiln.job SET status = 'cancelled', finished_at = now(), reason = p_why WHERE id = p_job_id;
    END IF;
    RETURN (SELECT status FROM kiln.job WHERE id = p_job_id);
END $$;
COMMENT ON FUNCTION kiln.cancel_job_for(bigint, name, text) IS 'Cancels a job''s unfinished tasks, their open attempts and their River jobs for p_person (its submitter or a kiln_admin member), with p_why as the reason. Called only by kiln.cancel_job and kiln.web_cancel_job, which establish who p_person is; executable by no role directly.';

CREATE FUNCTION kiln.cancel_task_for(p_task_id bigint, p_person name, p_why text) RETURNS kiln.task
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln AS $$
DECLARE
    t kiln.task%ROWTYPE;
    who name;
BEGIN
    SELECT * INTO t FROM kiln.task WHERE id = p_task_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'task % does not exist', p_task_id USING ERRCODE = 'no_data_found';
    END IF;
    -- Lock order: job first, then task (as everywhere).
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
    UPDATE kiln.attempt SET status = 'cancelled', finished_at = now(), reason = p_why
    WHERE task_id = p_task_id AND attempt = t.attempt AND status = 'building';
    UPDATE kiln.task SET status = 'cancelled', builder = NULL, finished_at = now(), reason = p_why
    WHERE id = p_task_id;
    RETURN t;
END $$;
COMMENT ON FUNCTION kiln.cancel_task_for(bigint, name, text) IS 'Cancels one unfinished task, its open attempt and its River job for p_person (the job''s submitter or a kiln_admin member), with p_why as the reason; returns the task as it was before. Called only by kiln.cancel_task and kiln.web_cancel_task; executable by no role directly.';

REVOKE EXECUTE ON FUNCTION kiln.cancel_job_for(bigint, name, text), kiln.cancel_task_for(bigint, name, text) FROM PUBLIC;

CREATE OR REPLACE FUNCTION kiln.cancel_job(p_job_id bigint) RETURNS text
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, kiln
RETURN kiln.cancel_job_for(p_job_id, session_user, 'cancelled by ' || session_user);

CREATE OR REPLACE FUNCTION kiln.cancel_task(p_task_id bigint) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln AS $$
BEGIN
    PERFORM kiln.cancel_task_for(p_task_id, session_user, 'cancelled by ' || session_user);
    RETURN 'cancelled';
END $$;

CREATE OR REPLACE FUNCTION kiln.web_cancel_job(p_person name, p_job_id bigint) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln AS $$
DECLARE
    status text;
BEGIN
    PERFORM kiln.web_check_person(p_person, 'kiln_submitter');
    status := kiln.cancel_job_for(p_job_id, p_person, 'cancelled by ' || p_person || ' (web)');
    INSERT INTO kiln.event (kind, job_id, detail) VALUES ('web.cancel_job', p_job_id, jsonb_build_object('person', p_person));
    RETURN status;
END $$;

CREATE OR REPLACE FUNCTION kiln.web_cancel_task(p_person name, p_task_id bigint) RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, kiln AS $$
DECLARE
    t kiln.task%ROWTYPE;
BEGIN
    PERFORM kiln.web_check_person(p_person, 'kiln_submitter');
    t := kiln.cancel_task_for(p_task_id, p_person, 'cancelled by ' || p_person || ' (web)');
    INSERT INTO kiln.event (kind, job_id, task_id, detail)
    VALUES ('web.cancel_task', t.job_id, p_task_id, jsonb_build_object('person', p_person));
    RETURN 'cancelled';
END $$;
