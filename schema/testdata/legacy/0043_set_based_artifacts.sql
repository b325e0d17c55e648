-- 0043_set_based_artifacts.sql: kiln.task_finish_many stores the artifacts
-- whose bytes come with the call in a few statements, whatever their
-- number (it stored each in three), and the blob quota trigger
-- (kiln.blob_quota) is statement-level, with a transition table: one
-- finish charges its new blobs at once (schema/current/10_functions.sql,
-- 30_triggers.sql). What is stored, and what is refused, is unchanged. No
-- table changes.

-- What 0043 changed in schema/current, as it was when 0043 landed (the
-- legacy layout kept every function and trigger in a numbered migration).

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

CREATE OR REPLACE TRIGGER blob_quota AFTER INSERT ON kiln.blob
    REFERENCING NEW TABLE AS new_blobs
    FOR EACH STATEMENT EXECUTE FUNCTION kiln.blob_quota();

