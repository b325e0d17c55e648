-- 0024_failure_stage.sql: where a build failed, as data, and retries of the
-- farm's own faults.
--
-- A failed attempt names its stage from a fixed vocabulary
-- (kiln.failure_stage). Each stage says whether a failure there is the
-- farm's (infrastructure: the environment could not be fetched, the mirror
-- did not answer, the work directory is full) or the package's (it does not
-- build, its build dependencies cannot be met). kiln.task_finish retries
-- the farm's faults automatically, with backoff and preferably on another
-- builder, up to the platform's max_infra_retries; the package's faults end
-- the task. See docs/protocol.md ("Retries") and docs/reporting.md.
-- (Functions and views: schema/current/10_functions.sql and
-- 21_stages.sql.)

CREATE TABLE kiln.failure_stage (
    name           text PRIMARY KEY,
    infrastructure boolean NOT NULL,
    description    text NOT NULL
);
COMMENT ON TABLE kiln.failure_stage IS 'The fixed vocabulary of failure stages: where a failed attempt failed, and whether a failure there is the farm''s fault (retried) or the package''s (not retried).';
COMMENT ON COLUMN kiln.failure_stage.name IS 'The stage, as kiln.attempt.failure_stage and kiln.task.failure_stage name it.';
COMMENT ON COLUMN kiln.failure_stage.infrastructure IS 'True when a failure at this stage is the farm''s fault, not the package''s: kiln.task_finish retries it (up to kiln.platform.max_infra_retries).';
COMMENT ON COLUMN kiln.failure_stage.description IS 'What the stage is, for people.';
INSERT INTO kiln.failure_stage (name, infrastructure, description) VALUES
    ('fetch-sources', false, 'unpacking the submitted sources (a broken source package)'),
    ('prepare-environment', true, 'fetching the sources, repository keys or build environment from the farm, unpacking the environment, or starting the sandbox'),
    ('install-build-deps', true, 'installing the build dependencies failed although they are satisfiable (mirror unreachable, apt failed)'),
    ('unsatisfiable', false, 'the build dependencies cannot be met by any package available'),
    ('build', false, 'the package''s own build failed'),
    ('collect-artifacts', false, 'the build ended without the results it should leave'),
    ('upload', true, 'storing the results in the farm failed'),
    ('out-of-disk', true, 'the builder''s work directory ran out of space');
GRANT SELECT ON kiln.failure_stage TO kiln_reader;

ALTER TABLE kiln.attempt
    ADD COLUMN failure_stage text REFERENCES kiln.failure_stage (name),
    ADD COLUMN retried boolean NOT NULL DEFAULT false,
    ADD CONSTRAINT attempt_failure_stage_when_failed CHECK (failure_stage IS NULL OR status = 'failed'),
    ADD CONSTRAINT attempt_retried_when_failed CHECK (NOT retried OR status = 'failed');
COMMENT ON COLUMN kiln.attempt.failure_stage IS 'Where a failed attempt failed (kiln.failure_stage), as its builder said; NULL for attempts that did not fail or whose builder named no stage.';
COMMENT ON COLUMN kiln.attempt.retried IS 'True when the attempt failed for the farm''s fault and the task was requeued for another attempt (kiln.task_finish).';

ALTER TABLE kiln.task
    ADD COLUMN failure_stage text REFERENCES kiln.failure_stage (name),
    ADD COLUMN infra_retries integer NOT NULL DEFAULT 0 CONSTRAINT task_infra_retries_nonnegative CHECK (infra_retries >= 0),
    ADD COLUMN avoid_builder text,
    ADD COLUMN avoid_until timestamptz;
COMMENT ON COLUMN kiln.task.failure_stage IS 'The failure stage of the task''s last failed attempt (kiln.failure_stage); NULL while it has none or once it succeeded.';
COMMENT ON COLUMN kiln.task.infra_retries IS 'How many times the task was retried because an attempt failed for the farm''s fault.';
COMMENT ON COLUMN kiln.task.avoid_builder IS 'The builder whose attempt failed for the farm''s fault last: until avoid_until, kiln.task_take lets it take the task only when no other builder of the platform is online.';
COMMENT ON COLUMN kiln.task.avoid_until IS 'Until when avoid_builder is avoided.';

