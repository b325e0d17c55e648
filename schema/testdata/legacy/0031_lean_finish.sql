-- 0031_lean_finish.sql: the lean data path (docs/scaling.md, "The data
-- path"). A builder's finish is one statement: kiln.task_finish
-- (schema/current/10_functions.sql) also stores the end of the log and the
-- bytes of small artifacts. No table changes; the log bytes an attempt
-- counts now include the end of the log stored with the finish.
COMMENT ON COLUMN kiln.attempt.log_bytes IS 'Bytes of log stored for the attempt (kiln.task_log batches and the end stored by kiln.task_finish).';

-- What the lean data path changed in schema/current, as it was when 0031
-- landed (the legacy layout kept every function in a numbered migration).

CREATE OR REPLACE FUNCTION kiln.task_finish(p_builder text, p_task_id bigint, p_attempt integer, p_status text, p_reason text, p_build_info jsonb, p_log_truncated boolean, p_artifact_kinds text[], p_artifact_names text[], p_artifact_sha256s bytea[], p_artifact_sizes bigint[], p_failure_stage text, p_artifact_data bytea[], p_log_seq integer, p_log_data text, OUT finished boolean, OUT retry_after_seconds double precision)
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
    i integer;
    digest bytea;
    len bigint;
    key bytea;
    sums bytea[] := p_artifact_sha256s;
    sizes bigint[] := p_artifact_sizes;
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
       OR pg_catalog.cardinality(p_artifact_kinds) IS DISTINCT FROM pg_catalog.cardinality(p_artifact_sizes)
       OR (p_artifact_data IS NOT NULL AND pg_catalog.cardinality(p_artifact_kinds) IS DISTINCT FROM pg_catalog.cardinality(p_artifact_data)) THEN
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
    -- The end of the log, before the attempt ends: a follower reads it
    -- before it sees the end.
    IF p_log_data IS NOT NULL THEN
        INSERT INTO kiln.log_chunk (task_id, attempt, seq, data) VALUES (p_task_id, p_attempt, p_log_seq, p_log_data);
    END IF;
    -- A small artifact's bytes come with the call: the server hashes them
    -- and stores them as a blob the builder vouches for (verified), or
    -- reuses a verified blob of the same content; an unverified blob that
    -- has the SHA-256 is never trusted (blob.Put's rule): the bytes are
    -- then staged under a random key. They go in chunks of 256 KiB
    -- (blob.ChunkSize).
    FOR i IN 1 .. coalesce(pg_catalog.cardinality(p_artifact_data), 0) LOOP
        CONTINUE WHEN p_artifact_data[i] IS NULL;
        digest := pg_catalog.sha256(p_artifact_data[i]);
        len := pg_catalog.octet_length(p_artifact_data[i]);
        IF sums[i] IS DISTINCT FROM digest AND sums[i] IS NOT NULL OR sizes[i] IS DISTINCT FROM len AND sizes[i] IS NOT NULL THEN
            RAISE EXCEPTION 'artifact %: the bytes given do not have the sha256 and size given', p_artifact_names[i]
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
      FROM unnest(p_artifact_names, sums, sizes) AS a(name, sha256, size)
     WHERE NOT EXISTS (SELECT 1 FROM kiln.blob b WHERE b.sha256 = a.sha256 AND b.size = a.size)
     LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION 'artifact %: no stored blob with that sha256 and size', bad USING ERRCODE = 'foreign_key_violation';
    END IF;
    INSERT INTO kiln.artifact (task_id, attempt, kind, file_name, blob_sha256, size)
    SELECT p_task_id, p_attempt, a.kind, a.name, a.sha256, a.size
      FROM unnest(p_artifact_kinds, p_artifact_names, sums, sizes) AS a(kind, name, sha256, size);
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
                   log_truncated = a.log_truncated OR coalesce(p_log_truncated, false),
                   log_bytes = a.log_bytes + coalesce(pg_catalog.octet_length(p_log_data), 0)
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
           log_truncated = a.log_truncated OR coalesce(p_log_truncated, false),
           log_bytes = a.log_bytes + coalesce(pg_catalog.octet_length(p_log_data), 0)
     WHERE a.task_id = p_task_id AND a.attempt = p_attempt;
    UPDATE kiln.task SET status = p_status, builder = NULL, finished_at = pg_catalog.now(), reason = why,
           failure_stage = p_failure_stage, avoid_builder = NULL, avoid_until = NULL
     WHERE id = p_task_id;
END $function$;
COMMENT ON FUNCTION kiln.task_finish(text, bigint, integer, text, text, jsonb, boolean, text[], text[], bytea[], bigint[], text, bytea[], integer, text) IS 'Protocol step 4 in one call: one of session_user''s builders stores the end of the attempt''s log (p_log_seq, p_log_data; none when NULL) and ends the attempt it holds as succeeded, failed (with the failure stage, kiln.failure_stage, when known) or timed_out, with its artifacts (kinds, names, sha256s, sizes and data pairwise: an artifact with data has its bytes stored here as a verified blob, its sha256 and size checked when given; one without names a blob stored before) and build info. A failure at an infrastructure stage requeues the task while the platform''s max_infra_retries allows (task.retry event; retry_after_seconds is the backoff); otherwise the task ends. finished false, and nothing written, when the attempt is not held.';

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

REVOKE EXECUTE ON FUNCTION kiln.task_finish(text, bigint, integer, text, text, jsonb, boolean, text[], text[], bytea[], bigint[], text, bytea[], integer, text) FROM PUBLIC;
