-- Current state (docs/schema.md, "Migrations"): applied by schema.Migrate
-- after the numbered migrations, in one transaction, on every migrate.
-- Edit the definition here; never copy it into a numbered migration.
-- Functions, their comments and who may execute them.

-- Names used as identifiers (platforms, buckets, builders): lower case letters
-- and digits separated by single hyphens or underscores. The same shape River
-- requires of queue names, so a platform name can name its queue.
CREATE OR REPLACE FUNCTION kiln.valid_name(n text)
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE STRICT
RETURN ((n ~ '^[a-z0-9]+([_-][a-z0-9]+)*$'::text) AND (length(n) <= 50));
COMMENT ON FUNCTION kiln.valid_name(text) IS 'True for a safe identifier: lower-case letters and digits separated by single - or _, at most 50 characters.';

-- A file name that is safe to create in a work or download directory: no path
-- separator, not . or .., no .. anywhere, no control characters, no leading
-- dash (it would read as an option), not empty, at most 255 bytes.
CREATE OR REPLACE FUNCTION kiln.safe_file_name(n text)
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE STRICT
RETURN ((n <> ''::text) AND (octet_length(n) <= 255) AND (POSITION(('/'::text) IN (n)) = 0) AND (POSITION(('\'::text) IN (n)) = 0) AND (POSITION(('..'::text) IN (n)) = 0) AND (n <> '.'::text) AND ("left"(n, 1) <> '-'::text) AND (n !~ '[\x01-\x1f\x7f]'::text));
COMMENT ON FUNCTION kiln.safe_file_name(text) IS 'True for a file name safe to create in a directory: no separator, no .., no control characters, no leading dash, 1..255 bytes.';

CREATE OR REPLACE FUNCTION kiln.event_guard()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
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
END $function$;
COMMENT ON FUNCTION kiln.event_guard() IS 'Keeps kiln.event append-only, stamps the real actor (session_user) and time on every insert it is called for (all but the owner''s own, which leave both to the columns'' defaults, the same values), and sets job_id from task_id when the event names a task (so that row-level security shows it only with its job).';

-- The submitter is who the session is. A client cannot claim another name.
CREATE OR REPLACE FUNCTION kiln.job_stamp_submitter()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    NEW.submitter := session_user;
    RETURN NEW;
END $function$;
COMMENT ON FUNCTION kiln.job_stamp_submitter() IS 'Sets kiln.job.submitter to session_user on insert, whatever the client sent.';

-- The statuses jobs have given their tasks, one row per job that has tasks
-- (a job without tasks yet, submitted or invalid, has none: its status
-- stays as it is). One owner of the rule: kiln.job_status_from_tasks and
-- kiln.refresh_job_statuses call it.
-- PL/pgSQL, not SQL: PostgreSQL 15 plans a SQL function's body (one with
-- its own search_path is never inlined) again at every call, PL/pgSQL once
-- per session; the job status recompute calls this at every statement
-- that changes tasks. ROWS 10: a statement changes the tasks of a few
-- jobs, and with the default estimate of 1,000 rows the recompute's
-- UPDATE read all of kiln.job (10 ms a statement with 20,000 jobs).
CREATE OR REPLACE FUNCTION kiln.job_statuses_from_tasks(p_job_ids bigint[])
 RETURNS TABLE(job_id bigint, status text)
 LANGUAGE plpgsql
 STABLE ROWS 10
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    RETURN QUERY
    SELECT t.job_id, CASE
        WHEN count(*) FILTER (WHERE t.status = 'building') > 0 THEN 'building'
        WHEN count(*) FILTER (WHERE t.status = 'pending') > 0 THEN
            CASE WHEN count(*) FILTER (WHERE t.status NOT IN ('pending', 'skipped')) > 0
                 THEN 'building' ELSE 'queued' END
        WHEN count(*) FILTER (WHERE t.status NOT IN ('succeeded', 'skipped')) = 0 THEN 'succeeded'
        WHEN count(*) FILTER (WHERE t.status IN ('failed', 'timed_out', 'lost')) = 0
             AND count(*) FILTER (WHERE t.status = 'succeeded') = 0 THEN 'cancelled'
        WHEN count(*) FILTER (WHERE t.status = 'succeeded') = 0 THEN 'failed'
        ELSE 'partially_failed'
    END
    FROM kiln.task t WHERE t.job_id = ANY (p_job_ids)
    GROUP BY t.job_id;
END $function$;
COMMENT ON FUNCTION kiln.job_statuses_from_tasks(bigint[]) IS 'The status each job its tasks imply, for the jobs that have tasks: building while any builds (or some finished and some wait), queued while all wait, succeeded when all succeeded or were skipped, cancelled when all that did not succeed or skip were cancelled and none succeeded, failed when none succeeded, else partially_failed.';

CREATE OR REPLACE FUNCTION kiln.job_status_from_tasks(p_job_id bigint)
 RETURNS text
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    RETURN (SELECT s.status FROM kiln.job_statuses_from_tasks(ARRAY[p_job_id]) s);
END $function$;
COMMENT ON FUNCTION kiln.job_status_from_tasks(bigint) IS 'The job status its tasks imply (kiln.job_statuses_from_tasks of one job); NULL without tasks.';

-- Recompute jobs' statuses, in one statement for all of them. Locks the
-- job rows first, in id order (the protocol's order), so two statements
-- changing tasks of the same job are serialised and the second sees the
-- first. Returns nothing: the task triggers, which call it at every
-- statement that changes tasks, need no answer, and reading the jobs again
-- for one cost a fifth of the recompute (kiln.refresh_job_status reads its
-- one job's status after).
CREATE OR REPLACE FUNCTION kiln.refresh_job_statuses(p_job_ids bigint[])
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    PERFORM 1 FROM kiln.job j WHERE j.id = ANY (p_job_ids) ORDER BY j.id FOR UPDATE OF j;
    UPDATE kiln.job j SET
        status = c.status,
        started_at = CASE WHEN c.status IN ('building', 'succeeded', 'failed', 'partially_failed')
                          THEN coalesce(j.started_at, pg_catalog.now()) ELSE j.started_at END,
        finished_at = CASE WHEN c.status IN ('succeeded', 'failed', 'partially_failed', 'cancelled')
                           THEN coalesce(j.finished_at, pg_catalog.now()) ELSE NULL END
      FROM kiln.job_statuses_from_tasks(p_job_ids) c
     WHERE j.id = ANY (p_job_ids) AND j.id = c.job_id AND j.status <> c.status;
END $function$;
COMMENT ON FUNCTION kiln.refresh_job_statuses(bigint[]) IS 'Sets jobs'' statuses (and started/finished times) from their tasks, in one statement. Locks the jobs in id order. Called by the task triggers once per statement.';

CREATE OR REPLACE FUNCTION kiln.refresh_job_status(p_job_id bigint)
 RETURNS text
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    PERFORM kiln.refresh_job_statuses(ARRAY[p_job_id]);
    RETURN (SELECT j.status FROM kiln.job j WHERE j.id = p_job_id);
END $function$;
COMMENT ON FUNCTION kiln.refresh_job_status(bigint) IS 'Sets a job''s status (and started/finished times) from its tasks (kiln.refresh_job_statuses of one job); returns the status, NULL when there is no such job. Called by the janitor''s consistency check.';

-- NOTIFY payloads: ids only. LISTEN needs no privilege, so a payload is
-- readable by anyone logged in; it says which job or task to read again,
-- never what happened to it.
-- A statement-level trigger with transition tables (new_tasks, and
-- old_tasks for an update): a statement that changes many tasks records
-- their events, recomputes their jobs and notifies in one statement each,
-- not once per row. An update that changes no task's status or attempt (a
-- heartbeat, a River job link) costs one query and stops: a SELECT of the
-- changed tasks, so that it starts no INSERT into kiln.event (which the
-- events' insert then joins the transition tables again for).
CREATE OR REPLACE FUNCTION kiln.task_changed()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    v_tasks bigint[];
    v_jobs bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO kiln.event (kind, job_id, task_id, new_status, detail)
        SELECT 'task.status', n.job_id, n.id, n.status,
               pg_catalog.jsonb_build_object('platform', n.platform) || coalesce(pg_catalog.jsonb_build_object('reason', n.reason), '{}')
          FROM new_tasks n ORDER BY n.id;
        SELECT pg_catalog.array_agg(n.id ORDER BY n.id), pg_catalog.array_agg(DISTINCT n.job_id)
          INTO v_tasks, v_jobs FROM new_tasks n;
    ELSE
        SELECT pg_catalog.array_agg(n.id ORDER BY n.id), pg_catalog.array_agg(DISTINCT n.job_id)
          INTO v_tasks, v_jobs
          FROM new_tasks n JOIN old_tasks o ON o.id = n.id
         WHERE n.status IS DISTINCT FROM o.status OR n.attempt IS DISTINCT FROM o.attempt;
        IF v_tasks IS NULL THEN
            RETURN NULL;
        END IF;
        INSERT INTO kiln.event (kind, job_id, task_id, attempt, builder, old_status, new_status, detail)
        SELECT 'task.status', n.job_id, n.id, n.attempt, coalesce(n.builder, o.builder), o.status, n.status,
               pg_catalog.jsonb_build_object('platform', n.platform) || coalesce(pg_catalog.jsonb_build_object('reason', n.reason), '{}')
          FROM new_tasks n JOIN old_tasks o ON o.id = n.id
         WHERE n.id = ANY (v_tasks) ORDER BY n.id;
    END IF;
    IF v_tasks IS NULL THEN
        RETURN NULL;
    END IF;
    PERFORM kiln.refresh_job_statuses(v_jobs);
    PERFORM pg_catalog.pg_notify('kiln_task', pg_catalog.json_build_object('job', n.job_id, 'task', n.id)::text)
       FROM new_tasks n WHERE n.id = ANY (v_tasks) ORDER BY n.id;
    RETURN NULL;
END $function$;
COMMENT ON FUNCTION kiln.task_changed() IS 'After a statement inserts tasks or changes tasks'' status or attempt (transition tables new_tasks and old_tasks): records an event per task, recomputes their jobs'' statuses (kiln.refresh_job_statuses) and sends NOTIFY kiln_task with each job and task id (no status: listeners read the task with their own rights).';

-- Statement-level, with transition tables (new_jobs, and old_jobs for an
-- update), as the task triggers are: the jobs a statement inserts or
-- recomputes get their events in one insert. Each statement that writes
-- a table checks its constraints and its triggers' WHEN clauses again, so
-- one statement for a batch of jobs costs far less than one per job.
CREATE OR REPLACE FUNCTION kiln.job_changed()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    v_jobs bigint[];
    v_ended bigint[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO kiln.event (kind, job_id, new_status, detail)
        SELECT 'job.status', n.id, n.status, pg_catalog.jsonb_build_object('bucket', n.bucket, 'submitter', n.submitter)
          FROM new_jobs n ORDER BY n.id;
        PERFORM pg_catalog.pg_notify('kiln_job', pg_catalog.json_build_object('job', n.id)::text) FROM new_jobs n ORDER BY n.id;
    ELSE
        WITH ev AS (
            INSERT INTO kiln.event (kind, job_id, old_status, new_status, detail)
            SELECT 'job.status', n.id, o.status, n.status, coalesce(pg_catalog.jsonb_build_object('reason', n.reason), '{}')
              FROM new_jobs n JOIN old_jobs o ON o.id = n.id
             WHERE n.status IS DISTINCT FROM o.status
             ORDER BY n.id
            RETURNING job_id, new_status
        )
        SELECT pg_catalog.array_agg(e.job_id ORDER BY e.job_id),
               pg_catalog.array_agg(e.job_id ORDER BY e.job_id)
                   FILTER (WHERE e.new_status IN ('succeeded', 'failed', 'partially_failed', 'cancelled', 'invalid'))
          INTO v_jobs, v_ended FROM ev e;
        PERFORM pg_catalog.pg_notify('kiln_job', pg_catalog.json_build_object('job', j)::text) FROM unnest(v_jobs) AS j;
        -- The jobs this statement ended ask for their publication and
        -- their reports, all of them at once.
        IF v_ended IS NOT NULL THEN
            PERFORM kiln.job_request_publications(v_ended);
            PERFORM kiln.job_request_reports(v_ended);
        END IF;
    END IF;
    RETURN NULL;
END $function$;
COMMENT ON FUNCTION kiln.job_changed() IS 'After a statement inserts jobs or changes jobs'' status (transition tables new_jobs and old_jobs): records an event per job, sends NOTIFY kiln_job with each job id (no status: listeners read the job with their own rights) and, for the jobs that reached a final status, asks for their publication (kiln.job_request_publications) and reports (kiln.job_request_reports).';

-- Attempts are inserted by kiln.task_take_many, several in one statement:
-- a statement-level trigger records their events in one insert.
CREATE OR REPLACE FUNCTION kiln.attempt_inserted()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    INSERT INTO kiln.event (kind, job_id, task_id, attempt, builder, new_status, detail)
    SELECT 'attempt.status', t.job_id, n.task_id, n.attempt, n.builder, n.status, coalesce(pg_catalog.jsonb_build_object('reason', n.reason), '{}')
      FROM new_attempts n JOIN kiln.task t ON t.id = n.task_id ORDER BY n.task_id;
    RETURN NULL;
END $function$;
COMMENT ON FUNCTION kiln.attempt_inserted() IS 'After a statement inserts attempts (transition table new_attempts): records an attempt.status event for each, which names the job (so it is readable only with the job).';

CREATE OR REPLACE FUNCTION kiln.attempt_changed()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    -- Called only for a change of status (the trigger's WHEN clause).
    INSERT INTO kiln.event (kind, job_id, task_id, attempt, builder, old_status, new_status, detail)
    VALUES ('attempt.status', (SELECT t.job_id FROM kiln.task t WHERE t.id = NEW.task_id), NEW.task_id, NEW.attempt, NEW.builder, OLD.status, NEW.status,
            coalesce(pg_catalog.jsonb_build_object('reason', NEW.reason), '{}'));
    RETURN NULL;
END $function$;
COMMENT ON FUNCTION kiln.attempt_changed() IS 'After an attempt changes status: records an attempt.status event, which names the job (so it is readable only with the job).';

CREATE OR REPLACE FUNCTION kiln.builder_changed()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    -- Called only for an insert or a change of state, enabled or
    -- draining (the triggers' WHEN clause, schema/current/30_triggers.sql).
    INSERT INTO kiln.event (kind, builder, old_status, new_status, detail)
    VALUES ('builder.state', NEW.name, CASE WHEN TG_OP = 'UPDATE' THEN OLD.state END, NEW.state,
            jsonb_build_object('enabled', NEW.enabled, 'draining', NEW.draining, 'host', NEW.host));
    PERFORM pg_notify('kiln_builder', json_build_object('builder', NEW.name, 'state', NEW.state)::text);
    RETURN NULL;
END $function$;
COMMENT ON FUNCTION kiln.builder_changed() IS 'After a builder registers or changes state, enabled or draining: records an event and sends NOTIFY kiln_builder.';

CREATE OR REPLACE FUNCTION kiln.log_chunk_added()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    IF EXISTS (SELECT 1 FROM kiln.log_watch w WHERE w.task_id = NEW.task_id AND w.until > pg_catalog.now()) THEN
        PERFORM pg_notify('kiln_log', json_build_object('task', NEW.task_id, 'attempt', NEW.attempt, 'seq', NEW.seq)::text);
    END IF;
    RETURN NULL;
END $function$;
COMMENT ON FUNCTION kiln.log_chunk_added() IS 'After a log batch is stored: NOTIFY kiln_log so followers fetch it, only while someone watches the task''s log (kiln.watch_logs): every notifying commit wakes every listening session of the database.';

-- Followers of live logs (kiln log -f, kiln-web) watch the tasks they
-- follow, a minute at a time, and renew the watch while they follow. A
-- watch costs nothing but notifications, and its answer is the same for a
-- task that does not exist, one that is final and one the caller may not
-- read, so anyone who may read the farm may call it. Rows are bounded by
-- the tasks not final; expired ones are removed here.
CREATE OR REPLACE FUNCTION kiln.watch_logs(p_tasks bigint[])
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    IF cardinality(p_tasks) > 10000 THEN
        RAISE EXCEPTION 'watch at most 10000 task logs at once, not %', cardinality(p_tasks)
            USING ERRCODE = 'program_limit_exceeded';
    END IF;
    DELETE FROM kiln.log_watch WHERE until < now();
    INSERT INTO kiln.log_watch (task_id, until)
    SELECT t.id, now() + interval '1 minute'
      FROM kiln.task t
     WHERE t.id = ANY (p_tasks) AND t.status IN ('pending', 'building')
    ON CONFLICT (task_id) DO UPDATE SET until = greatest(log_watch.until, EXCLUDED.until);
END $function$;
COMMENT ON FUNCTION kiln.watch_logs(bigint[]) IS 'Follow the live logs of tasks (at most 10,000 per call): for a minute from now, each stored batch of their logs sends NOTIFY kiln_log. Followers call it again within the minute while they follow. Tasks that do not exist or are final are left out, without an error.';
REVOKE EXECUTE ON FUNCTION kiln.watch_logs(bigint[]) FROM PUBLIC;

-- The same answer for a job that does not exist and for someone else's:
-- the message names no owner, and the code (no_data_found) is the same, so
-- nothing tells a private job from a missing one.
CREATE OR REPLACE FUNCTION kiln.cancel_job_for(p_job_id bigint, p_person name, p_why text)
 RETURNS text
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
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
    -- The open attempts are locked in task order, as kiln.task_log_many
    -- locks them: a builder's batch of log writes holds no job lock.
    PERFORM 1 FROM kiln.attempt a JOIN kiln.task t ON a.task_id = t.id AND a.attempt = t.attempt
     WHERE t.job_id = p_job_id AND t.status = 'building' AND a.status = 'building'
     ORDER BY a.task_id FOR NO KEY UPDATE OF a;
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
END $function$;
COMMENT ON FUNCTION kiln.cancel_job_for(bigint, name, text) IS 'Cancels a job''s unfinished tasks, their open attempts and their River jobs for p_person (its submitter or a kiln_admin member), with p_why as the reason; "does not exist or is not yours" otherwise. Called only by kiln.cancel_job and kiln.web_cancel_job, which establish who p_person is; executable by no role directly.';

CREATE OR REPLACE FUNCTION kiln.cancel_job(p_job_id bigint)
 RETURNS text
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
RETURN kiln.cancel_job_for(p_job_id, SESSION_USER, ('cancelled by '::text || (SESSION_USER)::text));
COMMENT ON FUNCTION kiln.cancel_job(bigint) IS 'Cancels a job''s unfinished tasks, their open attempts and their River jobs; submitter or kiln_admin only. Returns the job''s new status.';

CREATE OR REPLACE FUNCTION kiln.cancel_task(p_task_id bigint)
 RETURNS text
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    PERFORM kiln.cancel_task_for(p_task_id, session_user, 'cancelled by ' || session_user);
    RETURN 'cancelled';
END $function$;
COMMENT ON FUNCTION kiln.cancel_task(bigint) IS 'Cancels one unfinished task and its River job; the job''s submitter or kiln_admin only.';

CREATE OR REPLACE FUNCTION kiln.lock_job(p_job_id bigint)
 RETURNS boolean
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    PERFORM 1 FROM kiln.job WHERE id = p_job_id FOR UPDATE;
    RETURN FOUND;
END $function$;
COMMENT ON FUNCTION kiln.lock_job(bigint) IS 'Locks a job row (FOR UPDATE) until the end of the transaction, for roles that may not update kiln.job; true when the job exists. Step one of every task change (docs/protocol.md).';

-- Whether the session may read the jobs of a bucket.
-- (No SET search_path, so that the planner can inline these two into the
-- policies; every name in them is schema-qualified.)
CREATE OR REPLACE FUNCTION kiln.bucket_readable(p_bucket text)
 RETURNS boolean
 LANGUAGE sql
 STABLE
RETURN ((NOT (EXISTS (SELECT 1 FROM kiln.bucket b WHERE ((b.name = bucket_readable.p_bucket) AND b.private)))) OR (EXISTS (SELECT 1 FROM (kiln.bucket_grant g JOIN pg_roles r ON ((r.rolname = g.grantee))) WHERE ((g.bucket = bucket_readable.p_bucket) AND pg_has_role(SESSION_USER, r.oid, 'MEMBER'::text)))));
COMMENT ON FUNCTION kiln.bucket_readable(text) IS 'True when the session may read jobs of the bucket: it is not private, or session_user is (a member of) one of its grantees. Used by row-level security.';

-- The builders registered by the session's role.
CREATE OR REPLACE FUNCTION kiln.own_builders()
 RETURNS SETOF text
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$ SELECT b.name FROM kiln.builder b WHERE b.role = session_user $function$;
COMMENT ON FUNCTION kiln.own_builders() IS 'Names of the builders whose role is session_user: the rows a builder daemon may change. Used by row-level security.';

CREATE OR REPLACE FUNCTION kiln.web_check_person(p_person name, p_group name)
 RETURNS void
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
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
END $function$;
COMMENT ON FUNCTION kiln.web_check_person(name, name) IS 'Raises unless the session is kiln-web (member of kiln_web) and p_person is a login role (not a superuser, not a web role) that is a member of p_group. Used by the kiln.web_* functions.';

CREATE OR REPLACE FUNCTION kiln.web_cancel_job(p_person name, p_job_id bigint)
 RETURNS text
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    status text;
BEGIN
    PERFORM kiln.web_check_person(p_person, 'kiln_submitter');
    status := kiln.cancel_job_for(p_job_id, p_person, 'cancelled by ' || p_person || ' (web)');
    INSERT INTO kiln.event (kind, job_id, detail) VALUES ('web.cancel_job', p_job_id, jsonb_build_object('person', p_person));
    RETURN status;
END $function$;
COMMENT ON FUNCTION kiln.web_cancel_job(name, bigint) IS 'kiln.cancel_job on behalf of p_person, whom kiln-web authenticated with Kerberos: the submitter or a kiln_admin member only. kiln_web only. Returns the job''s new status.';

CREATE OR REPLACE FUNCTION kiln.web_cancel_task(p_person name, p_task_id bigint)
 RETURNS text
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    t kiln.task%ROWTYPE;
BEGIN
    PERFORM kiln.web_check_person(p_person, 'kiln_submitter');
    t := kiln.cancel_task_for(p_task_id, p_person, 'cancelled by ' || p_person || ' (web)');
    INSERT INTO kiln.event (kind, job_id, task_id, detail)
    VALUES ('web.cancel_task', t.job_id, p_task_id, jsonb_build_object('person', p_person));
    RETURN 'cancelled';
END $function$;
COMMENT ON FUNCTION kiln.web_cancel_task(name, bigint) IS 'kiln.cancel_task on behalf of p_person, whom kiln-web authenticated with Kerberos: the job''s submitter or a kiln_admin member only. kiln_web only.';

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

CREATE OR REPLACE FUNCTION kiln.web_set_builder_enabled(p_person name, p_builder text, p_enabled boolean)
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    PERFORM kiln.web_check_person(p_person, 'kiln_admin');
    UPDATE kiln.builder SET enabled = p_enabled WHERE name = p_builder;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'builder % does not exist', p_builder USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO kiln.event (kind, builder, detail)
    VALUES ('web.builder_enabled', p_builder, jsonb_build_object('person', p_person, 'enabled', p_enabled));
END $function$;
COMMENT ON FUNCTION kiln.web_set_builder_enabled(name, text, boolean) IS 'Enables or disables a builder on behalf of p_person, whom kiln-web authenticated with Kerberos; kiln_admin members only. kiln_web only.';

CREATE OR REPLACE FUNCTION kiln.blob_stamp()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    NEW.created_by := session_user;
    NEW.created_xact := pg_current_xact_id();
    RETURN NEW;
END $function$;
COMMENT ON FUNCTION kiln.blob_stamp() IS 'Sets kiln.blob.created_by to session_user and created_xact to the current transaction on insert, whatever the client sent.';

CREATE OR REPLACE FUNCTION kiln.blob_chunk_guard()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM kiln.blob b WHERE b.sha256 = NEW.sha256 AND b.created_xact = pg_current_xact_id()) THEN
        RAISE EXCEPTION 'chunks of blob % may only be stored by the transaction that stored the blob', encode(NEW.sha256, 'hex')
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $function$;
COMMENT ON FUNCTION kiln.blob_chunk_guard() IS 'Refuses a chunk unless its blob row was stored in the same transaction: stored bytes never change afterwards, whoever asks.';

-- Whether the session may read a blob: the row-level security of kiln.blob
-- decides (its creator, or a readable package, package file or artifact uses
-- it). A function, so that a policy on kiln.package may ask without the
-- policies of kiln.blob and kiln.package referring to each other.
CREATE OR REPLACE FUNCTION kiln.blob_readable(p_sha256 bytea)
 RETURNS boolean
 LANGUAGE sql
 STABLE
RETURN (EXISTS (SELECT 1 FROM kiln.blob b WHERE (b.sha256 = blob_readable.p_sha256)));
COMMENT ON FUNCTION kiln.blob_readable(bytea) IS 'True when the session may read the blob under row-level security (runs with the caller''s rights).';

-- Whether the blob was stored in the current transaction (by this session,
-- which is the only one that can see it uncommitted).
CREATE OR REPLACE FUNCTION kiln.blob_stored_here(p_sha256 bytea)
 RETURNS boolean
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
RETURN (EXISTS (SELECT 1 FROM kiln.blob b WHERE ((b.sha256 = blob_stored_here.p_sha256) AND (b.created_xact = pg_current_xact_id()))));
COMMENT ON FUNCTION kiln.blob_stored_here(bytea) IS 'True when the blob was stored in the current transaction.';

-- Whether a River job is the validate River job of one of the session's
-- own jobs (the job's row-level security applies: it runs with the
-- caller's rights).
CREATE OR REPLACE FUNCTION kiln.own_validate_river_job(p_kind text, p_queue text, p_args jsonb, p_submitted_only boolean)
 RETURNS boolean
 LANGUAGE sql
 STABLE
RETURN ((p_kind = 'validate'::text) AND (p_queue = 'incoming'::text) AND (jsonb_typeof((p_args -> 'job_id'::text)) = 'number'::text) AND (EXISTS (SELECT 1 FROM kiln.job j WHERE ((j.id = ((own_validate_river_job.p_args ->> 'job_id'::text))::bigint) AND (j.submitter = SESSION_USER) AND ((j.status = 'submitted'::text) OR (NOT own_validate_river_job.p_submitted_only))))));
COMMENT ON FUNCTION kiln.own_validate_river_job(text, text, jsonb, boolean) IS 'True for a River job of kind validate in queue incoming whose job_id is a job of session_user (still submitted, when asked). Used by row-level security on river.river_job.';

-- The moves the farm's roles may make on kiln.task themselves are the
-- splitter's: inserting a task pending or skipped (attempt 0, no losses, no
-- builder), and linking a task to its River job without changing its status,
-- attempt, losses or builder. Builders and the janitor hold no UPDATE on
-- kiln.task; every other move (docs/schema.md, "Statuses") is made by the
-- protocol functions above and the cancel functions, as the owner, and a
-- superuser may repair by hand. The search_path is fixed (pg_temp last) and
-- every name qualified, so no temporary pg_roles can switch the guard off.
CREATE OR REPLACE FUNCTION kiln.task_transition_guard()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    ok boolean;
BEGIN
    IF current_user = 'kiln_owner'
       OR coalesce((SELECT r.rolsuper FROM pg_catalog.pg_roles r WHERE r.rolname = current_user), false) THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' THEN
        ok := NEW.status IN ('pending', 'skipped') AND NEW.attempt = 0 AND NEW.lost_count = 0 AND NEW.builder IS NULL;
    ELSE
        ok := NEW.status = OLD.status AND NEW.attempt = OLD.attempt AND NEW.lost_count = OLD.lost_count
              AND NEW.builder IS NOT DISTINCT FROM OLD.builder;
    END IF;
    IF NOT ok THEN
        RAISE EXCEPTION 'task %: % is not a move % may make (docs/protocol.md)', NEW.id,
            CASE WHEN TG_OP = 'INSERT' THEN 'inserting it as ' || NEW.status
                 ELSE pg_catalog.format('%s (attempt %s) -> %s (attempt %s)', OLD.status, OLD.attempt, NEW.status, NEW.attempt) END,
            session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END $function$;
COMMENT ON FUNCTION kiln.task_transition_guard() IS 'Refuses task inserts and changes of status, attempt, losses or builder by anyone but the owner (the protocol functions kiln.task_*, cancelling) and superusers; the splitter inserts pending or skipped tasks and links River jobs. Immune to search_path tricks: fixed search_path, qualified names.';

CREATE OR REPLACE FUNCTION kiln.cancel_task_for(p_task_id bigint, p_person name, p_why text)
 RETURNS kiln.task
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
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
END $function$;
COMMENT ON FUNCTION kiln.cancel_task_for(bigint, name, text) IS 'Cancels one unfinished task, its open attempt and its River job for p_person (the job''s submitter or a kiln_admin member), with p_why as the reason; returns the task as it was before; "does not exist or is not yours" otherwise. Called only by kiln.cancel_task and kiln.web_cancel_task; executable by no role directly.';

CREATE OR REPLACE FUNCTION kiln.set_max_lost(p_max_lost integer)
 RETURNS integer
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    old integer;
BEGIN
    IF NOT pg_catalog.pg_has_role(session_user, 'kiln_admin', 'MEMBER') THEN
        RAISE EXCEPTION 'only a kiln_admin member may change max_lost' USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_max_lost IS NULL OR p_max_lost NOT BETWEEN 0 AND 1000 THEN
        RAISE EXCEPTION 'max_lost must be between 0 and 1000, not %', p_max_lost USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT s.max_lost INTO old FROM kiln.protocol_setting s FOR UPDATE;
    UPDATE kiln.protocol_setting SET max_lost = p_max_lost, changed_at = pg_catalog.now(), changed_by = session_user;
    INSERT INTO kiln.event (kind, detail)
    VALUES ('protocol.setting', pg_catalog.jsonb_build_object('max_lost', p_max_lost, 'old_max_lost', old));
    RETURN old;
END $function$;
COMMENT ON FUNCTION kiln.set_max_lost(integer) IS 'Sets kiln.protocol_setting.max_lost (kiln_admin members only) and records a protocol.setting event; returns the old value.';

-- The builder named must be registered by session_user's role.
CREATE OR REPLACE FUNCTION kiln.task_check_builder(p_builder text)
 RETURNS void
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM kiln.builder b WHERE b.name = p_builder AND b.role = session_user) THEN
        RAISE EXCEPTION 'builder % is not one of the builders of role %', p_builder, session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
END $function$;
COMMENT ON FUNCTION kiln.task_check_builder(text) IS 'Raises insufficient_privilege unless the builder is registered by session_user (kiln.builder.role): a builder daemon acts only for its own builders.';

CREATE OR REPLACE FUNCTION kiln.task_check_janitor()
 RETURNS void
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    IF NOT pg_catalog.pg_has_role(session_user, 'kiln_janitor', 'MEMBER') THEN
        RAISE EXCEPTION 'role % is not a member of kiln_janitor', session_user USING ERRCODE = 'insufficient_privilege';
    END IF;
END $function$;
COMMENT ON FUNCTION kiln.task_check_janitor() IS 'Raises insufficient_privilege unless session_user is a member of kiln_janitor.';

-- Step 1, take, for several tasks at once (a builder's slots that take at
-- the same moment: one statement, one transaction). outcome, per task in
-- the order given: taken (attempt is the new attempt's number), not_pending
-- (cancelled, finished or taken meanwhile: the River job ends without a
-- build), disabled (the builder was disabled), gone (the job or the
-- platform no longer exists), elsewhere (a retry of the farm's fault that
-- another online builder of the platform is to take: the River job snoozes
-- briefly). The jobs are locked in id order, the protocol's order (job,
-- then task) across jobs, so two batches never wait for each other in a
-- circle. Its statements, and task_finish_many's, are planned once per
-- session (force_generic_plan): a custom plan per call made a take of one
-- task cost about 1.2 ms of PostgreSQL time against 0.85 ms with the plan
-- kept (throughput benchmark, one slot).
CREATE OR REPLACE FUNCTION kiln.task_take_many(p_builder text, p_task_ids bigint[], p_job_ids bigint[], p_platforms text[])
 RETURNS TABLE(task_id bigint, outcome text, attempt integer, policy text, timeout_seconds double precision)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
DECLARE
    v_enabled boolean;
BEGIN
    PERFORM kiln.task_check_builder(p_builder);
    IF pg_catalog.cardinality(p_task_ids) IS DISTINCT FROM pg_catalog.cardinality(p_job_ids)
       OR pg_catalog.cardinality(p_task_ids) IS DISTINCT FROM pg_catalog.cardinality(p_platforms) THEN
        RAISE EXCEPTION 'task_take_many: % tasks, % jobs and % platforms', pg_catalog.cardinality(p_task_ids),
            pg_catalog.cardinality(p_job_ids), pg_catalog.cardinality(p_platforms) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_task_ids, p_job_ids, p_platforms) AS r(t, j, p) WHERE r.t IS NULL OR r.j IS NULL OR r.p IS NULL)
       OR (SELECT count(DISTINCT r.t) FROM unnest(p_task_ids) AS r(t)) <> pg_catalog.cardinality(p_task_ids) THEN
        RAISE EXCEPTION 'task_take_many: every task once, with its job and platform' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM 1 FROM kiln.job j WHERE j.id = ANY (p_job_ids) ORDER BY j.id FOR UPDATE OF j;
    SELECT b.enabled INTO v_enabled FROM kiln.builder b WHERE b.name = p_builder;
    RETURN QUERY
    WITH req AS (
        SELECT r.task_id, r.job_id, r.platform, r.n, j.policy, extract(epoch FROM p.timeout)::double precision AS timeout_seconds,
               (j.id IS NULL OR p.name IS NULL) AS gone,
               -- A retry of the farm's fault goes to another builder of
               -- the platform while one is online (until avoid_until):
               -- this one lets it pass.
               EXISTS (SELECT 1 FROM kiln.task t
                        WHERE t.id = r.task_id AND t.status = 'pending' AND t.avoid_builder = p_builder
                          AND t.avoid_until > pg_catalog.now()
                          AND EXISTS (SELECT 1 FROM kiln.builder o JOIN kiln.builder_platform bp ON bp.builder = o.name
                                       WHERE bp.platform = r.platform AND o.name <> p_builder AND o.enabled AND NOT o.draining
                                         AND o.state = 'online')) AS elsewhere
          FROM unnest(p_task_ids, p_job_ids, p_platforms) WITH ORDINALITY AS r(task_id, job_id, platform, n)
          LEFT JOIN kiln.job j ON j.id = r.job_id
          LEFT JOIN kiln.platform p ON p.name = r.platform
    ), taken AS (
        UPDATE kiln.task t SET status = 'building', builder = p_builder, attempt = t.attempt + 1,
               started_at = pg_catalog.now(), heartbeat_at = pg_catalog.now(), reason = NULL, failure_stage = NULL
          FROM req
         WHERE v_enabled AND NOT req.gone AND NOT req.elsewhere
           AND t.id = req.task_id AND t.job_id = req.job_id AND t.platform = req.platform AND t.status = 'pending'
        RETURNING t.id, t.attempt
    ), made AS (
        INSERT INTO kiln.attempt (task_id, attempt, builder) SELECT k.id, k.attempt, p_builder FROM taken k
    )
    SELECT req.task_id,
           CASE WHEN req.gone THEN 'gone' WHEN NOT v_enabled THEN 'disabled' WHEN req.elsewhere THEN 'elsewhere'
                WHEN k.id IS NULL THEN 'not_pending' ELSE 'taken' END,
           k.attempt,
           CASE WHEN k.id IS NOT NULL THEN req.policy END,
           CASE WHEN k.id IS NOT NULL THEN req.timeout_seconds END
      FROM req LEFT JOIN taken k ON k.id = req.task_id
     ORDER BY req.n;
END $function$;
COMMENT ON FUNCTION kiln.task_take_many(text, bigint[], bigint[], text[]) IS 'Protocol step 1 for several tasks in one statement (task ids, job ids and platforms pairwise, each task once): one of session_user''s builders takes the pending ones: each becomes building with the next attempt number and its attempt row is created (the only way attempts are created). Returns, per task in the order given, the outcome (taken, not_pending, disabled, gone, elsewhere), and for a taken one the attempt, the job''s policy and the platform''s timeout. Locks the jobs in id order.';

-- Step 1 for one task (kiln.task_take_many of one).
CREATE OR REPLACE FUNCTION kiln.task_take(p_builder text, p_task_id bigint, p_job_id bigint, p_platform text, OUT outcome text, OUT attempt integer, OUT policy text, OUT timeout_seconds double precision)
 RETURNS record
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
    SELECT m.outcome, m.attempt, m.policy, m.timeout_seconds
      FROM kiln.task_take_many(p_builder, ARRAY[p_task_id], ARRAY[p_job_id], ARRAY[p_platform]) m
$function$;
COMMENT ON FUNCTION kiln.task_take(text, bigint, bigint, text) IS 'Protocol step 1 for one task: kiln.task_take_many of one. Returns the outcome (taken, not_pending, disabled, gone, elsewhere), and for a taken task the attempt, the job''s policy and the platform''s timeout.';

-- Step 2, heartbeat, for every attempt a builder holds at once. Returns the
-- tasks whose attempt is no longer held (fenced off: cancelled, timed out,
-- declared lost). A task row someone else is changing right now is neither
-- beaten nor reported: the heartbeat never waits for a lock, so it cannot
-- deadlock with a cancel or the janitor (which lock the job first), and the
-- next round or the NOTIFY that follows the change tells.
CREATE OR REPLACE FUNCTION kiln.task_heartbeat(p_builder text, p_task_ids bigint[], p_attempts integer[])
 RETURNS SETOF bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    PERFORM kiln.task_check_builder(p_builder);
    IF pg_catalog.cardinality(p_task_ids) IS DISTINCT FROM pg_catalog.cardinality(p_attempts) THEN
        RAISE EXCEPTION 'task_heartbeat: % tasks but % attempts', pg_catalog.cardinality(p_task_ids), pg_catalog.cardinality(p_attempts)
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE kiln.task t SET heartbeat_at = pg_catalog.now()
     WHERE t.id IN (SELECT l.id FROM kiln.task l
                     JOIN unnest(p_task_ids, p_attempts) AS h(task_id, attempt)
                       ON l.id = h.task_id AND l.attempt = h.attempt
                    WHERE l.builder = p_builder AND l.status = 'building'
                    ORDER BY l.id FOR NO KEY UPDATE OF l SKIP LOCKED);
    RETURN QUERY
        SELECT h.task_id FROM unnest(p_task_ids, p_attempts) AS h(task_id, attempt)
         WHERE NOT EXISTS (SELECT 1 FROM kiln.task t WHERE t.id = h.task_id AND t.attempt = h.attempt
                                                      AND t.builder = p_builder AND t.status = 'building');
END $function$;
COMMENT ON FUNCTION kiln.task_heartbeat(text, bigint[], integer[]) IS 'Protocol step 2: heartbeats the attempts (task ids and attempt numbers, pairwise) that one of session_user''s builders holds; returns the task ids whose attempt it no longer holds (its build must stop). Never waits for a row lock.';

-- Step 3, log, for several attempts at once (the log batches of a
-- builder's slots that are stored at the same moment: one statement, one
-- transaction): each batch is stored, and its bytes counted on its
-- attempt, only while the builder holds the attempt; stored, per task in
-- the order given, says which were. Each task once. The attempts' rows are
-- locked in task order, as kiln.cancel_job_for locks them, so that a
-- batch and a cancel never wait for each other in a circle.
CREATE OR REPLACE FUNCTION kiln.task_log_many(p_builder text, p_task_ids bigint[], p_attempts integer[], p_seqs integer[], p_data text[], p_truncated boolean[])
 RETURNS TABLE(task_id bigint, stored boolean)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
DECLARE
    v_held bigint[]; -- the ordinals of the batches whose attempt is held, in task order
    v_new bigint[];  -- of those, the ones stored now (not already stored)
BEGIN
    PERFORM kiln.task_check_builder(p_builder);
    IF pg_catalog.cardinality(p_task_ids) IS DISTINCT FROM pg_catalog.cardinality(p_attempts)
       OR pg_catalog.cardinality(p_task_ids) IS DISTINCT FROM pg_catalog.cardinality(p_seqs)
       OR pg_catalog.cardinality(p_task_ids) IS DISTINCT FROM pg_catalog.cardinality(p_data)
       OR pg_catalog.cardinality(p_task_ids) IS DISTINCT FROM pg_catalog.cardinality(p_truncated) THEN
        RAISE EXCEPTION 'task_log_many: % tasks, % attempts, % sequence numbers, % texts and % truncated flags',
            pg_catalog.cardinality(p_task_ids), pg_catalog.cardinality(p_attempts), pg_catalog.cardinality(p_seqs),
            pg_catalog.cardinality(p_data), pg_catalog.cardinality(p_truncated) USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_task_ids, p_attempts, p_seqs, p_data) AS r(t, a, s, d)
                WHERE r.t IS NULL OR r.a IS NULL OR r.s IS NULL OR r.d IS NULL)
       OR (SELECT count(DISTINCT r.t) FROM unnest(p_task_ids) AS r(t)) <> pg_catalog.cardinality(p_task_ids) THEN
        RAISE EXCEPTION 'task_log_many: every task once, with its attempt, sequence number and text' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT pg_catalog.array_agg(r.n ORDER BY r.task_id) INTO v_held
      FROM unnest(p_task_ids, p_attempts) WITH ORDINALITY AS r(task_id, attempt, n)
      JOIN kiln.task t ON t.id = r.task_id AND t.attempt = r.attempt AND t.builder = p_builder AND t.status = 'building';
    IF pg_catalog.cardinality(v_held) > 1 THEN
        PERFORM 1 FROM kiln.attempt a JOIN unnest(v_held) AS h(n) ON a.task_id = p_task_ids[h.n] AND a.attempt = p_attempts[h.n]
          ORDER BY a.task_id FOR NO KEY UPDATE OF a;
    END IF;
    IF v_held IS NOT NULL THEN
        -- A batch sent again under its number, because the answer to the
        -- first send was lost with the connection (it may have committed),
        -- is stored and counted once; other text under a stored number is
        -- refused.
        WITH ins AS (
            INSERT INTO kiln.log_chunk AS c (task_id, attempt, seq, data)
            SELECT p_task_ids[h.n], p_attempts[h.n], p_seqs[h.n], p_data[h.n] FROM unnest(v_held) AS h(n)
            ON CONFLICT ON CONSTRAINT log_chunk_pkey DO NOTHING
            RETURNING c.task_id
        )
        SELECT pg_catalog.array_agg(h.n ORDER BY h.n) INTO v_new
          FROM unnest(v_held) AS h(n) JOIN ins ON ins.task_id = p_task_ids[h.n];
        IF pg_catalog.cardinality(v_new) IS DISTINCT FROM pg_catalog.cardinality(v_held)
           AND EXISTS (SELECT 1 FROM unnest(v_held) AS h(n)
                         JOIN kiln.log_chunk c ON c.task_id = p_task_ids[h.n] AND c.attempt = p_attempts[h.n] AND c.seq = p_seqs[h.n]
                        WHERE NOT h.n = ANY (coalesce(v_new, '{}')) AND c.data IS DISTINCT FROM p_data[h.n]) THEN
            RAISE EXCEPTION 'task_log_many: a log batch number already stored with other text' USING ERRCODE = 'unique_violation';
        END IF;
        UPDATE kiln.attempt a SET log_bytes = a.log_bytes + pg_catalog.octet_length(p_data[h.n]),
               log_truncated = a.log_truncated OR coalesce(p_truncated[h.n], false)
          FROM unnest(v_new) AS h(n)
         WHERE a.task_id = p_task_ids[h.n] AND a.attempt = p_attempts[h.n];
    END IF;
    RETURN QUERY
    SELECT r.task_id, r.n = ANY (coalesce(v_held, '{}'))
      FROM unnest(p_task_ids) WITH ORDINALITY AS r(task_id, n)
     ORDER BY r.n;
END $function$;
COMMENT ON FUNCTION kiln.task_log_many(text, bigint[], integer[], integer[], text[], boolean[]) IS 'Protocol step 3 for several attempts in one statement (task ids, attempt numbers, sequence numbers, texts and truncated flags pairwise, each task once): stores each log batch of an attempt that one of session_user''s builders holds and counts its bytes on the attempt; a batch sent again with the same number and text (its first answer lost) is stored and counted once, other text under a stored number is refused (unique_violation). Returns per task, in the order given, stored (false, and nothing of it stored, when the attempt is not held). Locks the attempts in task order.';

-- Step 3 for one attempt (kiln.task_log_many of one).
CREATE OR REPLACE FUNCTION kiln.task_log(p_builder text, p_task_id bigint, p_attempt integer, p_seq integer, p_data text, p_truncated boolean)
 RETURNS boolean
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
    SELECT m.stored FROM kiln.task_log_many(p_builder, ARRAY[p_task_id], ARRAY[p_attempt], ARRAY[p_seq], ARRAY[p_data], ARRAY[p_truncated]) m
$function$;
COMMENT ON FUNCTION kiln.task_log(text, bigint, integer, integer, text, boolean) IS 'Protocol step 3 for one attempt: kiln.task_log_many of one. Stores one log batch of an attempt that one of session_user''s builders holds and counts its bytes on the attempt; false (nothing stored) when the attempt is not held.';

-- Step 4, finish, for several attempts at once (a builder's slots that
-- finish at the same moment: one statement, one transaction): the ends of
-- the logs, the artifacts (small ones' bytes given here and stored as
-- verified blobs; larger ones' blobs stored before, in the same
-- transaction), each attempt's build info, final status and failure stage,
-- each task's final status. An attempt the builder does not hold is left
-- alone (finished false, nothing of it written); the others finish. Bad
-- input (a status, a stage, an artifact's bytes or blob) refuses the whole
-- call. A failure at a stage that is the farm's fault
-- (kiln.failure_stage.infrastructure) does not end the task while the
-- platform's max_infra_retries allows: the attempt ends failed and
-- retried, the task waits again, avoiding this builder for a while, and
-- retry_after_seconds says how long the caller's River job is to snooze.
-- The jobs, then the tasks, are locked in id order. The per-task arrays
-- (p_task_ids to p_log_data) go pairwise, and so do the per-artifact ones
-- (p_artifact_tasks, the task each artifact belongs to, to p_artifact_data).
CREATE OR REPLACE FUNCTION kiln.task_finish_many(p_builder text, p_task_ids bigint[], p_attempts integer[], p_statuses text[], p_reasons text[], p_build_infos jsonb[], p_log_truncated boolean[], p_failure_stages text[], p_log_seqs integer[], p_log_data text[], p_artifact_tasks bigint[], p_artifact_kinds text[], p_artifact_names text[], p_artifact_sha256s bytea[], p_artifact_sizes bigint[], p_artifact_data bytea[])
 RETURNS TABLE(task_id bigint, finished boolean, retry_after_seconds double precision)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
DECLARE
    n integer := coalesce(pg_catalog.cardinality(p_task_ids), 0);
    n_art integer := coalesce(pg_catalog.cardinality(p_artifact_kinds), 0);
    art_tasks bigint[] := coalesce(p_artifact_tasks, '{}');
    names text[] := coalesce(p_artifact_names, '{}');
    sums bytea[] := coalesce(p_artifact_sha256s, '{}');
    sizes bigint[] := coalesce(p_artifact_sizes, '{}');
    v_held bigint[];
    v_retried bigint[] := '{}';
    v_waits double precision[] := '{}';
    bad text;
    r record;
    wait interval;
    why text;
    i integer;
    v_inline bigint[];          -- the artifacts whose bytes come with the call, of held attempts
    v_inline_digests bytea[];   -- their SHA-256s, pairwise
    v_digests bytea[];          -- each of those contents once
    v_firsts bigint[];          -- the first artifact of each content
    v_keys bytea[];             -- the blob that holds each content
    v_new bigint[];             -- the contents stored under their SHA-256 here (ordinals in v_digests)
    v_staged bigint[] := '{}';  -- the contents staged under a random key here
BEGIN
    PERFORM kiln.task_check_builder(p_builder);
    IF coalesce(pg_catalog.cardinality(p_attempts), 0) <> n OR coalesce(pg_catalog.cardinality(p_statuses), 0) <> n
       OR coalesce(pg_catalog.cardinality(p_reasons), 0) <> n OR coalesce(pg_catalog.cardinality(p_build_infos), 0) <> n
       OR coalesce(pg_catalog.cardinality(p_log_truncated), 0) <> n OR coalesce(pg_catalog.cardinality(p_failure_stages), 0) <> n
       OR coalesce(pg_catalog.cardinality(p_log_seqs), 0) <> n OR coalesce(pg_catalog.cardinality(p_log_data), 0) <> n THEN
        RAISE EXCEPTION 'task_finish: the per-task arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF pg_catalog.cardinality(art_tasks) <> n_art OR pg_catalog.cardinality(names) <> n_art
       OR pg_catalog.cardinality(sums) <> n_art OR pg_catalog.cardinality(sizes) <> n_art
       OR (p_artifact_data IS NOT NULL AND pg_catalog.cardinality(p_artifact_data) <> n_art) THEN
        RAISE EXCEPTION 'task_finish: the artifact arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(p_task_ids, p_attempts) AS f(id, attempt) WHERE f.id IS NULL OR f.attempt IS NULL)
       OR (SELECT count(DISTINCT f.id) FROM unnest(p_task_ids) AS f(id)) <> n THEN
        RAISE EXCEPTION 'task_finish: every task once, with its attempt' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT coalesce(f.status, 'NULL') INTO bad FROM unnest(p_statuses) AS f(status)
     WHERE f.status IS NULL OR f.status NOT IN ('succeeded', 'failed', 'timed_out') LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'a builder finishes a task as succeeded, failed or timed_out, not %', bad
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT f.status INTO bad FROM unnest(p_statuses, p_failure_stages) AS f(status, stage)
     WHERE f.stage IS NOT NULL AND f.status <> 'failed' LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'only a failed attempt has a failure stage, not a % one', bad USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT f.stage INTO bad FROM unnest(p_failure_stages) AS f(stage)
     WHERE f.stage IS NOT NULL AND NOT EXISTS (SELECT 1 FROM kiln.failure_stage s WHERE s.name = f.stage) LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'unknown failure stage % (kiln.failure_stage lists them)', bad USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF EXISTS (SELECT 1 FROM unnest(art_tasks) AS a(task) WHERE a.task IS NULL OR NOT a.task = ANY (p_task_ids)) THEN
        RAISE EXCEPTION 'task_finish: an artifact belongs to no task finished here' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- The jobs, then the attempts v_held, in id order.
    PERFORM 1 FROM kiln.job j WHERE j.id IN (SELECT l.job_id FROM kiln.task l WHERE l.id = ANY (p_task_ids))
     ORDER BY j.id FOR UPDATE OF j;
    SELECT coalesce(pg_catalog.array_agg(h.id), '{}') INTO v_held
      FROM (SELECT l.id FROM kiln.task l JOIN unnest(p_task_ids, p_attempts) AS f(id, attempt) ON l.id = f.id AND l.attempt = f.attempt
             WHERE l.builder = p_builder AND l.status = 'building'
             ORDER BY l.id FOR UPDATE OF l) h;
    -- The ends of the logs, before the attempts end: a follower reads the
    -- end before it sees the attempt end.
    INSERT INTO kiln.log_chunk (task_id, attempt, seq, data)
    SELECT f.id, f.attempt, f.seq, f.data FROM unnest(p_task_ids, p_attempts, p_log_seqs, p_log_data) AS f(id, attempt, seq, data)
     WHERE f.id = ANY (v_held) AND f.data IS NOT NULL;
    -- A small artifact's bytes come with the call: the server hashes them
    -- and stores them as a blob the builder vouches for (verified), or
    -- reuses a verified blob of the same content; an unverified blob that
    -- has the SHA-256 is never trusted (blob.Put's rule): the bytes are
    -- then staged under a random key. They go in chunks of 256 KiB
    -- (blob.ChunkSize).
    -- All in a few statements, whatever the number of artifacts: each
    -- content once (v_digests), its verified blob if one holds it
    -- (v_keys), else a new blob under its SHA-256 or, when an unusable
    -- blob has that, under a random key.
    SELECT pg_catalog.array_agg(a.i ORDER BY a.i), pg_catalog.array_agg(pg_catalog.sha256(a.data) ORDER BY a.i)
      INTO v_inline, v_inline_digests
      FROM unnest(p_artifact_data, art_tasks) WITH ORDINALITY AS a(data, task, i)
     WHERE a.data IS NOT NULL AND a.task = ANY (v_held);
    IF v_inline IS NOT NULL THEN
        SELECT names[x.i] INTO bad FROM unnest(v_inline, v_inline_digests) AS x(i, digest)
         WHERE sums[x.i] IS DISTINCT FROM x.digest AND sums[x.i] IS NOT NULL
            OR sizes[x.i] IS DISTINCT FROM pg_catalog.octet_length(p_artifact_data[x.i]) AND sizes[x.i] IS NOT NULL
         ORDER BY x.i LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'artifact %: the bytes given do not have the sha256 and size given', bad
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT pg_catalog.array_agg(c.digest ORDER BY c.digest), pg_catalog.array_agg(c.i ORDER BY c.digest),
               pg_catalog.array_agg(c.key ORDER BY c.digest)
          INTO v_digests, v_firsts, v_keys
          FROM (SELECT DISTINCT ON (x.digest) x.digest, x.i,
                       (SELECT b.sha256 FROM kiln.blob b
                         WHERE (b.sha256 = x.digest AND b.content_sha256 IS NULL OR b.content_sha256 = x.digest)
                           AND b.size = pg_catalog.octet_length(p_artifact_data[x.i]) AND b.verified_at IS NOT NULL
                         ORDER BY b.created_at LIMIT 1) AS key
                  FROM unnest(v_inline, v_inline_digests) AS x(i, digest)
                 ORDER BY x.digest, x.i) c;
        WITH stored AS (
            INSERT INTO kiln.blob (sha256, size, chunk_size, verified_at)
            SELECT c.digest, pg_catalog.octet_length(p_artifact_data[c.i]), 262144, pg_catalog.now()
              FROM unnest(v_digests, v_firsts, v_keys) AS c(digest, i, key)
             WHERE c.key IS NULL
             ORDER BY c.digest
            ON CONFLICT (sha256) DO NOTHING
            RETURNING sha256
        )
        SELECT pg_catalog.array_agg(c.n ORDER BY c.n) INTO v_new
          FROM unnest(v_digests) WITH ORDINALITY AS c(digest, n) JOIN stored s ON s.sha256 = c.digest;
        v_new := coalesce(v_new, '{}');
        FOR i IN 1 .. pg_catalog.cardinality(v_digests) LOOP
            IF v_keys[i] IS NULL THEN
                IF i = ANY (v_new) THEN
                    v_keys[i] := v_digests[i];
                ELSE
                    v_keys[i] := pg_catalog.sha256(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()) || pg_catalog.uuid_send(pg_catalog.gen_random_uuid()));
                    v_staged := v_staged || i;
                END IF;
            END IF;
        END LOOP;
        INSERT INTO kiln.blob (sha256, size, chunk_size, content_sha256, verified_at)
        SELECT v_keys[c.n], pg_catalog.octet_length(p_artifact_data[v_firsts[c.n]]), 262144, v_digests[c.n], pg_catalog.now()
          FROM unnest(v_staged) AS c(n) ORDER BY c.n;
        INSERT INTO kiln.blob_chunk (sha256, seq, data)
        SELECT v_keys[c.n], g.seq::integer,
               pg_catalog.substr(p_artifact_data[v_firsts[c.n]], (g.seq * 262144 + 1)::integer, 262144)
          FROM unnest(v_new || v_staged) AS c(n),
               pg_catalog.generate_series(0, (pg_catalog.octet_length(p_artifact_data[v_firsts[c.n]]) - 1) / 262144) AS g(seq)
         ORDER BY c.n, g.seq;
        -- Each artifact with bytes names its content's blob, with its
        -- true size.
        SELECT pg_catalog.array_agg(coalesce(k.key, a.sha256) ORDER BY a.i),
               pg_catalog.array_agg(coalesce(pg_catalog.octet_length(p_artifact_data[x.i])::bigint, a.size) ORDER BY a.i)
          INTO sums, sizes
          FROM unnest(sums, sizes) WITH ORDINALITY AS a(sha256, size, i)
          LEFT JOIN unnest(v_inline, v_inline_digests) AS x(i, digest) ON x.i = a.i
          LEFT JOIN unnest(v_digests, v_keys) AS k(digest, key) ON k.digest = x.digest;
    END IF;
    -- An artifact names bytes that exist, with their true size.
    SELECT a.name INTO bad
      FROM unnest(art_tasks, names, sums, sizes) AS a(task, name, sha256, size)
     WHERE a.task = ANY (v_held) AND NOT EXISTS (SELECT 1 FROM kiln.blob b WHERE b.sha256 = a.sha256 AND b.size = a.size)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'artifact %: no stored blob with that sha256 and size', bad USING ERRCODE = 'foreign_key_violation';
    END IF;
    INSERT INTO kiln.artifact (task_id, attempt, kind, file_name, blob_sha256, size)
    SELECT a.task, f.attempt, a.kind, a.name, a.sha256, a.size
      FROM unnest(art_tasks, coalesce(p_artifact_kinds, '{}'), names, sums, sizes) AS a(task, kind, name, sha256, size)
      JOIN unnest(p_task_ids, p_attempts) AS f(id, attempt) ON f.id = a.task
     WHERE a.task = ANY (v_held);
    -- The farm's fault, and retries left: the attempt ends failed and
    -- retried, the task waits again.
    FOR r IN SELECT f.id, f.attempt, f.reason, f.info, f.truncated, f.stage, f.data, t.job_id, t.infra_retries,
                    p.max_infra_retries, p.infra_retry_backoff
               FROM unnest(p_task_ids, p_attempts, p_reasons, p_build_infos, p_log_truncated, p_failure_stages, p_log_data)
                    AS f(id, attempt, reason, info, truncated, stage, data)
               JOIN kiln.task t ON t.id = f.id
               JOIN kiln.platform p ON p.name = t.platform
               JOIN kiln.failure_stage s ON s.name = f.stage
              WHERE f.id = ANY (v_held) AND s.infrastructure AND t.infra_retries < p.max_infra_retries
              ORDER BY f.id
    LOOP
        wait := least(r.infra_retry_backoff * pg_catalog.power(2, r.infra_retries)::integer, interval '1 hour');
        UPDATE kiln.attempt a SET status = 'failed', finished_at = pg_catalog.now(), reason = r.reason, build_info = r.info,
               failure_stage = r.stage, retried = true,
               log_truncated = a.log_truncated OR coalesce(r.truncated, false),
               log_bytes = a.log_bytes + coalesce(pg_catalog.octet_length(r.data), 0)
         WHERE a.task_id = r.id AND a.attempt = r.attempt;
        why := pg_catalog.format('retry %s of %s after %s (the farm''s fault, stage %s): %s',
                                 r.infra_retries + 1, r.max_infra_retries, wait, r.stage, coalesce(r.reason, 'no reason given'));
        UPDATE kiln.task l SET status = 'pending', builder = NULL, started_at = NULL, heartbeat_at = NULL,
               reason = why, failure_stage = r.stage, infra_retries = l.infra_retries + 1,
               avoid_builder = p_builder, avoid_until = pg_catalog.now() + wait + greatest(wait, interval '1 minute')
         WHERE l.id = r.id;
        INSERT INTO kiln.event (kind, job_id, task_id, attempt, builder, old_status, new_status, detail)
        VALUES ('task.retry', r.job_id, r.id, r.attempt, p_builder, 'building', 'pending',
                pg_catalog.jsonb_build_object('failure_stage', r.stage, 'reason', r.reason,
                                              'retry', r.infra_retries + 1, 'max_infra_retries', r.max_infra_retries,
                                              'backoff_seconds', extract(epoch FROM wait)::double precision, 'avoid_builder', p_builder));
        v_retried := v_retried || r.id;
        v_waits := v_waits || extract(epoch FROM wait)::double precision;
    END LOOP;
    -- The others end: the attempts first, then the tasks (and with them
    -- the jobs): the history reads in that order.
    UPDATE kiln.attempt a SET status = f.status, finished_at = pg_catalog.now(), reason = f.reason, build_info = f.info,
           failure_stage = f.stage,
           log_truncated = a.log_truncated OR coalesce(f.truncated, false),
           log_bytes = a.log_bytes + coalesce(pg_catalog.octet_length(f.data), 0)
      FROM unnest(p_task_ids, p_attempts, p_statuses, p_reasons, p_build_infos, p_log_truncated, p_failure_stages, p_log_data)
           AS f(id, attempt, status, reason, info, truncated, stage, data)
     WHERE f.id = ANY (v_held) AND NOT f.id = ANY (v_retried) AND a.task_id = f.id AND a.attempt = f.attempt;
    UPDATE kiln.task l SET status = f.status, builder = NULL, finished_at = pg_catalog.now(),
           reason = CASE WHEN s.infrastructure
                         THEN pg_catalog.format('%s (the farm''s fault, stage %s; not retried: %s retries of %s used)',
                                                coalesce(f.reason, 'no reason given'), f.stage, l.infra_retries,
                                                (SELECT p.max_infra_retries FROM kiln.platform p WHERE p.name = l.platform))
                         ELSE f.reason END,
           failure_stage = f.stage, avoid_builder = NULL, avoid_until = NULL
      FROM unnest(p_task_ids, p_statuses, p_reasons, p_failure_stages) AS f(id, status, reason, stage)
      LEFT JOIN kiln.failure_stage s ON s.name = f.stage
     WHERE f.id = ANY (v_held) AND NOT f.id = ANY (v_retried) AND l.id = f.id;
    RETURN QUERY
        SELECT f.id, f.id = ANY (v_held), w.seconds
          FROM unnest(p_task_ids) WITH ORDINALITY AS f(id, n)
          LEFT JOIN unnest(v_retried, v_waits) AS w(id, seconds) ON w.id = f.id
         ORDER BY f.n;
END $function$;
COMMENT ON FUNCTION kiln.task_finish_many(text, bigint[], integer[], text[], text[], jsonb[], boolean[], text[], integer[], text[], bigint[], text[], text[], bytea[], bigint[], bytea[]) IS 'Protocol step 4 for several attempts in one statement: one of session_user''s builders stores the end of each attempt''s log (p_log_seqs, p_log_data; none when NULL) and ends each attempt it holds as succeeded, failed (with the failure stage, kiln.failure_stage, when known) or timed_out, with its artifacts (per artifact its task, kind, name, sha256, size and data pairwise: an artifact with data has its bytes stored here as a verified blob, its sha256 and size checked when given; one without names a blob stored before) and build info. A failure at an infrastructure stage requeues the task while the platform''s max_infra_retries allows (task.retry event; retry_after_seconds is the backoff); otherwise the task ends. Returns per task, in the order given, finished (false, and nothing of it written, when the attempt is not held). Bad input refuses the whole call. Locks the jobs, then the tasks, in id order.';

-- Step 4 for one attempt (kiln.task_finish_many of one).
CREATE OR REPLACE FUNCTION kiln.task_finish(p_builder text, p_task_id bigint, p_attempt integer, p_status text, p_reason text, p_build_info jsonb, p_log_truncated boolean, p_artifact_kinds text[], p_artifact_names text[], p_artifact_sha256s bytea[], p_artifact_sizes bigint[], p_failure_stage text, p_artifact_data bytea[], p_log_seq integer, p_log_data text, OUT finished boolean, OUT retry_after_seconds double precision)
 RETURNS record
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
    SELECT m.finished, m.retry_after_seconds
      FROM kiln.task_finish_many(p_builder, ARRAY[p_task_id], ARRAY[p_attempt], ARRAY[p_status], ARRAY[p_reason], ARRAY[p_build_info],
                                 ARRAY[p_log_truncated], ARRAY[p_failure_stage], ARRAY[p_log_seq], ARRAY[p_log_data],
                                 pg_catalog.array_fill(p_task_id, ARRAY[coalesce(pg_catalog.cardinality(p_artifact_kinds), 0)]),
                                 p_artifact_kinds, p_artifact_names, p_artifact_sha256s, p_artifact_sizes, p_artifact_data) m
$function$;
COMMENT ON FUNCTION kiln.task_finish(text, bigint, integer, text, text, jsonb, boolean, text[], text[], bytea[], bigint[], text, bytea[], integer, text) IS 'Protocol step 4 in one call for one attempt (kiln.task_finish_many of one): one of session_user''s builders stores the end of the attempt''s log (p_log_seq, p_log_data; none when NULL) and ends the attempt it holds as succeeded, failed (with the failure stage, kiln.failure_stage, when known) or timed_out, with its artifacts (kinds, names, sha256s, sizes and data pairwise: an artifact with data has its bytes stored here as a verified blob, its sha256 and size checked when given; one without names a blob stored before) and build info. A failure at an infrastructure stage requeues the task while the platform''s max_infra_retries allows (task.retry event; retry_after_seconds is the backoff); otherwise the task ends. finished false, and nothing written, when the attempt is not held.';

-- Step 4 with every artifact's blob stored before and no end of the log.
CREATE OR REPLACE FUNCTION kiln.task_finish(p_builder text, p_task_id bigint, p_attempt integer, p_status text, p_reason text, p_build_info jsonb, p_log_truncated boolean, p_artifact_kinds text[], p_artifact_names text[], p_artifact_sha256s bytea[], p_artifact_sizes bigint[], p_failure_stage text, OUT finished boolean, OUT retry_after_seconds double precision)
 RETURNS record
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
    SELECT f.finished, f.retry_after_seconds
      FROM kiln.task_finish(p_builder, p_task_id, p_attempt, p_status, p_reason, p_build_info, p_log_truncated,
                            p_artifact_kinds, p_artifact_names, p_artifact_sha256s, p_artifact_sizes, p_failure_stage,
                            NULL::bytea[], NULL::integer, NULL::text) f
$function$;
COMMENT ON FUNCTION kiln.task_finish(text, bigint, integer, text, text, jsonb, boolean, text[], text[], bytea[], bigint[], text) IS 'Protocol step 4 with every artifact''s blob stored before (kinds, names, sha256s and sizes pairwise) and no end of the log: kiln.task_finish with p_artifact_data, p_log_seq and p_log_data NULL. finished false, and nothing written, when the attempt is not held; retry_after_seconds when an infrastructure failure requeued the task.';

-- Step 4 without a failure stage (builders before 0024).
CREATE OR REPLACE FUNCTION kiln.task_finish(p_builder text, p_task_id bigint, p_attempt integer, p_status text, p_reason text, p_build_info jsonb, p_log_truncated boolean, p_artifact_kinds text[], p_artifact_names text[], p_artifact_sha256s bytea[], p_artifact_sizes bigint[])
 RETURNS boolean
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
    SELECT f.finished FROM kiln.task_finish(p_builder, p_task_id, p_attempt, p_status, p_reason, p_build_info, p_log_truncated,
                                            p_artifact_kinds, p_artifact_names, p_artifact_sha256s, p_artifact_sizes, NULL::text) f
$function$;
COMMENT ON FUNCTION kiln.task_finish(text, bigint, integer, text, text, jsonb, boolean, text[], text[], bytea[], bigint[]) IS 'Protocol step 4 without a failure stage: kiln.task_finish with p_failure_stage NULL (never retried). True when finished; false, and nothing written, when the attempt is not held.';

-- Step 5, give back (the builder shuts down): the task waits again, the
-- attempt is recorded as returned and not counted as lost. The River job is
-- snoozed by the builder's River client (river.JobSnooze(0)).
CREATE OR REPLACE FUNCTION kiln.task_give_back(p_builder text, p_task_id bigint, p_attempt integer)
 RETURNS boolean
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    v_job bigint;
BEGIN
    PERFORM kiln.task_check_builder(p_builder);
    SELECT t.job_id INTO v_job FROM kiln.task t WHERE t.id = p_task_id;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM 1 FROM kiln.job j WHERE j.id = v_job FOR UPDATE;
    UPDATE kiln.task t SET status = 'pending', builder = NULL, started_at = NULL, heartbeat_at = NULL
     WHERE t.id = p_task_id AND t.attempt = p_attempt AND t.builder = p_builder AND t.status = 'building';
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    UPDATE kiln.attempt a SET status = 'returned', finished_at = pg_catalog.now(),
           reason = 'given back: builder ' || p_builder || ' shut down'
     WHERE a.task_id = p_task_id AND a.attempt = p_attempt AND a.status = 'building';
    RETURN true;
END $function$;
COMMENT ON FUNCTION kiln.task_give_back(text, bigint, integer) IS 'Protocol step 5: one of session_user''s builders gives back the attempt it holds on shutdown: the task is pending again, the attempt returned (not counted as lost). False when the attempt is not held.';

-- Shared by the janitor (a silent builder) and a restarted builder (its
-- crashed run's attempts). The caller has locked the job and the task and
-- checked that the attempt is current. Writes an event of kind p_requeued
-- or p_ended, as the task is requeued or ended.
CREATE OR REPLACE FUNCTION kiln.task_lose(p_task kiln.task, p_why text, p_requeued text, p_ended text, p_detail jsonb, OUT outcome text, OUT lost_count integer, OUT river_job_state text)
 RETURNS record
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    max_lost integer;
    losses integer;
    queue text;
    ended_why text;
    detail jsonb;
BEGIN
    SELECT s.max_lost INTO max_lost FROM kiln.protocol_setting s;
    losses := p_task.lost_count + 1;
    lost_count := losses;
    UPDATE kiln.attempt a SET status = 'lost', finished_at = pg_catalog.now(), reason = p_why
     WHERE a.task_id = p_task.id AND a.attempt = p_task.attempt AND a.status = 'building';
    detail := coalesce(p_detail, '{}') || pg_catalog.jsonb_build_object('reason', p_why, 'lost_count', losses,
                                                                         'max_lost', max_lost, 'river_job_id', p_task.river_job_id);
    IF lost_count > max_lost THEN
        outcome := 'lost';
        ended_why := pg_catalog.format('lost %s times (more than %s); last time %s', losses, max_lost, p_why);
        UPDATE kiln.task t SET status = 'lost', builder = NULL, lost_count = losses,
               finished_at = pg_catalog.now(), reason = ended_why
         WHERE t.id = p_task.id;
        UPDATE river.river_job r SET state = 'cancelled', finalized_at = pg_catalog.now()
         WHERE r.id = p_task.river_job_id AND r.state NOT IN ('cancelled', 'completed', 'discarded');
        river_job_state := CASE WHEN FOUND THEN 'cancelled' ELSE 'not_cancelled' END;
        detail := detail || pg_catalog.jsonb_build_object('reason', ended_why, 'river_job_cancelled', river_job_state = 'cancelled');
    ELSE
        outcome := 'pending';
        UPDATE kiln.task t SET status = 'pending', builder = NULL, lost_count = losses, reason = p_why
         WHERE t.id = p_task.id;
        -- Its River job available again at once (max_attempts raised past
        -- its attempts, so River never discards a requeued task), and the
        -- queue's builders woken as River's own insert would.
        UPDATE river.river_job r SET state = 'available', scheduled_at = pg_catalog.now(), finalized_at = NULL,
               max_attempts = greatest(r.max_attempts, r.attempt + 1)
         WHERE r.id = p_task.river_job_id AND r.kind = 'build' AND r.args ->> 'task_id' = p_task.id::text
        RETURNING r.queue INTO queue;
        IF FOUND THEN
            river_job_state := 'made_available';
            PERFORM pg_catalog.pg_notify('river.river_insert', pg_catalog.json_build_object('queue', queue)::text);
        ELSE
            river_job_state := 'missing';
        END IF;
        detail := detail || pg_catalog.jsonb_build_object('river_job', river_job_state);
    END IF;
    INSERT INTO kiln.event (kind, job_id, task_id, attempt, builder, old_status, new_status, detail)
    VALUES (CASE outcome WHEN 'lost' THEN p_ended ELSE p_requeued END, p_task.job_id, p_task.id, p_task.attempt, p_task.builder, 'building', outcome, detail);
END $function$;
COMMENT ON FUNCTION kiln.task_lose(kiln.task, text, text, text, jsonb) IS 'Closes a task''s current attempt as lost and requeues the task (River job available again) or, past kiln.protocol_setting.max_lost, ends it as lost (River job cancelled); records the event. Called only by kiln.task_take_back_lost and kiln.task_recover, which lock and check first; executable by no role.';

-- Step 6, recover: a restarted builder gives back what its crashed run
-- left building (docs/builder.md), as the janitor would for a silent one.
CREATE OR REPLACE FUNCTION kiln.task_recover(p_builder text, p_task_id bigint, p_attempt integer, OUT outcome text, OUT lost_count integer, OUT river_job_state text)
 RETURNS record
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    t kiln.task%ROWTYPE;
    why text;
BEGIN
    PERFORM kiln.task_check_builder(p_builder);
    SELECT * INTO t FROM kiln.task l WHERE l.id = p_task_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM 1 FROM kiln.job j WHERE j.id = t.job_id FOR UPDATE;
    SELECT * INTO t FROM kiln.task l
     WHERE l.id = p_task_id AND l.attempt = p_attempt AND l.builder = p_builder AND l.status = 'building'
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN; -- the janitor or a cancel was quicker
    END IF;
    why := pg_catalog.format('builder %s restarted: the build of attempt %s died with its previous run', p_builder, p_attempt);
    SELECT l.outcome, l.lost_count, l.river_job_state INTO outcome, lost_count, river_job_state
      FROM kiln.task_lose(t, why, 'builder.recover', 'builder.recover', '{}') l;
END $function$;
COMMENT ON FUNCTION kiln.task_recover(text, bigint, integer) IS 'Protocol step 6: one of session_user''s builders, restarted, gives back an attempt its crashed previous run left: lost, and the task requeued or ended as lost past max_lost (builder.recover event). outcome is pending, lost, or NULL when the attempt was no longer held.';

-- Step 7, take back a lost task: building with no heartbeat for p_horizon,
-- re-checked under the locks. outcome: pending (requeued), lost (ended), or
-- NULL (it heart-beat, finished, or another janitor took it).
CREATE OR REPLACE FUNCTION kiln.task_take_back_lost(p_task_id bigint, p_horizon interval, OUT outcome text, OUT attempt integer, OUT builder text, OUT lost_count integer, OUT river_job_state text, OUT river_job_id bigint, OUT platform text, OUT priority smallint)
 RETURNS record
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    t kiln.task%ROWTYPE;
    silent interval;
    why text;
BEGIN
    PERFORM kiln.task_check_janitor();
    SELECT * INTO t FROM kiln.task l WHERE l.id = p_task_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM 1 FROM kiln.job j WHERE j.id = t.job_id FOR UPDATE;
    SELECT * INTO t FROM kiln.task l
     WHERE l.id = p_task_id AND l.status = 'building' AND l.heartbeat_at < pg_catalog.now() - p_horizon
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    silent := pg_catalog.date_trunc('second', pg_catalog.now() - t.heartbeat_at);
    why := pg_catalog.format('builder %s went silent: it stopped heart-beating %s ago (horizon %s)', t.builder, silent, p_horizon);
    SELECT l.outcome, l.lost_count, l.river_job_state INTO outcome, lost_count, river_job_state
      FROM kiln.task_lose(t, why, 'janitor.requeue', 'janitor.lost',
                          pg_catalog.jsonb_build_object('silent_seconds', extract(epoch FROM silent)::bigint)) l;
    attempt := t.attempt;
    builder := t.builder;
    river_job_id := t.river_job_id;
    platform := t.platform;
    SELECT j.priority INTO priority FROM kiln.job j WHERE j.id = t.job_id;
END $function$;
COMMENT ON FUNCTION kiln.task_take_back_lost(bigint, interval) IS 'Protocol step 7 (kiln_janitor members): takes a task back from a builder silent for longer than p_horizon, re-checked under the job''s and the task''s lock: requeued (janitor.requeue) or, past max_lost, ended as lost (janitor.lost). river_job_state missing means the task needs a new River job (kiln.task_link_river_job).';

-- Step 8, time out a runaway build: building longer than its platform's
-- timeout plus p_grace, whether or not its builder heart-beats.
CREATE OR REPLACE FUNCTION kiln.task_time_out(p_task_id bigint, p_grace interval, OUT ended boolean, OUT attempt integer, OUT builder text, OUT river_job_id bigint, OUT river_job_cancelled boolean)
 RETURNS record
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    t kiln.task%ROWTYPE;
    timeout interval;
    ran interval;
    why text;
BEGIN
    PERFORM kiln.task_check_janitor();
    ended := false;
    SELECT * INTO t FROM kiln.task l WHERE l.id = p_task_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM 1 FROM kiln.job j WHERE j.id = t.job_id FOR UPDATE;
    SELECT l.* INTO t FROM kiln.task l JOIN kiln.platform p ON p.name = l.platform
     WHERE l.id = p_task_id AND l.status = 'building' AND l.started_at < pg_catalog.now() - p.timeout - p_grace
       FOR UPDATE OF l;
    IF NOT FOUND THEN
        RETURN; -- finished or taken care of meanwhile
    END IF;
    SELECT p.timeout INTO timeout FROM kiln.platform p WHERE p.name = t.platform;
    ran := pg_catalog.date_trunc('second', pg_catalog.now() - t.started_at);
    why := pg_catalog.format('ran %s, past the platform timeout %s plus grace %s; ended by the janitor', ran, timeout, p_grace);
    UPDATE kiln.attempt a SET status = 'timed_out', finished_at = pg_catalog.now(), reason = why
     WHERE a.task_id = t.id AND a.attempt = t.attempt AND a.status = 'building';
    UPDATE kiln.task l SET status = 'timed_out', builder = NULL, finished_at = pg_catalog.now(), reason = why
     WHERE l.id = t.id;
    UPDATE river.river_job r SET state = 'cancelled', finalized_at = pg_catalog.now()
     WHERE r.id = t.river_job_id AND r.state NOT IN ('cancelled', 'completed', 'discarded');
    river_job_cancelled := FOUND;
    INSERT INTO kiln.event (kind, job_id, task_id, attempt, builder, old_status, new_status, detail)
    VALUES ('janitor.timeout', t.job_id, t.id, t.attempt, t.builder, 'building', 'timed_out',
            pg_catalog.jsonb_build_object('reason', why, 'ran_seconds', extract(epoch FROM ran)::bigint,
                                          'river_job_id', t.river_job_id, 'river_job_cancelled', river_job_cancelled));
    ended := true;
    attempt := t.attempt;
    builder := t.builder;
    river_job_id := t.river_job_id;
END $function$;
COMMENT ON FUNCTION kiln.task_time_out(bigint, interval) IS 'Protocol step 8 (kiln_janitor members): ends a build running longer than its platform''s timeout plus p_grace, re-checked under the locks: attempt and task timed_out, River job cancelled, janitor.timeout event. ended is false when there was nothing to do.';

-- A pending task's new River job (inserted by River's client in the same
-- transaction) becomes the task's.
CREATE OR REPLACE FUNCTION kiln.task_link_river_job(p_task_id bigint, p_river_job_id bigint)
 RETURNS boolean
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    PERFORM kiln.task_check_janitor();
    IF NOT EXISTS (SELECT 1 FROM river.river_job r
                    WHERE r.id = p_river_job_id AND r.kind = 'build' AND r.args ->> 'task_id' = p_task_id::text) THEN
        RAISE EXCEPTION 'River job % is not a build River job of task %', p_river_job_id, p_task_id
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    UPDATE kiln.task t SET river_job_id = p_river_job_id WHERE t.id = p_task_id AND t.status = 'pending';
    RETURN FOUND;
END $function$;
COMMENT ON FUNCTION kiln.task_link_river_job(bigint, bigint) IS 'Records a new build River job of a pending task as its River job (kiln_janitor members; the River job must be a build River job of that task). False when the task is not pending.';

-- The built-in defaults, for a busy real person (docs/quotas.md says why
-- each): what migration 0018 inserted and what kiln admin quota reset
-- restores. (set_by and set_at are placeholders: kiln.quota_guard stamps
-- the real ones.)
CREATE OR REPLACE FUNCTION kiln.quota_builtin()
 RETURNS kiln.quota
 LANGUAGE sql
 IMMUTABLE
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
RETURN ROW('public'::name, 500, ((((20)::bigint * 1024) * 1024) * 1024), (64 * 1024), 1000, 5, (8 * 1024), 'kiln_owner'::name, '-infinity'::timestamp with time zone)::kiln.quota;
COMMENT ON FUNCTION kiln.quota_builtin() IS 'The built-in default quotas (500 jobs per hour, 20 GiB per day, 64 KiB options, 1000 platforms, 5 validate River jobs per job, 8 KiB River jobs) as a kiln.quota row for person public.';

CREATE OR REPLACE FUNCTION kiln.quota_guard()
 RETURNS trigger
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.person = 'public' THEN
            RAISE EXCEPTION 'the default quotas (person public) cannot be removed; kiln admin quota reset restores the built-in ones'
                USING ERRCODE = 'insufficient_privilege';
        END IF;
        RETURN OLD;
    END IF;
    NEW.set_by := session_user;
    NEW.set_at := now();
    RETURN NEW;
END $function$;
COMMENT ON FUNCTION kiln.quota_guard() IS 'Stamps kiln.quota.set_by (session_user) and set_at on every change and refuses to delete the defaults row (person public).';

-- The limits that apply to a person: their own where set, else the defaults.
CREATE OR REPLACE FUNCTION kiln.quota_limits(p_person name)
 RETURNS kiln.quota
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    q kiln.quota;
BEGIN
    SELECT p_person, coalesce(o.jobs_per_hour, d.jobs_per_hour), coalesce(o.bytes_per_day, d.bytes_per_day),
           coalesce(o.options_bytes, d.options_bytes), coalesce(o.platforms_per_job, d.platforms_per_job),
           coalesce(o.validate_river_jobs_per_job, d.validate_river_jobs_per_job),
           coalesce(o.river_job_bytes, d.river_job_bytes), coalesce(o.set_by, d.set_by), coalesce(o.set_at, d.set_at)
    INTO q
    FROM kiln.quota d LEFT JOIN kiln.quota o ON o.person = p_person AND p_person <> 'public'
    WHERE d.person = 'public';
    RETURN q;
END $function$;
COMMENT ON FUNCTION kiln.quota_limits(name) IS 'The quotas that apply to p_person: the person''s own row where it sets a limit, the defaults (person public) elsewhere.';

-- A person: a member of kiln_submitter (admins are), not a superuser, not a
-- daemon. pg_has_role counts superusers as members of every role, hence the
-- first test. (These are PL/pgSQL, not SQL, functions: PostgreSQL 15 plans
-- a SQL function's body again at every call from a trigger, PL/pgSQL once
-- per session; it made a person's job insert 1 ms slower.)
CREATE OR REPLACE FUNCTION kiln.quota_applies(p_role name)
 RETURNS boolean
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    RETURN coalesce((SELECT NOT r.rolsuper
                            AND pg_catalog.pg_has_role(r.oid, 'kiln_submitter', 'MEMBER')
                            AND NOT pg_catalog.pg_has_role(r.oid, 'kiln_builder', 'MEMBER')
                            AND NOT pg_catalog.pg_has_role(r.oid, 'kiln_splitter', 'MEMBER')
                            AND NOT pg_catalog.pg_has_role(r.oid, 'kiln_janitor', 'MEMBER')
                            AND NOT pg_catalog.pg_has_role(r.oid, 'kiln_web', 'MEMBER')
                     FROM pg_catalog.pg_roles r WHERE r.rolname = p_role), false);
END $function$;
COMMENT ON FUNCTION kiln.quota_applies(name) IS 'True when quotas limit role p_role: a member of kiln_submitter (so also an admin) that is neither a superuser nor a member of a daemon group (kiln_builder, kiln_splitter, kiln_janitor, kiln_web).';

-- The limits of a role if quotas limit it, in one query (the triggers'
-- path): kiln.quota_applies and kiln.quota_limits together.
CREATE OR REPLACE FUNCTION kiln.quota_for(p_role name)
 RETURNS kiln.quota
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    q kiln.quota;
BEGIN
    SELECT p_role, coalesce(o.jobs_per_hour, d.jobs_per_hour), coalesce(o.bytes_per_day, d.bytes_per_day),
           coalesce(o.options_bytes, d.options_bytes), coalesce(o.platforms_per_job, d.platforms_per_job),
           coalesce(o.validate_river_jobs_per_job, d.validate_river_jobs_per_job),
           coalesce(o.river_job_bytes, d.river_job_bytes), coalesce(o.set_by, d.set_by), coalesce(o.set_at, d.set_at)
    INTO q
    FROM pg_catalog.pg_roles r
    JOIN kiln.quota d ON d.person = 'public'
    LEFT JOIN kiln.quota o ON o.person = r.rolname
    WHERE r.rolname = p_role AND NOT r.rolsuper
      AND pg_catalog.pg_has_role(r.oid, 'kiln_submitter', 'MEMBER')
      AND NOT pg_catalog.pg_has_role(r.oid, 'kiln_builder', 'MEMBER')
      AND NOT pg_catalog.pg_has_role(r.oid, 'kiln_splitter', 'MEMBER')
      AND NOT pg_catalog.pg_has_role(r.oid, 'kiln_janitor', 'MEMBER')
      AND NOT pg_catalog.pg_has_role(r.oid, 'kiln_web', 'MEMBER');
    RETURN q;
END $function$;
COMMENT ON FUNCTION kiln.quota_for(name) IS 'The quotas that limit role p_role (as kiln.quota_limits), or a row of NULLs when quotas do not limit it (kiln.quota_applies is false).';

CREATE OR REPLACE FUNCTION kiln.quota_web_session()
 RETURNS boolean
 LANGUAGE plpgsql
 STABLE
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    RETURN coalesce((SELECT NOT r.rolsuper AND pg_catalog.pg_has_role(r.oid, 'kiln_web', 'MEMBER')
                     FROM pg_catalog.pg_roles r WHERE r.rolname = session_user), false);
END $function$;
COMMENT ON FUNCTION kiln.quota_web_session() IS 'True when the session is kiln-web''s (a member of kiln_web, not a superuser): its writes for a person count against that person''s quotas.';

-- One lock per person for every charge, always taken before the counter
-- row: two sessions of one person are counted in turn, and no two charges
-- can wait for each other in opposite orders.
CREATE OR REPLACE FUNCTION kiln.quota_lock(p_person name)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    -- 1802596212 is 'kqot' in ASCII: kiln's key space for quota locks.
    PERFORM pg_catalog.pg_advisory_xact_lock(1802596212, pg_catalog.hashtext(p_person::text));
END $function$;
COMMENT ON FUNCTION kiln.quota_lock(name) IS 'Takes the transaction-scoped advisory lock (1802596212, hashtext(person)) that orders all quota charges of one person.';

-- Adds p_amount to the person's use of p_quota (jobs_per_hour or
-- bytes_per_day) in the current window and returns the window's new total,
-- with its start and end as messages give them.
CREATE OR REPLACE FUNCTION kiln.quota_charge(p_person name, p_quota text, p_amount bigint, OUT total bigint, OUT since text, OUT resets text)
 RETURNS record
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    unit text := CASE p_quota WHEN 'jobs_per_hour' THEN 'hour' ELSE 'day' END;
    w timestamptz;
BEGIN
    w := date_trunc(unit, clock_timestamp(), 'UTC');
    PERFORM kiln.quota_lock(p_person);
    INSERT INTO kiln.quota_usage AS u (person, quota, window_start, used)
    VALUES (p_person, p_quota, w, p_amount)
    ON CONFLICT (person, quota, window_start) DO UPDATE SET used = u.used + EXCLUDED.used
    RETURNING u.used INTO total;
    IF total = p_amount THEN
        -- The window's first charge: forget this person's windows older than a week.
        DELETE FROM kiln.quota_usage
        WHERE person = p_person AND quota = p_quota AND window_start < w - interval '7 days';
    END IF;
    since := to_char(w AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC';
    resets := to_char((w + ('1 ' || unit)::interval) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC';
END $function$;
COMMENT ON FUNCTION kiln.quota_charge(name, text, bigint) IS 'Under the person''s quota lock, adds p_amount to kiln.quota_usage for p_person and p_quota in the current window (the clock hour for jobs_per_hour, the UTC day for bytes_per_day); returns the window''s new total, its start (since) and its end (resets) as YYYY-MM-DD HH24:MI UTC. Called only by the quota triggers; executable by no role directly.';

-- Raises the quota refusal: SQLSTATE KL001, the message, a DETAIL that
-- names the quota's column (quota=...) for programs, and a hint.
CREATE OR REPLACE FUNCTION kiln.quota_refuse(p_person name, p_quota text, p_message text)
 RETURNS void
 LANGUAGE plpgsql
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    title text := CASE p_quota
        WHEN 'jobs_per_hour' THEN 'jobs per hour'
        WHEN 'bytes_per_day' THEN 'bytes per day'
        WHEN 'options_bytes' THEN 'options size'
        WHEN 'platforms_per_job' THEN 'platforms in a list'
        WHEN 'validate_river_jobs_per_job' THEN 'validate River jobs per job'
        WHEN 'river_job_bytes' THEN 'River job size'
    END;
BEGIN
    RAISE EXCEPTION 'quota "%" exceeded for %: %', title, p_person, p_message
        USING ERRCODE = 'KL001',
              DETAIL = 'quota=' || p_quota,
              HINT = 'a kiln admin may raise it: kiln admin quota set --' || replace(p_quota, '_', '-') || ' N '
                     || p_person || '; see docs/quotas.md';
END $function$;
COMMENT ON FUNCTION kiln.quota_refuse(name, text, text) IS 'Raises SQLSTATE KL001: quota "<title>" exceeded for <person>: <message>, with DETAIL quota=<column of kiln.quota> and a HINT naming the admin command.';

CREATE OR REPLACE FUNCTION kiln.job_quota()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    who name;
    lim kiln.quota;
    n bigint;
    since text;
    resets text;
BEGIN
    -- On insert the person is the session's; kiln.web_resubmit inserts as
    -- kiln-web and then hands the job to the person (UPDATE OF submitter).
    who := CASE WHEN TG_OP = 'INSERT' THEN session_user ELSE NEW.submitter END;
    lim := kiln.quota_for(who);
    IF lim.person IS NULL THEN
        RETURN NEW;
    END IF;
    n := octet_length(NEW.options::text);
    IF n > lim.options_bytes THEN
        PERFORM kiln.quota_refuse(who, 'options_bytes', format('options of %s bytes (limit %s); a limit on each job, make the options smaller', n, lim.options_bytes));
    END IF;
    n := coalesce(cardinality(NEW.platforms), 0);
    IF n > lim.platforms_per_job THEN
        PERFORM kiln.quota_refuse(who, 'platforms_per_job', format('%s platforms in the list (limit %s); a limit on each job, name fewer or use all', n, lim.platforms_per_job));
    END IF;
    -- Not quotas but sizes no real value has: a platform entry is a name of
    -- at most 50 characters, perhaps with !; a bucket is a name too.
    IF EXISTS (SELECT 1 FROM unnest(NEW.platforms) e WHERE octet_length(e) > 51) THEN
        RAISE EXCEPTION 'a platform in the list is longer than 51 bytes; platform names have at most 50 characters'
            USING ERRCODE = 'check_violation';
    END IF;
    IF octet_length(NEW.bucket) > 50 THEN
        RAISE EXCEPTION 'bucket name of % bytes; bucket names have at most 50 characters', octet_length(NEW.bucket)
            USING ERRCODE = 'check_violation';
    END IF;
    SELECT c.total, c.since, c.resets INTO n, since, resets FROM kiln.quota_charge(who, 'jobs_per_hour', 1) c;
    IF n > lim.jobs_per_hour THEN
        PERFORM kiln.quota_refuse(who, 'jobs_per_hour', format('%s jobs since %s (limit %s); resets at %s',
            n - 1, since, lim.jobs_per_hour, resets));
    END IF;
    RETURN NEW;
END $function$;
COMMENT ON FUNCTION kiln.job_quota() IS 'Before a person''s job is inserted (or kiln.web_resubmit hands a job to a person): refuses options larger than options_bytes, more platforms than platforms_per_job, over-long platform entries or bucket names, and a job past jobs_per_hour in the current clock hour, which it charges.';

-- A blob is charged its declared size when its row is stored, once per
-- blob (the blobs of one statement together): a blob already stored and reused (blob.Put's deduplication) stores
-- no row and costs nothing; a blob nobody references costs its size like
-- any other; an upload past the day's bytes is refused before any chunk is
-- sent. After the insert, so that blob.Put's INSERT ... ON CONFLICT DO
-- NOTHING is charged only when it stores the row.
CREATE OR REPLACE FUNCTION kiln.blob_quota()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    who name := session_user;
    lim bigint;
    v_bytes bigint;
    v_blobs bigint;
    total bigint;
    since text;
    resets text;
BEGIN
    SELECT coalesce(sum(n.size), 0), count(*) INTO v_bytes, v_blobs FROM new_blobs n WHERE n.size > 0;
    IF v_bytes = 0 THEN
        RETURN NULL;
    END IF;
    lim := (kiln.quota_for(who)).bytes_per_day;
    IF lim IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT c.total, c.since, c.resets INTO total, since, resets FROM kiln.quota_charge(who, 'bytes_per_day', v_bytes) c;
    IF total > lim THEN
        PERFORM kiln.quota_refuse(who, 'bytes_per_day', format('storing %s would make %s bytes since %s (limit %s bytes, %s); resets at %s',
            CASE WHEN v_blobs = 1 THEN 'a blob of ' || pg_size_pretty(v_bytes)
                 ELSE v_blobs || ' blobs of ' || pg_size_pretty(v_bytes) || ' in all' END,
            total, since, lim, pg_size_pretty(lim), resets));
    END IF;
    RETURN NULL;
END $function$;
COMMENT ON FUNCTION kiln.blob_quota() IS 'After a statement by a person stores blob rows (transition table new_blobs): charges their declared sizes to bytes_per_day of the current UTC day and refuses them past the limit.';

-- What a person's chunks hold cannot exceed the size the blob declared (and
-- was charged): chunk seq holds at most chunk_size bytes and none past
-- size, so however the chunks are numbered they add up to size at most.
-- Runs after kiln.blob_chunk_guard (trigger names sort), which made sure
-- the blob is the session's own, stored in the same transaction.
CREATE OR REPLACE FUNCTION kiln.blob_chunk_within_size()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    b kiln.blob%ROWTYPE;
BEGIN
    IF NOT kiln.quota_applies(session_user) THEN
        RETURN NEW;
    END IF;
    SELECT * INTO b FROM kiln.blob WHERE sha256 = NEW.sha256;
    IF octet_length(NEW.data) > b.chunk_size OR NEW.seq::bigint * b.chunk_size + octet_length(NEW.data) > b.size THEN
        RAISE EXCEPTION 'chunk % of blob % (% bytes) goes past the blob''s declared size of % bytes in chunks of %',
            NEW.seq, encode(NEW.sha256, 'hex'), octet_length(NEW.data), b.size, b.chunk_size
            USING ERRCODE = 'check_violation',
                  HINT = 'a blob''s declared size is what counts against the quota bytes per day (docs/quotas.md)';
    END IF;
    RETURN NEW;
END $function$;
COMMENT ON FUNCTION kiln.blob_chunk_within_size() IS 'Before a person stores a blob chunk: refuses one longer than the blob''s chunk_size or reaching past its declared size, so a person stores no more bytes than were charged to bytes_per_day.';

-- People insert only validate River jobs (policy river_job_submit), and so
-- does kiln-web for a resubmit (river_job_web_resubmit): the trigger fires for that kind only,
-- so the daemons' build River jobs never reach it. It runs after the row
-- passed row-level security, so only River jobs that would be stored count.
CREATE OR REPLACE FUNCTION kiln.river_job_quota()
 RETURNS trigger
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    who name;
    lim kiln.quota;
    job bigint;
    n bigint;
BEGIN
    IF jsonb_typeof(NEW.args -> 'job_id') = 'number' THEN
        job := (NEW.args ->> 'job_id')::bigint;
    END IF;
    lim := kiln.quota_for(session_user);
    IF lim.person IS NULL AND kiln.quota_web_session() AND job IS NOT NULL THEN
        lim := kiln.quota_for((SELECT j.submitter FROM kiln.job j WHERE j.id = job));
    END IF;
    IF lim.person IS NULL THEN
        RETURN NULL;
    END IF;
    who := lim.person;
    n := octet_length(NEW::text);
    IF n > lim.river_job_bytes THEN
        PERFORM kiln.quota_refuse(who, 'river_job_bytes', format('a River job of %s bytes (limit %s); a limit on each River job', n, lim.river_job_bytes));
    END IF;
    IF job IS NULL OR NOT EXISTS (SELECT 1 FROM kiln.job j WHERE j.id = job) THEN
        RETURN NULL;
    END IF;
    PERFORM kiln.quota_lock(who);
    INSERT INTO kiln.quota_river_jobs AS q (job_id, validate_river_jobs) VALUES (job, 1)
    ON CONFLICT (job_id) DO UPDATE SET validate_river_jobs = q.validate_river_jobs + 1
    RETURNING q.validate_river_jobs INTO n;
    IF n > lim.validate_river_jobs_per_job THEN
        PERFORM kiln.quota_refuse(who, 'validate_river_jobs_per_job', format('job %s already has %s validate River jobs (limit %s); a limit on each job, one is enough',
            job, n - 1, lim.validate_river_jobs_per_job));
    END IF;
    RETURN NULL;
END $function$;
COMMENT ON FUNCTION kiln.river_job_quota() IS 'After a person (or kiln-web for a person) inserts a validate River job: refuses one larger than river_job_bytes, and past validate_river_jobs_per_job for its job, which it counts in kiln.quota_river_jobs.';

-- A builder installs an environment it made: the blob must be one it stored
-- and vouched for, and the platform one it builds. The environment becomes
-- the platform's current one; the one it replaces is retired (kept).
CREATE OR REPLACE FUNCTION kiln.environment_install(p_builder text, p_platform text, p_sha256 bytea, p_spec jsonb, p_packages jsonb)
 RETURNS bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    v_size bigint;
    v_id   bigint;
    v_old  bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM kiln.builder b JOIN kiln.builder_platform bp ON bp.builder = b.name
                   WHERE b.name = p_builder AND b.role = session_user AND bp.platform = p_platform) THEN
        RAISE EXCEPTION 'builder % of role % does not build platform %', p_builder, session_user, p_platform
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    SELECT b.size INTO v_size FROM kiln.blob b
    WHERE b.sha256 = p_sha256 AND b.created_by = session_user AND b.verified_at IS NOT NULL AND b.content_sha256 IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'blob % is not a verified blob stored by %', encode(p_sha256, 'hex'), session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_spec IS NULL OR jsonb_typeof(p_spec) <> 'object' OR p_packages IS NULL OR jsonb_typeof(p_packages) <> 'object' THEN
        RAISE EXCEPTION 'an environment''s spec and package list are JSON objects' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM 1 FROM kiln.platform WHERE name = p_platform FOR UPDATE;
    INSERT INTO kiln.environment (platform, blob_sha256, size, spec, packages, builder)
    VALUES (p_platform, p_sha256, v_size, p_spec, p_packages, p_builder)
    RETURNING id INTO v_id;
    SELECT environment INTO v_old FROM kiln.platform_environment WHERE platform = p_platform;
    UPDATE kiln.environment SET retired_at = now() WHERE id = v_old;
    INSERT INTO kiln.platform_environment (platform, environment, spec) VALUES (p_platform, v_id, p_spec)
    ON CONFLICT (platform) DO UPDATE SET environment = EXCLUDED.environment;
    INSERT INTO kiln.event (kind, builder, detail)
    VALUES ('environment.install', p_builder, jsonb_build_object('platform', p_platform, 'environment', v_id,
                                                                 'sha256', encode(p_sha256, 'hex'), 'replaces', v_old));
    RETURN v_id;
END $function$;
COMMENT ON FUNCTION kiln.environment_install(text, text, bytea, jsonb, jsonb) IS 'Records an environment builder p_builder (registered by session_user, building p_platform) made from the verified blob p_sha256 it stored, and makes it the platform''s current environment; the previous one is retired, not removed. Returns the new environment''s id.';

CREATE OR REPLACE FUNCTION kiln.safe_repo_path(p text)
 RETURNS boolean
 LANGUAGE sql
 IMMUTABLE PARALLEL SAFE STRICT
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
RETURN ((p ~ '^[A-Za-z0-9_+~][A-Za-z0-9_.+~=-]*(/[A-Za-z0-9_+~][A-Za-z0-9_.+~=-]*)*$'::text) AND (octet_length(p) <= 1000) AND (POSITION(('..'::text) IN (p)) = 0));
COMMENT ON FUNCTION kiln.safe_repo_path(text) IS 'True for a relative path of a repository file: slash-separated names of letters, digits and _.+~=-, none starting with a dot or dash, no .., at most 1000 bytes.';

CREATE OR REPLACE FUNCTION kiln.snapshot_files(p_bucket text, p_seq integer)
 RETURNS SETOF kiln.repository_file
 LANGUAGE sql
 STABLE
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$ SELECT f.* FROM kiln.repository_file f
      WHERE f.bucket = p_bucket AND f.from_seq <= p_seq AND (f.until_seq IS NULL OR f.until_seq > p_seq) $function$;
COMMENT ON FUNCTION kiln.snapshot_files(text, integer) IS 'The files of snapshot p_seq of a bucket (under the caller''s rights: row-level security applies).';

-- Jobs that end ask for their publication (in the transaction that ended
-- them, so a request is never lost). kiln.job_changed calls it once per
-- statement, with the jobs that statement ended.
CREATE OR REPLACE FUNCTION kiln.job_request_publications(p_job_ids bigint[])
 RETURNS void
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    notified bigint;
BEGIN
    WITH requested AS (
        INSERT INTO kiln.publication_request (bucket, kind, job_id)
        SELECT j.bucket, 'job', j.id
          FROM kiln.job j JOIN kiln.bucket b ON b.name = j.bucket
         WHERE j.id = ANY (p_job_ids) AND j.status IN ('succeeded', 'failed', 'partially_failed', 'cancelled')
           AND b.publish_policy <> 'none'
         ORDER BY j.id
        RETURNING bucket, job_id
    )
    SELECT count(pg_catalog.pg_notify('kiln_publish', pg_catalog.json_build_object('bucket', r.bucket, 'job', r.job_id)::text))
      INTO notified FROM (SELECT q.bucket, q.job_id FROM requested q ORDER BY q.job_id) r;
END $function$;
COMMENT ON FUNCTION kiln.job_request_publications(bigint[]) IS 'For the jobs given that have a final status (not invalid): queues a publication request for each one''s bucket (unless the bucket publishes nothing) and sends NOTIFY kiln_publish. Called by kiln.job_changed for the jobs a statement ended. SECURITY DEFINER because whoever finishes the job (a builder, the janitor, a person cancelling) holds no grant on kiln.publication_request; executable by no one else.';

CREATE OR REPLACE FUNCTION kiln.may_publish_to(p_person name, p_bucket text)
 RETURNS boolean
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
RETURN (pg_has_role(p_person, 'kiln_admin'::name, 'MEMBER'::text) OR (EXISTS (SELECT 1 FROM (kiln.bucket_grant g JOIN pg_roles r ON ((r.rolname = g.grantee))) WHERE ((g.bucket = may_publish_to.p_bucket) AND pg_has_role(may_publish_to.p_person, r.oid, 'MEMBER'::text)))));
COMMENT ON FUNCTION kiln.may_publish_to(name, text) IS 'True when p_person may promote into or roll back the bucket: a member of one of its grantees (the same grant as submitting, without the open-bucket exception) or of kiln_admin.';

CREATE OR REPLACE FUNCTION kiln.promote_for(p_person name, p_job_id bigint, p_bucket text)
 RETURNS bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    v_from text;
    v_id   bigint;
BEGIN
    -- The job must be one p_person may read (as kiln.web_resubmit checks):
    -- this function runs as the owner, past row-level security, and a
    -- private job promoted into a bucket p_person publishes to would serve
    -- its packages there. Someone else's private job is a missing job.
    SELECT j.bucket INTO v_from FROM kiln.job j WHERE j.id = p_job_id
        AND (j.submitter = p_person
             OR pg_catalog.pg_has_role(p_person, 'kiln_admin', 'MEMBER')
             OR NOT EXISTS (SELECT 1 FROM kiln.bucket b WHERE b.name = j.bucket AND b.private)
             OR EXISTS (SELECT 1 FROM kiln.bucket_grant g JOIN pg_catalog.pg_roles r ON r.rolname = g.grantee
                        WHERE g.bucket = j.bucket AND pg_catalog.pg_has_role(p_person, r.oid, 'MEMBER')));
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist or is not visible to you', p_job_id USING ERRCODE = 'no_data_found';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM kiln.bucket b WHERE b.name = p_bucket) THEN
        RAISE EXCEPTION 'bucket % does not exist', p_bucket USING ERRCODE = 'no_data_found';
    END IF;
    IF v_from = p_bucket THEN
        RAISE EXCEPTION 'job % is already in bucket %', p_job_id, p_bucket USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT kiln.may_publish_to(p_person, p_bucket) THEN
        RAISE EXCEPTION '% may not promote to bucket % (it needs a grant on the bucket)', p_person, p_bucket
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM kiln.repository_file f
                   WHERE f.bucket = v_from AND f.job_id = p_job_id AND f.until_seq IS NULL) THEN
        RAISE EXCEPTION 'job % has no packages published in bucket %', p_job_id, v_from
            USING ERRCODE = 'object_not_in_prerequisite_state';
    END IF;
    INSERT INTO kiln.publication_request (bucket, kind, job_id, requested_by)
        VALUES (p_bucket, 'promote', p_job_id, p_person) RETURNING id INTO v_id;
    PERFORM pg_notify('kiln_publish', json_build_object('bucket', p_bucket, 'job', p_job_id)::text);
    RETURN v_id;
END $function$;
COMMENT ON FUNCTION kiln.promote_for(name, bigint, text) IS 'Queues the promotion of a job''s packages, as currently published in its own bucket, into p_bucket for p_person, who must be able to read the job (someone else''s private job is answered as a missing one) and needs a grant on p_bucket. Returns the request id. Called by kiln.promote and kiln.web_promote, which establish who p_person is.';

CREATE OR REPLACE FUNCTION kiln.promote(p_job_id bigint, p_bucket text)
 RETURNS bigint
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
RETURN kiln.promote_for(SESSION_USER, p_job_id, p_bucket);
COMMENT ON FUNCTION kiln.promote(bigint, text) IS 'kiln promote: queues the promotion of a job''s published packages into another bucket, with no rebuild; session_user needs a grant on the target bucket. Returns the publication request id.';

CREATE OR REPLACE FUNCTION kiln.web_promote(p_person name, p_job_id bigint, p_bucket text)
 RETURNS bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
BEGIN
    PERFORM kiln.web_check_person(p_person, 'kiln_submitter');
    RETURN kiln.promote_for(p_person, p_job_id, p_bucket);
END $function$;
COMMENT ON FUNCTION kiln.web_promote(name, bigint, text) IS 'The web interface promotes a job for the logged-in person p_person (checked by kiln.web_check_person).';

CREATE OR REPLACE FUNCTION kiln.rollback_bucket(p_bucket text, p_seq integer)
 RETURNS bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    v_id bigint;
BEGIN
    IF NOT kiln.may_publish_to(session_user, p_bucket) THEN
        RAISE EXCEPTION '% may not roll back bucket % (it needs a grant on the bucket)', session_user, p_bucket
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM kiln.snapshot s WHERE s.bucket = p_bucket AND s.seq = p_seq) THEN
        RAISE EXCEPTION 'bucket % has no snapshot %', p_bucket, p_seq USING ERRCODE = 'no_data_found';
    END IF;
    INSERT INTO kiln.publication_request (bucket, kind, snapshot_seq) VALUES (p_bucket, 'rollback', p_seq)
        RETURNING id INTO v_id;
    PERFORM pg_notify('kiln_publish', json_build_object('bucket', p_bucket)::text);
    RETURN v_id;
END $function$;
COMMENT ON FUNCTION kiln.rollback_bucket(text, integer) IS 'kiln repo rollback: queues a publication that serves the bucket''s snapshot p_seq again (as a new snapshot with the same files, re-signed). session_user needs a grant on the bucket. Returns the request id.';

CREATE OR REPLACE FUNCTION kiln.remove_package(p_bucket text, p_name text, p_platform text)
 RETURNS bigint
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    v_id bigint;
BEGIN
    IF NOT kiln.may_publish_to(session_user, p_bucket) THEN
        RAISE EXCEPTION '% may not remove packages of bucket % (it needs a grant on the bucket)', session_user, p_bucket
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO kiln.publication_request (bucket, kind, package_name, platform) VALUES (p_bucket, 'remove', p_name, p_platform)
        RETURNING id INTO v_id;
    PERFORM pg_notify('kiln_publish', json_build_object('bucket', p_bucket)::text);
    RETURN v_id;
END $function$;
COMMENT ON FUNCTION kiln.remove_package(text, text, text) IS 'kiln repo rm: queues the removal of binary package p_name from the bucket''s repositories (only p_platform''s when not NULL). session_user needs a grant on the bucket. Returns the request id.';

CREATE OR REPLACE FUNCTION kiln.new_repo_token()
 RETURNS text
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    -- Two version 4 UUIDs: 244 bits from the server's strong random source.
    v_token text := replace(gen_random_uuid()::text, '-', '') || replace(gen_random_uuid()::text, '-', '');
BEGIN
    INSERT INTO kiln.repo_token (token_sha256, person) VALUES (sha256(convert_to(v_token, 'UTF8')), session_user);
    RETURN v_token;
END $function$;
COMMENT ON FUNCTION kiln.new_repo_token() IS 'kiln repo token: makes a new repository token for session_user and returns it (only its SHA-256 is kept).';

CREATE OR REPLACE FUNCTION kiln.web_repo_file(p_person name, p_token text, p_bucket text, p_seq integer, p_platform text, p_path text)
 RETURNS TABLE(blob_sha256 bytea, size bigint, chunk_size integer)
 LANGUAGE plpgsql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    v_person name := p_person;
    v_build kiln.build_repo_token%ROWTYPE;
BEGIN
    IF NOT pg_has_role(session_user, 'kiln_web', 'MEMBER') THEN
        RAISE EXCEPTION 'only the web interface (a member of kiln_web) may read repositories for a person'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF p_token IS NOT NULL THEN
        SELECT bt.* INTO v_build FROM kiln.build_repo_token bt WHERE bt.token_sha256 = sha256(convert_to(p_token, 'UTF8'));
        IF FOUND THEN
            -- A build's token: its one bucket, while its attempt builds.
            IF v_build.bucket <> p_bucket OR v_build.expires_at <= now()
               OR NOT EXISTS (SELECT 1 FROM kiln.task t WHERE t.id = v_build.task_id AND t.status = 'building'
                                                          AND t.attempt = v_build.attempt) THEN
                RETURN;
            END IF;
        ELSE
            SELECT t.person INTO v_person FROM kiln.repo_token t WHERE t.token_sha256 = sha256(convert_to(p_token, 'UTF8'));
            IF NOT FOUND THEN
                RETURN;
            END IF;
        END IF;
    END IF;
    IF v_build.token_sha256 IS NULL THEN
        -- A person: logged in, or the owner of a person's token.
        IF v_person IS NULL OR NOT EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = v_person AND rolcanlogin AND NOT rolsuper)
           OR pg_has_role(v_person, 'kiln_web', 'MEMBER') THEN
            RETURN;
        END IF;
        IF EXISTS (SELECT 1 FROM kiln.bucket b WHERE b.name = p_bucket AND b.private)
           AND NOT pg_has_role(v_person, 'kiln_admin', 'MEMBER')
           AND NOT EXISTS (SELECT 1 FROM kiln.bucket_grant g JOIN pg_catalog.pg_roles r ON r.rolname = g.grantee
                           WHERE g.bucket = p_bucket AND pg_has_role(v_person, r.oid, 'MEMBER')) THEN
            RETURN;
        END IF;
    END IF;
    RETURN QUERY
        SELECT f.blob_sha256, f.size, bl.chunk_size
        FROM kiln.repository_file f
        JOIN kiln.blob bl ON bl.sha256 = f.blob_sha256
        WHERE f.bucket = p_bucket AND f.platform = p_platform AND f.path = p_path
          AND CASE WHEN p_seq IS NULL THEN f.until_seq IS NULL
                   ELSE f.from_seq <= p_seq AND (f.until_seq IS NULL OR f.until_seq > p_seq)
                        AND EXISTS (SELECT 1 FROM kiln.snapshot s WHERE s.bucket = p_bucket AND s.seq = p_seq) END;
END $function$;
COMMENT ON FUNCTION kiln.web_repo_file(name, text, text, integer, text, text) IS 'For kiln-web serving a private bucket''s repository: the blob of one file of the current snapshot (p_seq NULL) or of snapshot p_seq, if the person (p_person, logged in; or the owner of p_token) may read the bucket, or if p_token is a build''s token (kiln.build_repo_token) for this bucket whose attempt is still building. No rows otherwise. Public buckets are read under row-level security without it.';

CREATE OR REPLACE FUNCTION kiln.web_repo_chunk(p_person name, p_token text, p_bucket text, p_seq integer, p_platform text, p_path text, p_chunk integer)
 RETURNS bytea
 LANGUAGE sql
 STABLE SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
RETURN (SELECT c.data FROM (kiln.web_repo_file(web_repo_chunk.p_person, web_repo_chunk.p_token, web_repo_chunk.p_bucket, web_repo_chunk.p_seq, web_repo_chunk.p_platform, web_repo_chunk.p_path) f(blob_sha256, size, chunk_size) JOIN kiln.blob_chunk c ON (((c.sha256 = f.blob_sha256) AND (c.seq = web_repo_chunk.p_chunk)))));
COMMENT ON FUNCTION kiln.web_repo_chunk(name, text, text, integer, text, text, integer) IS 'For kiln-web serving a private bucket''s repository: chunk p_chunk of the file kiln.web_repo_file finds for the same arguments; NULL when the person may not read it.';

-- Who may call what: every function is PUBLIC when first created, so the
-- privileged ones are revoked here (a REVOKE already in effect changes nothing).
REVOKE EXECUTE ON FUNCTION kiln.lock_job(bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kiln.refresh_job_status(bigint), kiln.refresh_job_statuses(bigint[]), kiln.cancel_job(bigint), kiln.cancel_task(bigint) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kiln.web_check_person(name, name), kiln.web_cancel_job(name, bigint),
    kiln.web_cancel_task(name, bigint), kiln.web_resubmit(name, bigint, text),
    kiln.web_set_builder_enabled(name, text, boolean) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kiln.blob_stored_here(bytea) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kiln.cancel_job_for(bigint, name, text), kiln.cancel_task_for(bigint, name, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kiln.task_check_builder(text), kiln.task_check_janitor() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kiln.task_lose(kiln.task, text, text, text, jsonb) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION
    kiln.set_max_lost(integer),
    kiln.task_take(text, bigint, bigint, text),
    kiln.task_take_many(text, bigint[], bigint[], text[]),
    kiln.task_finish_many(text, bigint[], integer[], text[], text[], jsonb[], boolean[], text[], integer[], text[], bigint[], text[], text[], bytea[], bigint[], bytea[]),
    kiln.task_heartbeat(text, bigint[], integer[]),
    kiln.task_log(text, bigint, integer, integer, text, boolean),
    kiln.task_log_many(text, bigint[], integer[], integer[], text[], boolean[]),
    kiln.task_finish(text, bigint, integer, text, text, jsonb, boolean, text[], text[], bytea[], bigint[]),
    kiln.task_finish(text, bigint, integer, text, text, jsonb, boolean, text[], text[], bytea[], bigint[], text),
    kiln.task_finish(text, bigint, integer, text, text, jsonb, boolean, text[], text[], bytea[], bigint[], text, bytea[], integer, text),
    kiln.task_give_back(text, bigint, integer),
    kiln.task_recover(text, bigint, integer),
    kiln.task_take_back_lost(bigint, interval),
    kiln.task_time_out(bigint, interval),
    kiln.task_link_river_job(bigint, bigint)
FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kiln.set_max_lost(integer) TO kiln_admin;
REVOKE EXECUTE ON FUNCTION kiln.quota_charge(name, text, bigint), kiln.quota_lock(name),
    kiln.quota_refuse(name, text, text), kiln.quota_applies(name), kiln.quota_for(name),
    kiln.quota_web_session(), kiln.quota_builtin() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kiln.environment_install(text, text, bytea, jsonb, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kiln.environment_install(text, text, bytea, jsonb, jsonb) TO kiln_builder;
REVOKE EXECUTE ON FUNCTION kiln.job_request_publications(bigint[]) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kiln.may_publish_to(name, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kiln.promote_for(name, bigint, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kiln.promote(bigint, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kiln.web_promote(name, bigint, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kiln.rollback_bucket(text, integer) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kiln.remove_package(text, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kiln.new_repo_token() FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kiln.web_repo_file(name, text, text, integer, text, text) FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION kiln.web_repo_chunk(name, text, text, integer, text, text, integer) FROM PUBLIC;

CREATE OR REPLACE FUNCTION kiln.build_repositories(p_job bigint, p_platform text)
    RETURNS TABLE (bucket text, seq integer, fingerprint text, public_key text)
    LANGUAGE sql STABLE SECURITY DEFINER
    SET search_path = pg_catalog, kiln, pg_temp
AS $$
    SELECT b.name, s.seq, k.fingerprint, k.public_key
      FROM kiln.job j
      JOIN kiln.bucket jb ON jb.name = j.bucket
      CROSS JOIN LATERAL unnest(ARRAY[jb.name] || jb.build_against) WITH ORDINALITY AS u(name, ord)
      JOIN kiln.bucket b ON b.name = u.name
      JOIN kiln.bucket_publication p ON p.bucket = b.name
      JOIN kiln.snapshot s ON s.id = p.current_snapshot
      JOIN kiln.bucket_key k ON k.bucket = b.name AND k.active
     WHERE j.id = p_job
       AND EXISTS (SELECT 1 FROM kiln.snapshot_files(b.name, s.seq) f
                    WHERE f.platform = p_platform AND f.path IN ('dists/' || b.name || '/InRelease', 'repodata/repomd.xml'))
     ORDER BY u.ord
$$;
COMMENT ON FUNCTION kiln.build_repositories(bigint, text) IS 'The repositories (APT, or rpm-md for RPM platforms) a build of job p_job on platform p_platform installs build dependencies from: the served snapshot of the job''s bucket, then of each bucket of its build_against setting, each with its active signing key; buckets without a served repository for the platform are left out. For builders (public keys and snapshot numbers only).';
REVOKE ALL ON FUNCTION kiln.build_repositories(bigint, text) FROM PUBLIC;