ALTER TABLE kiln.platform
    ADD COLUMN max_infra_retries integer NOT NULL DEFAULT 3
        CONSTRAINT platform_max_infra_retries_range CHECK (max_infra_retries BETWEEN 0 AND 100),
    ADD COLUMN infra_retry_backoff interval NOT NULL DEFAULT '30 seconds'
        CONSTRAINT platform_infra_retry_backoff_range CHECK (infra_retry_backoff BETWEEN '0 seconds' AND '1 day');
COMMENT ON COLUMN kiln.platform.max_infra_retries IS 'How many times a task of the platform is retried after attempts that failed for the farm''s fault (kiln.failure_stage.infrastructure); the next such failure ends it as failed. 0 turns retries off.';
COMMENT ON COLUMN kiln.platform.infra_retry_backoff IS 'The wait before the first retry of a farm''s fault; it doubles with each further retry (at most one hour).';

-- Step 1, take. outcome: taken (attempt is the new attempt's number),
-- not_pending (cancelled, finished or taken meanwhile: the River job ends
-- without a build), disabled (the builder was disabled), gone (the job or
-- the platform no longer exists), elsewhere (a retry of the farm's fault
-- that another online builder of the platform is to take: the River job
-- snoozes briefly).
CREATE OR REPLACE FUNCTION kiln.task_take(p_builder text, p_task_id bigint, p_job_id bigint, p_platform text, OUT outcome text, OUT attempt integer, OUT policy text, OUT timeout_seconds double precision)
 RETURNS record
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    enabled boolean;
BEGIN
    PERFORM kiln.task_check_builder(p_builder);
    PERFORM 1 FROM kiln.job j WHERE j.id = p_job_id FOR UPDATE;
    SELECT j.policy, extract(epoch FROM p.timeout)::double precision, b.enabled
      INTO policy, timeout_seconds, enabled
      FROM kiln.job j, kiln.platform p, kiln.builder b
     WHERE j.id = p_job_id AND p.name = p_platform AND b.name = p_builder;
    IF NOT FOUND THEN
        outcome := 'gone';
        RETURN;
    END IF;
    IF NOT enabled THEN
        outcome := 'disabled';
        RETURN;
    END IF;
    -- A retry of the farm's fault goes to another builder of the platform
    -- while one is online (until avoid_until): this one lets it pass.
    PERFORM 1 FROM kiln.task t
     WHERE t.id = p_task_id AND t.status = 'pending' AND t.avoid_builder = p_builder AND t.avoid_until > pg_catalog.now()
       AND EXISTS (SELECT 1 FROM kiln.builder o JOIN kiln.builder_platform bp ON bp.builder = o.name
                    WHERE bp.platform = p_platform AND o.name <> p_builder AND o.enabled AND NOT o.draining
                      AND o.state = 'online');
    IF FOUND THEN
        outcome := 'elsewhere';
        RETURN;
    END IF;
    UPDATE kiln.task t SET status = 'building', builder = p_builder, attempt = t.attempt + 1,
           started_at = pg_catalog.now(), heartbeat_at = pg_catalog.now(), reason = NULL, failure_stage = NULL
     WHERE t.id = p_task_id AND t.job_id = p_job_id AND t.platform = p_platform AND t.status = 'pending'
    RETURNING t.attempt INTO task_take.attempt;
    IF NOT FOUND THEN
        outcome := 'not_pending';
        RETURN;
    END IF;
    INSERT INTO kiln.attempt (task_id, attempt, builder) VALUES (p_task_id, attempt, p_builder);
    outcome := 'taken';
END $function$;
COMMENT ON FUNCTION kiln.task_take(text, bigint, bigint, text) IS 'Protocol step 1: one of session_user''s builders takes a pending task: the task becomes building with the next attempt number and the attempt row is created (the only way attempts are created). Returns the outcome, the attempt, the job''s policy and the platform''s timeout; outcome elsewhere leaves a retry of the farm''s fault that this builder made to another online builder of the platform (until kiln.task.avoid_until).';

-- Step 4, finish: artifacts (their blobs stored before, in the same
-- transaction), the attempt's build info, final status and failure stage,
-- the task's final status. Refused (finished false, nothing written) unless
-- the attempt is held. A failure at a stage that is the farm's fault
-- (kiln.failure_stage.infrastructure) does not end the task while the
-- platform's max_infra_retries allows: the attempt ends failed and retried,
-- the task waits again, avoiding this builder for a while, and
-- retry_after_seconds says how long the caller's River job is to snooze.
CREATE OR REPLACE FUNCTION kiln.task_finish(p_builder text, p_task_id bigint, p_attempt integer, p_status text, p_reason text, p_build_info jsonb, p_log_truncated boolean, p_artifact_kinds text[], p_artifact_names text[], p_artifact_sha256s bytea[], p_artifact_sizes bigint[], p_failure_stage text, OUT finished boolean, OUT retry_after_seconds double precision)
 RETURNS record
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
DECLARE
    v_job bigint;
    bad text;
    infra boolean;
    t kiln.task%ROWTYPE;
    max_retries integer;
    backoff interval;
    wait interval;
    why text;
BEGIN
    finished := false;
    PERFORM kiln.task_check_builder(p_builder);
    IF p_status IS NULL OR p_status NOT IN ('succeeded', 'failed', 'timed_out') THEN
        RAISE EXCEPTION 'a builder finishes a task as succeeded, failed or timed_out, not %', p_status
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_failure_stage IS NOT NULL THEN
        IF p_status <> 'failed' THEN
            RAISE EXCEPTION 'only a failed attempt has a failure stage, not a % one', p_status
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
        SELECT s.infrastructure INTO infra FROM kiln.failure_stage s WHERE s.name = p_failure_stage;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'unknown failure stage % (kiln.failure_stage lists them)', p_failure_stage
                USING ERRCODE = 'invalid_parameter_value';
        END IF;
    END IF;
    IF pg_catalog.cardinality(p_artifact_kinds) IS DISTINCT FROM pg_catalog.cardinality(p_artifact_names)
       OR pg_catalog.cardinality(p_artifact_kinds) IS DISTINCT FROM pg_catalog.cardinality(p_artifact_sha256s)
       OR pg_catalog.cardinality(p_artifact_kinds) IS DISTINCT FROM pg_catalog.cardinality(p_artifact_sizes) THEN
        RAISE EXCEPTION 'task_finish: the artifact arrays differ in length' USING ERRCODE = 'invalid_parameter_value';
    END IF;
    SELECT l.job_id INTO v_job FROM kiln.task l WHERE l.id = p_task_id;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    PERFORM 1 FROM kiln.job j WHERE j.id = v_job FOR UPDATE;
    SELECT * INTO t FROM kiln.task l
     WHERE l.id = p_task_id AND l.attempt = p_attempt AND l.builder = p_builder AND l.status = 'building'
       FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    -- An artifact names bytes that exist, with their true size.
    SELECT a.name INTO bad
      FROM unnest(p_artifact_names, p_artifact_sha256s, p_artifact_sizes) AS a(name, sha256, size)
     WHERE NOT EXISTS (SELECT 1 FROM kiln.blob b WHERE b.sha256 = a.sha256 AND b.size = a.size)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'artifact %: no stored blob with that sha256 and size', bad USING ERRCODE = 'foreign_key_violation';
    END IF;
    INSERT INTO kiln.artifact (task_id, attempt, kind, file_name, blob_sha256, size)
    SELECT p_task_id, p_attempt, a.kind, a.name, a.sha256, a.size
      FROM unnest(p_artifact_kinds, p_artifact_names, p_artifact_sha256s, p_artifact_sizes) AS a(kind, name, sha256, size);
    finished := true;
    why := p_reason;
    IF coalesce(infra, false) THEN
        SELECT p.max_infra_retries, p.infra_retry_backoff INTO max_retries, backoff
          FROM kiln.platform p WHERE p.name = t.platform;
        IF t.infra_retries < max_retries THEN
            -- The farm's fault, and retries left: the attempt ends failed
            -- and retried, the task waits again.
            wait := least(backoff * pg_catalog.power(2, t.infra_retries)::integer, interval '1 hour');
            retry_after_seconds := extract(epoch FROM wait)::double precision;
            UPDATE kiln.attempt a SET status = 'failed', finished_at = pg_catalog.now(), reason = p_reason, build_info = p_build_info,
                   failure_stage = p_failure_stage, retried = true,
                   log_truncated = a.log_truncated OR coalesce(p_log_truncated, false)
             WHERE a.task_id = p_task_id AND a.attempt = p_attempt;
            why := pg_catalog.format('retry %s of %s after %s (the farm''s fault, stage %s): %s',
                                     t.infra_retries + 1, max_retries, wait, p_failure_stage, coalesce(p_reason, 'no reason given'));
            UPDATE kiln.task l SET status = 'pending', builder = NULL, started_at = NULL, heartbeat_at = NULL,
                   reason = why, failure_stage = p_failure_stage, infra_retries = l.infra_retries + 1,
                   avoid_builder = p_builder, avoid_until = pg_catalog.now() + wait + greatest(wait, interval '1 minute')
             WHERE l.id = p_task_id;
            INSERT INTO kiln.event (kind, job_id, task_id, attempt, builder, old_status, new_status, detail)
            VALUES ('task.retry', t.job_id, t.id, p_attempt, p_builder, 'building', 'pending',
                    pg_catalog.jsonb_build_object('failure_stage', p_failure_stage, 'reason', p_reason,
                                                  'retry', t.infra_retries + 1, 'max_infra_retries', max_retries,
                                                  'backoff_seconds', retry_after_seconds, 'avoid_builder', p_builder));
            RETURN;
        END IF;
        why := pg_catalog.format('%s (the farm''s fault, stage %s; not retried: %s retries of %s used)',
                                 coalesce(p_reason, 'no reason given'), p_failure_stage, t.infra_retries, max_retries);
    END IF;
    -- The attempt ends first, then the task (and with it the job): the
    -- history reads in that order.
    UPDATE kiln.attempt a SET status = p_status, finished_at = pg_catalog.now(), reason = p_reason, build_info = p_build_info,
           failure_stage = p_failure_stage,
           log_truncated = a.log_truncated OR coalesce(p_log_truncated, false)
     WHERE a.task_id = p_task_id AND a.attempt = p_attempt;
    UPDATE kiln.task SET status = p_status, builder = NULL, finished_at = pg_catalog.now(), reason = why,
           failure_stage = p_failure_stage, avoid_builder = NULL, avoid_until = NULL
     WHERE id = p_task_id;
END $function$;
COMMENT ON FUNCTION kiln.task_finish(text, bigint, integer, text, text, jsonb, boolean, text[], text[], bytea[], bigint[], text) IS 'Protocol step 4: one of session_user''s builders ends the attempt it holds as succeeded, failed (with the failure stage, kiln.failure_stage, when known) or timed_out, with its artifacts (kinds, names, sha256s and sizes pairwise; the blobs must be stored) and build info. A failure at an infrastructure stage requeues the task while the platform''s max_infra_retries allows (task.retry event; retry_after_seconds is the backoff); otherwise the task ends. finished false, and nothing written, when the attempt is not held.';

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

REVOKE EXECUTE ON FUNCTION kiln.task_finish(text, bigint, integer, text, text, jsonb, boolean, text[], text[], bytea[], bigint[], text) FROM PUBLIC;

CREATE OR REPLACE VIEW kiln.failure_by_stage WITH (security_invoker = true) AS
SELECT t.platform,
       a.failure_stage AS stage,
       s.infrastructure,
       count(*) AS attempts,
       count(*) FILTER (WHERE a.retried) AS retried,
       count(DISTINCT a.task_id) AS tasks,
       count(*) FILTER (WHERE a.finished_at > now() - interval '7 days') AS last_7_days,
       max(a.finished_at) AS last_failed_at
FROM kiln.attempt a
JOIN kiln.task t ON t.id = a.task_id
JOIN kiln.failure_stage s ON s.name = a.failure_stage
WHERE a.status = 'failed'
GROUP BY t.platform, a.failure_stage, s.infrastructure;
COMMENT ON VIEW kiln.failure_by_stage IS 'Per platform and failure stage: how many attempts failed there, how many of them were retried (the farm''s faults), in how many tasks, in the last seven days, and when last. Row-level security applies (private buckets count only for those who may read them).';
COMMENT ON COLUMN kiln.failure_by_stage.platform IS 'The platform.';
COMMENT ON COLUMN kiln.failure_by_stage.stage IS 'The failure stage (kiln.failure_stage).';
COMMENT ON COLUMN kiln.failure_by_stage.infrastructure IS 'True when failures at this stage are the farm''s fault (retried).';
COMMENT ON COLUMN kiln.failure_by_stage.attempts IS 'Failed attempts at this stage.';
COMMENT ON COLUMN kiln.failure_by_stage.retried IS 'Of those, attempts after which the task was retried.';
COMMENT ON COLUMN kiln.failure_by_stage.tasks IS 'Distinct tasks with such a failed attempt.';
COMMENT ON COLUMN kiln.failure_by_stage.last_7_days IS 'Failed attempts at this stage that ended in the last seven days.';
COMMENT ON COLUMN kiln.failure_by_stage.last_failed_at IS 'When the last of them ended.';
