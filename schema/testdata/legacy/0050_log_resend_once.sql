-- 0050_log_resend_once.sql: kiln.task_log_many stores a log batch sent
-- again under its number (the builder's first send lost its answer with
-- the connection, as at a failover, and may have committed) once, and
-- counts its bytes once; other text under a stored number is refused
-- (schema/current/10_functions.sql). Before, the resend failed on the
-- primary key, and the builder, which had folded the batch into its next
-- one, could never finish the attempt. No table changes.
SELECT 1;

-- What 0050 changed in schema/current, as it was when 0050 landed (the
-- legacy layout kept every function and trigger in a numbered migration).

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
