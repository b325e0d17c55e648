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

-- Set-based takes and finishes (kiln.task_take_many, kiln.task_finish_many),
-- as schema/current has them; the single forms call them. No table changes.

-- Step 1, take, for several tasks at once (a builder's slots that take at
-- the same moment: one statement, one transaction). outcome, per task in
-- the order given: taken (attempt is the new attempt's number), not_pending
-- (cancelled, finished or taken meanwhile: the River job ends without a
-- build), disabled (the builder was disabled), gone (the job or the
-- platform no longer exists), elsewhere (a retry of the farm's fault that
-- another online builder of the platform is to take: the River job snoozes
-- briefly). The jobs are locked in id order, the protocol's order (job,
-- then task) across jobs, so two batches never wait for each other in a
-- circle.
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
    digest bytea;
    len bigint;
    key bytea;
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
    FOR i IN 1 .. coalesce(pg_catalog.cardinality(p_artifact_data), 0) LOOP
        CONTINUE WHEN p_artifact_data[i] IS NULL OR NOT art_tasks[i] = ANY (v_held);
        digest := pg_catalog.sha256(p_artifact_data[i]);
        len := pg_catalog.octet_length(p_artifact_data[i]);
        IF sums[i] IS DISTINCT FROM digest AND sums[i] IS NOT NULL OR sizes[i] IS DISTINCT FROM len AND sizes[i] IS NOT NULL THEN
            RAISE EXCEPTION 'artifact %: the bytes given do not have the sha256 and size given', names[i]
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT b.sha256 INTO key FROM kiln.blob b
         WHERE (b.sha256 = digest AND b.content_sha256 IS NULL OR b.content_sha256 = digest) AND b.size = len
           AND b.verified_at IS NOT NULL
         ORDER BY b.created_at LIMIT 1;
        IF NOT FOUND THEN
            key := digest;
            INSERT INTO kiln.blob (sha256, size, chunk_size, verified_at) VALUES (key, len, 262144, pg_catalog.now())
                ON CONFLICT (sha256) DO NOTHING;
            IF NOT FOUND THEN
                key := pg_catalog.sha256(pg_catalog.uuid_send(pg_catalog.gen_random_uuid()) || pg_catalog.uuid_send(pg_catalog.gen_random_uuid()));
                INSERT INTO kiln.blob (sha256, size, chunk_size, content_sha256, verified_at) VALUES (key, len, 262144, digest, pg_catalog.now());
            END IF;
            INSERT INTO kiln.blob_chunk (sha256, seq, data)
            SELECT key, c.seq::integer, pg_catalog.substr(p_artifact_data[i], (c.seq * 262144 + 1)::integer, 262144)
              FROM pg_catalog.generate_series(0, (len - 1) / 262144) AS c(seq)
             WHERE len > 0;
        END IF;
        sums[i] := key;
        sizes[i] := len;
    END LOOP;
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

REVOKE EXECUTE ON FUNCTION kiln.task_take_many(text, bigint[], bigint[], text[]),
    kiln.task_finish_many(text, bigint[], integer[], text[], text[], jsonb[], boolean[], text[], integer[], text[], bigint[], text[], text[], bytea[], bigint[], bytea[]) FROM PUBLIC;
