-- 0040_log_many.sql: a builder stores the log batches of its slots that are
-- due at the same moment in one statement, kiln.task_log_many
-- (schema/current/10_functions.sql; docs/scaling.md, "Log batches of many
-- slots"); kiln.task_log is task_log_many of one, and kiln.cancel_job_for
-- locks the open attempts in task order, as task_log_many does. No table
-- changes.

-- What 0040 changed in schema/current, as it was when 0040 landed (the
-- legacy layout kept every function and trigger in a numbered migration).

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

CREATE OR REPLACE FUNCTION kiln.task_log_many(p_builder text, p_task_ids bigint[], p_attempts integer[], p_seqs integer[], p_data text[], p_truncated boolean[])
 RETURNS TABLE(task_id bigint, stored boolean)
 LANGUAGE plpgsql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
 SET plan_cache_mode TO 'force_generic_plan'
AS $function$
DECLARE
    v_held bigint[]; -- the ordinals of the batches whose attempt is held, in task order
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
        INSERT INTO kiln.log_chunk (task_id, attempt, seq, data)
        SELECT p_task_ids[h.n], p_attempts[h.n], p_seqs[h.n], p_data[h.n] FROM unnest(v_held) AS h(n);
        UPDATE kiln.attempt a SET log_bytes = a.log_bytes + pg_catalog.octet_length(p_data[h.n]),
               log_truncated = a.log_truncated OR coalesce(p_truncated[h.n], false)
          FROM unnest(v_held) AS h(n)
         WHERE a.task_id = p_task_ids[h.n] AND a.attempt = p_attempts[h.n];
    END IF;
    RETURN QUERY
    SELECT r.task_id, r.n = ANY (coalesce(v_held, '{}'))
      FROM unnest(p_task_ids) WITH ORDINALITY AS r(task_id, n)
     ORDER BY r.n;
END $function$;
COMMENT ON FUNCTION kiln.task_log_many(text, bigint[], integer[], integer[], text[], boolean[]) IS 'Protocol step 3 for several attempts in one statement (task ids, attempt numbers, sequence numbers, texts and truncated flags pairwise, each task once): stores each log batch of an attempt that one of session_user''s builders holds and counts its bytes on the attempt. Returns per task, in the order given, stored (false, and nothing of it stored, when the attempt is not held). Locks the attempts in task order.';

CREATE OR REPLACE FUNCTION kiln.task_log(p_builder text, p_task_id bigint, p_attempt integer, p_seq integer, p_data text, p_truncated boolean)
 RETURNS boolean
 LANGUAGE sql
 SECURITY DEFINER
 SET search_path TO 'pg_catalog', 'kiln', 'pg_temp'
AS $function$
    SELECT m.stored FROM kiln.task_log_many(p_builder, ARRAY[p_task_id], ARRAY[p_attempt], ARRAY[p_seq], ARRAY[p_data], ARRAY[p_truncated]) m
$function$;
COMMENT ON FUNCTION kiln.task_log(text, bigint, integer, integer, text, boolean) IS 'Protocol step 3 for one attempt: kiln.task_log_many of one. Stores one log batch of an attempt that one of session_user''s builders holds and counts its bytes on the attempt; false (nothing stored) when the attempt is not held.';

REVOKE EXECUTE ON FUNCTION kiln.task_log_many(text, bigint[], integer[], integer[], text[], boolean[]) FROM PUBLIC;
